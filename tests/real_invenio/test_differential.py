"""Sandbox-vs-real fidelity: every contract scenario against both servers, answers compared.

The scenarios assert only what a real InvenioRDM guarantees; this module also compares what
they do not assert. Each exchange a scenario makes (``scenarios.TRANSCRIPT``) is reduced to a
comparable form: request with ids replaced, status, ``message``, ``errors``, the key sets
of the body, its ``links``, file entries and search hits, and the stored values both servers
must agree on (``values_of``: titles as cleaned, file keys, sizes, checksums and statuses,
draft/record state flags, and search totals where the scenario's own marker or record
decides them). The sandbox runs with the real server's ``series`` (14 or 12). A difference
fails the test unless KNOWN_DIFFERENCES lists it for that series with a reason
(docs/sandbox-fidelity.md is the readable table); a listed difference that is no longer
observed fails too, so neither table can go stale.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import anyio
import pytest

from async_uploader.sandbox import Sandbox, SandboxConfig
from tests.contract.scenarios import TRANSCRIPT, Exchange, Scenario, Target, all_scenarios
from tests.real_invenio.real_invenio_env import RealServer

pytestmark = pytest.mark.real_invenio

# (scenario or "*", difference as printed by `differences`) -> why it is accepted; one table
# per InvenioRDM series, each compared with the sandbox configured for that series.
Known = dict[tuple[str, str], str]
_BOTH: Known = {  # the same in both series
    (
        "short_body_keeps_entry_pending",
        "returned: sandbox [('answered', False)], real [('answered', True)]",
    ): "aiohttp's server drops a request whose body ends early without answering, Werkzeug "
    "answers 400 'File is smaller than expected.'; either way the entry stays pending without "
    "content (asserted by the scenario), and the uploader treats both as a failed PUT",
    (
        "content_type_with_charset",
        "POST /api/records [415] message: sandbox \"Invalid 'Content-Type' header. Expected "
        "one of: application/json\", real 'Invalid \\'Content-Type\\' header. Expected one "
        'of: application/json, application/ld+json;profile="https://w3id.org/ro/crate/1.1"\'',
    ): "deliberate: the sandbox does not accept RO-Crate (ld+json) bodies, so it does not "
    "advertise them; same status, and the uploader always sends plain application/json",
}
KNOWN_DIFFERENCES: dict[int, Known] = {
    14: {**_BOTH},
    12: {**_BOTH},
}

RECORD_ID = re.compile(r"(?<![a-z0-9])[a-z0-9]{5}-[a-z0-9]{5}")
REVISION = re.compile(r"\(\d+\)")  # "Revision id provided(55) ...": opaque counters
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
# Values that differ between servers by nature (ids, dates) and would hide real differences.
NORMALISED_OBS_KEYS = {"id"}
# Random parts scenarios put into titles (``Searchable 1a2b3c4d``): differ run to run.
RANDOM_HEX = re.compile(r"\b(?=[0-9a-f]*\d)[0-9a-f]{8,}\b")
# Listings whose total depends on what earlier runs left on the server, not on the scenario.
UNCONTROLLED_SEARCHES = ("/api/records", "/api/user/records", "/api/communities")


@dataclass(frozen=True)
class Seen:
    """One exchange in comparable form (no ids, no values beyond messages)."""

    request: str
    status: int
    message: str | None
    errors: tuple[str, ...]
    shape: tuple[tuple[str, tuple[str, ...]], ...]
    values: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Run:
    """One scenario on one server."""

    outcome: str  # "ok" or the failure
    returned: str
    seen: tuple[Seen, ...]


def scrub(text: str, community: str) -> str:
    """Ids, the community slug and revision counters out (the slug first: it has dashes)."""
    text = text.replace(community, "<community>") if community else text
    return REVISION.sub("(<n>)", RECORD_ID.sub("<id>", UUID.sub("<uuid>", text)))


def request_label(ex: Exchange, community: str) -> str:
    parts = urlsplit(ex.url)
    query = sorted(p.split("=", 1)[0] for p in parts.query.split("&") if p)
    suffix = f"?{'&'.join(query)}" if query else ""
    return f"{ex.method} {scrub(unquote(parts.path), community)}{suffix}"


def keys(value: Any) -> tuple[str, ...]:
    return tuple(sorted(value)) if isinstance(value, dict) else ()


def union_keys(items: Any, sub: str | None = None) -> tuple[str, ...]:
    found: set[str] = set()
    for item in items if isinstance(items, list) else []:
        value = item.get(sub) if sub and isinstance(item, dict) else item
        found.update(keys(value))
    return tuple(sorted(found))


def shape_of(body: Any, url: str = "") -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Key sets. A listing of everything on the server (``controlled_search`` false) depends
    on what earlier runs left there and on the search refresh delay, not on fidelity: its
    ``next``/``prev`` links and the keys of its hits are left out (hits are compared when the
    scenario decides them)."""
    if not isinstance(body, dict):
        return (("body", ("<bytes>" if body else "<empty>",)),)
    controlled = controlled_search(url)
    links = keys(body.get("links"))
    if not controlled and isinstance(body.get("hits"), dict):
        links = tuple(k for k in links if k not in ("next", "prev"))
    shape = {"body": keys(body), "links": links}
    if isinstance(body.get("entries"), list):  # a file listing
        shape["entry"] = union_keys(body["entries"])
        shape["entry.links"] = union_keys(body["entries"], "links")
    hits = body.get("hits")
    if isinstance(hits, dict):
        shape["hits"] = keys(hits)
        if controlled:
            shape["hit"] = union_keys(hits.get("hits"))
    return tuple((k, v) for k, v in shape.items() if v)


