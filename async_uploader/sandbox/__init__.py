"""A local InvenioRDM stand-in: the no-account demo target and the project's test server.

It reproduces the REST contract of InvenioRDM v13/v14 (drafts, files with streamed md5,
multipart, publish, edit, versions, files-import, search, communities, review flow, access
links and grants) including the odd cases the uploader must survive, with three profiles:
``invenio`` (vanilla), ``bigmap`` (BIG-MAP Archive rules) and ``zenodo``.

Programmatic use::

    async with Sandbox(SandboxConfig(profile="invenio")) as sb:
        sb.url, sb.token, sb.stats(), sb.records(), sb.set_faults({...}), sb.reset_stats()

    with Sandbox.in_thread(cfg) as sb:   # same object, served from a background thread
        ...

Fault plan (``SandboxConfig.faults``, ``--faults PLAN.json``, ``PUT /_sandbox/faults``)::

    {"seed": 1, "latency_ms": 20, "jitter_ms": 10,
     "rules": [
       {"route": "content_put", "kind": "status", "status": 503, "body": "html",
        "probability": 0.1},
       {"route": "*", "kind": "rate_storm", "on_calls": [50], "duration_s": 2,
        "retry_after": "date"},
       {"route": "create_draft", "kind": "lose_response", "probability": 0.05},
       {"route": "content_put", "kind": "drop_mid_body", "on_calls": [1], "fraction": 0.5},
       {"route": "commit", "kind": "wrong_checksum", "on_calls": [2]}]}

``route`` is a route name from :data:`faults.ROUTE_NAMES` or ``"*"``. A rule fires on its
``on_calls`` (1-based count of calls to that route since the plan was installed; for ``"*"``
all API calls) or with ``probability``, decided by ``random.Random(f"{seed}:{i}:{n}")`` so a
seed replays identically. Kinds: ``status`` (answer ``status`` with a ``json`` or ``html``
proxy body, no work done), ``drop_mid_body`` (content/part PUT: read ``fraction`` of the
body, then abort the connection; the entry stays pending without content), ``stall_mid_body``
(the same after reading nothing more for ``duration_s``: a stalled upload), ``rate_storm``
(every request gets 429 for ``duration_s``, ``Retry-After`` in ``seconds`` or as an HTTP
``date``), ``wrong_checksum`` (commit stores and reports a wrong md5), ``lose_response`` (do
the work, then close the connection without answering). ``latency_ms``/``jitter_ms`` add to
the config's own latency on every API call.

``SandboxConfig.links_origin`` (``--links-origin``) renders every ``links`` URL with another
``scheme://host:port`` while the sandbox keeps serving on its own address, so a test can
check that a client never sends its token to a host it was not given.

Text fields are stored cleaned like InvenioRDM's ``SanitizedUnicode`` (:mod:`.sanitize`) and
``q`` is matched by analysed tokens as OpenSearch does with InvenioRDM's index mappings
(:mod:`.search`, :mod:`.analysis`).

Admin routes (same token; ``X-Sandbox-Token`` also works while the token is revoked):
``GET /_sandbox/stats``, ``POST /_sandbox/stats/reset``, ``GET|PUT /_sandbox/faults``,
``GET /_sandbox/records``, ``PUT /_sandbox/token {"valid": false|true}``.
"""

from __future__ import annotations

from .faults import FaultPlan, FaultPlanError, FaultRule
from .server import Sandbox
from .state import SandboxConfig

__all__ = ["FaultPlan", "FaultPlanError", "FaultRule", "Sandbox", "SandboxConfig"]
