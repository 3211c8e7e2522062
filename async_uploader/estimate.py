"""What a run will cost before it starts: requests by kind, bytes, and the least time the
server's rate limit allows. Pure: a function of the plan, the share mode and a rate.

The counts follow the record steps exactly for the paths a run takes when nothing goes
wrong (no retries, no lost answers): a dry run of a fresh batch predicts the request count
of the real run to the request (``tests/integration/test_inspect.py`` checks it). Paths
that depend on what the server holds (a draft to resume, a lost create to find) are
estimated from the journal, and say so.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .config import ShareMode
from .journal import RecordState
from .plan import Action, RecordPlan
from .ratelimit import ServerLimit
from .validate import ValidRecord

# Request kinds, in the order a record meets them.
KINDS: tuple[str, ...] = (
    "search",
    "read",
    "create",
    "metadata",
    "file-init",
    "file-content",
    "file-commit",
    "share",
)


@dataclass(frozen=True)
class Estimate:
    """The cost of a run: records, files and bytes to send, requests by kind, least time."""

    records: int = 0
    files: int = 0
    bytes: int = 0
    requests: Mapping[str, int] = field(default_factory=dict)
    rate: float | None = None  # requests/second the server (or --rate) allows
    exact: bool = True  # False when some folders' cost depends on what the server holds

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def min_seconds(self) -> float | None:
        """The least time the rate limit allows (None: no limit known)."""
        return None if not self.rate else self.total_requests / self.rate

    def to_json(self) -> dict[str, object]:
        return {
            "records": self.records,
            "files": self.files,
            "bytes": self.bytes,
            "requests": {k: self.requests[k] for k in KINDS if self.requests.get(k)},
            "total_requests": self.total_requests,
            "rate_per_second": self.rate,
            "min_seconds": self.min_seconds,
            "exact": self.exact,
        }


def share_requests(share: ShareMode) -> int:
    """publish: 1; community: review status, review PUT, submit; draft-only: none."""
    return {ShareMode.PUBLISH: 1, ShareMode.COMMUNITY: 3, ShareMode.DRAFT_ONLY: 0}[share]


def record_requests(
    record: ValidRecord, state: RecordState | None, plan: RecordPlan, share: ShareMode
) -> tuple[Counter[str], bool]:
    """Requests one folder's plan costs on the quiet path, and whether that is exact."""
    n: Counter[str] = Counter()
    files = record.folder.files
    committed = {k for k, f in (state.files if state else {}).items()}
    to_send = [f for f in files if f.key not in committed]
    action = plan.action
    exact = action is Action.CREATE
    if action in (Action.SKIP, Action.CHANGED):
        return n, True
    if action is Action.SWEEP:
        n["search"] += 1
        return n, False
    if action is Action.CONFIRM_SHARE:
        n["read"] += 1  # GET the record: the share went through (usually)
        return n, False
    if action in (Action.FIND_DRAFT, Action.RECONCILE):
        n["search"] += 2 if action is Action.FIND_DRAFT else 0  # the patient search
        to_send = list(files)
    if action is Action.RESUME_DRAFT:
        n["read"] += 2  # the draft, its file list
        n["metadata"] += int(plan.metadata_changed)
    else:
        n["create"] += 1
        to_send = list(files)
    if to_send:
        n["file-init"] += 1
        n["file-content"] += len(to_send)
        n["file-commit"] += len(to_send)
    n["share"] += share_requests(share)
    return n, exact


def batch_requests(
    folders: Iterable[tuple[ValidRecord, RecordState | None, RecordPlan]],
    share: ShareMode,
    *,
    probe: bool,
    lookups: int,
    community: bool,
) -> tuple[Counter[str], bool]:
    """The whole batch: every folder, plus the state's probe, the batched title look-ups
    and resolving the community once."""
    total: Counter[str] = Counter()
    exact = True
    for record, state, plan in folders:
        n, ok = record_requests(record, state, plan, share)
        total.update(n)
        exact = exact and ok
    total["read"] += int(probe) + int(community and total["share"] > 0)
    total["search"] += lookups
    return +total, exact


def allowed_rate(headers: Mapping[str, str], now: float) -> float | None:
    """Requests/second an ``X-RateLimit-*`` answer allows: limit / window, the window being
    ``floor(Reset - now)`` as the rate limiter reads it (Reset is whole epoch seconds). On a
    fresh window (Remaining = limit - 1) that is the window; on a busy one it is shorter,
    so the rate is then an upper bound and the least time a lower one, as it should be."""
    limit = ServerLimit.from_headers(headers)
    if limit is None or limit.limit <= 0:
        return None
    window = max(1.0, math.floor(limit.reset_epoch - now))
    return limit.limit / window