def record_values(body: dict[str, Any]) -> dict[str, str]:
    """Stored values of a draft, record or review request that both servers must agree on."""
    out: dict[str, str] = {}
    if "is_draft" not in body and "is_published" not in body and "receiver" not in body:
        return out  # not a draft, record or request (a community's title is configuration)
    metadata = body.get("metadata")
    if isinstance(metadata, dict):
        title = metadata.get("title")
        out["title"] = repr(RANDOM_HEX.sub("<hex>", title) if isinstance(title, str) else title)
    for key in ("is_published", "is_draft"):
        if key in body:
            out[key] = repr(body[key])
    if isinstance(body.get("status"), str):  # an int status is an error body's HTTP code
        out["status"] = repr(body["status"])
    files = body.get("files")
    if isinstance(files, dict) and "enabled" in files:
        out["files.enabled"] = repr(files["enabled"])
    return out


def entry_values(entry: Any) -> str:
    """A file entry as (key, status, size, checksum): what was stored, not how it is linked."""
    if not isinstance(entry, dict):
        return repr(entry)
    return repr(tuple(entry.get(k) for k in ("key", "status", "size", "checksum")))


def controlled_search(url: str) -> bool:
    """A listing whose hits the scenario decides: a ``q`` (its marker or id), or a listing of
    one of its own records (access links); not a bare listing of everything on the server."""
    parts = urlsplit(url)
    if "q" in parse_qs(parts.query):
        return True
    return not unquote(parts.path).rstrip("/").endswith(UNCONTROLLED_SEARCHES)


def values_of(ex: Exchange) -> tuple[tuple[str, str], ...]:
    """The comparable stored values of one answer (see the module docstring)."""
    body = ex.body
    if not isinstance(body, dict):
        return ()
    out = record_values(body)
    if "key" in body and {"checksum", "size", "status"} & set(body):  # one file entry
        out = {"entry": entry_values(body)}
        if isinstance(body.get("errors"), str):
            out["entry.errors"] = repr(body["errors"])
    if isinstance(body.get("entries"), list):  # a file listing
        out["entries"] = repr(sorted(entry_values(e) for e in body["entries"]))
        if "enabled" in body:
            out["files.enabled"] = repr(body["enabled"])
    hits = body.get("hits")
    if isinstance(hits, dict) and controlled_search(ex.url):
        out["hits.total"] = repr(hits.get("total"))
        summaries = [record_values(h) for h in hits.get("hits") or [] if isinstance(h, dict)]
        if any(summaries):
            out["hits"] = repr(
                sorted(", ".join(f"{k}={v}" for k, v in sorted(h.items())) for h in summaries)
            )
    return tuple(sorted(out.items()))


def errors_of(body: Any, community: str) -> tuple[str, ...]:
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, str):
        return (scrub(errors, community),)
    out = []
    for err in errors if isinstance(errors, list) else []:
        for msg in err.get("messages", []) if isinstance(err, dict) else []:
            out.append(scrub(f"{err.get('field')}: {msg}", community))
    return tuple(sorted(out))


def reduce(transcript: list[Exchange], community: str) -> tuple[Seen, ...]:
    """Comparable exchanges; consecutive repeats (search polling) collapse into one."""
    seen: list[Seen] = []
    for ex in transcript:
        message = ex.body.get("message") if isinstance(ex.body, dict) else None
        item = Seen(
            request=request_label(ex, community),
            status=ex.status,
            message=scrub(str(message), community) if message is not None else None,
            errors=errors_of(ex.body, community),
            shape=shape_of(ex.body, ex.url),
            values=values_of(ex),
        )
        if seen and (seen[-1].request, seen[-1].status) == (item.request, item.status):
            seen[-1] = item  # keep the last answer of a poll
        else:
            seen.append(item)
    return tuple(seen)


async def run_one(name: str, scenario: Scenario, target: Target, community: str) -> Run:
    log: list[Exchange] = []
    token = TRANSCRIPT.set(log)
    try:
        async with aiohttp.ClientSession() as session:
            returned = await scenario(target, session)
        outcome = "ok"
    except Exception as exc:  # a scenario failing on one server is itself an observation
        line = traceback.extract_tb(exc.__traceback__)[-1].lineno
        outcome, returned = f"{type(exc).__name__} at scenarios.py line {line}", {}
    finally:
        TRANSCRIPT.reset(token)
    obs = {k: ("<x>" if k in NORMALISED_OBS_KEYS else v) for k, v in returned.items()}
    return Run(outcome, scrub(repr(sorted(obs.items())), community), reduce(log, community))


def compare_sets(label: str, aspect: str, sandbox: tuple[str, ...], real: tuple[str, ...]) -> str:
    only_real = sorted(set(real) - set(sandbox))
    only_sandbox = sorted(set(sandbox) - set(real))
    return f"{label} {aspect}: real only {only_real}, sandbox only {only_sandbox}"


def differences(sandbox: Run, real: Run) -> list[str]:
    """What the real server answered differently, as stable one-line strings."""
    out: list[str] = []
    if sandbox.outcome != real.outcome:
        out.append(f"outcome: sandbox {sandbox.outcome}, real {real.outcome}")
    if sandbox.returned != real.returned and sandbox.outcome == real.outcome == "ok":
        out.append(f"returned: sandbox {sandbox.returned}, real {real.returned}")
    requests = ([s.request for s in sandbox.seen], [r.request for r in real.seen])
    if requests[0] != requests[1]:
        out.append(f"request sequence: sandbox {requests[0]}, real {requests[1]}")
        return out
    for s, r in zip(sandbox.seen, real.seen, strict=True):
        if s.status != r.status:
            out.append(f"{s.request} status: sandbox {s.status}, real {r.status}")
            continue  # different answers: their bodies are not comparable
        label = f"{s.request} [{s.status}]"
        if s.message != r.message:
            out.append(f"{label} message: sandbox {s.message!r}, real {r.message!r}")
        if s.errors != r.errors:
            out.append(compare_sets(label, "errors", s.errors, r.errors))
        s_shape, r_shape = dict(s.shape), dict(r.shape)
        for aspect in sorted(set(s_shape) | set(r_shape)):
            if s_shape.get(aspect, ()) != r_shape.get(aspect, ()):
                out.append(
                    compare_sets(label, aspect, s_shape.get(aspect, ()), r_shape.get(aspect, ()))
                )
        s_values, r_values = dict(s.values), dict(r.values)
        for name in sorted(set(s_values) | set(r_values)):
            s_value, r_value = s_values.get(name, "<absent>"), r_values.get(name, "<absent>")
            if s_value != r_value:
                out.append(f"{label} value {name}: sandbox {s_value}, real {r_value}")
    return list(dict.fromkeys(out))  # the same difference on repeated calls counts once


def is_known(known: Known, name: str, diff: str) -> bool:
    return (name, diff) in known or ("*", diff) in known


@pytest.fixture(scope="module")
def observed(real_server: RealServer) -> dict[str, tuple[Run, Run]]:
    """Every scenario once on a fresh sandbox of the real server's series, and once on the
    real server."""
    series = real_server.series
    real = Target(
        base_url=real_server.url,
        token=real_server.token,
        community=real_server.community,
        series=series,
        multipart=series >= 13,
    )
    results: dict[str, tuple[Run, Run]] = {}

    async def main() -> None:
        async with Sandbox(SandboxConfig(series=series)) as sb:
            sandbox = Target(
                base_url=sb.url, token=sb.token, series=series, multipart=real.multipart
            )
            for name, scenario in all_scenarios():
                results[name] = (
                    await run_one(name, scenario, sandbox, sandbox.community),
                    await run_one(name, scenario, real, real.community),
                )

    anyio.run(main)
    return results


# Scenarios that exercise a feature only some series have (see the conftest `series` marker).
SERIES_ONLY = {"multipart": (14, "multipart uploads (init with `transfer`) are v13+")}


def _scenario_param(name: str) -> Any:
    if name not in SERIES_ONLY:
        return name
    series, reason = SERIES_ONLY[name]
    return pytest.param(name, marks=pytest.mark.series(series, reason=reason))


@pytest.mark.parametrize("name", [_scenario_param(n) for n, _ in all_scenarios()])
def test_scenario_matches_real_server(
    name: str, observed: dict[str, tuple[Run, Run]], real_server: RealServer
) -> None:
    sandbox, real = observed[name]
    assert real.outcome == "ok", f"{name} fails on the real server: {real.outcome}"
    known = KNOWN_DIFFERENCES[real_server.series]
    new = [d for d in differences(sandbox, real) if not is_known(known, name, d)]
    assert not new, "new sandbox/real differences:\n" + "\n".join(new)


def test_every_known_difference_is_still_observed(
    observed: dict[str, tuple[Run, Run]], real_server: RealServer
) -> None:
    seen = {(name, d) for name, runs in observed.items() for d in differences(*runs)}
    seen |= {("*", d) for _, d in seen}
    stale = [key for key in KNOWN_DIFFERENCES[real_server.series] if key not in seen]
    assert not stale, f"known differences no longer observed (drop them): {stale}"
