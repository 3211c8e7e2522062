"""How many records to keep in flight: learned from the server's answers, not configured.

A gradient controller in the style of TCP Vegas and Netflix's concurrency-limits (Gradient2).
The signal is queueing, as in Gradient2: each small call's round trip over the long-run
average of its kind (``base``, an exponential average moving ``LONG_WEIGHT`` per answer), and
the median of these ratios over a window. Averages, not minimums, so that network jitter does
not read as queueing; a step up in round trips when the limit grew does (the average follows
only slowly). The window's median of the ratios says how much longer calls take now than
they usually did:

* near 1: the server is not queueing our work, so more records in flight may buy
  throughput. We start at ``INITIAL`` (low, so the first round trips show the server
  unloaded; a batch starts at its floor, ``DEFAULT_FLOOR``) and double per window (slow
  start) while the ratio stays low and the answers per second keep rising; when they stop
  rising, adding work stopped paying: slow start ends.
* then, each window: above ``TOLERANCE`` the limit shrinks in proportion to the queueing
  (``limit * TOLERANCE / ratio``, at most halved); below it, it grows by ``sqrt(limit) / 2``
  only while growing still raises the answers per second (hill climbing; each paying growth
  in a row doubles the step); a growth that bought nothing is taken back, and the limit
  holds, probing once every ``PROBE_EVERY`` windows in case the server can take more now. A
  local server that is CPU-bound settles near the few requests it serves at once (with a
  small queue, so it never waits for us); a remote one with high latency grows to the cap,
  since there latency is distance, not queueing.
* a window in which fewer records ran than the limit allows (the batch's first record, its
  tail) says nothing about more work: it is not judged, except that queueing still shrinks.
* a 429 or a burst of 5xx (``congestion``) halves the limit at once (multiplicative
  decrease; once per episode, ``CALM_S``) and ends slow start; then, while round trips show
  no queueing, the limit doubles back per window to where it was (the storm may have had
  nothing to do with our work in flight), and hill climbing goes on from there.

``cap`` is ``--records-in-flight`` when given (the user's ceiling, never a setting to tune).
Pure: time and round trips are passed in, so the policy is tested as tables.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

INITIAL = 1  # so the first round trips show the server unloaded (doubling is quick)
DEFAULT_CAP = 128
# The batch's floor (session.py): it never runs fewer records than the old fixed default.
# Shrinking below it buys no throughput (a CPU-bound server only queues the work), and the
# signals are noisy under retries and jitter; the policy itself goes down to 1 if asked.
DEFAULT_FLOOR = 8
TOLERANCE = 1.5  # round trips may grow this much over unloaded before the limit shrinks
QUIET = 1.2  # slow start goes on while the queueing ratio stays under this
MIN_SAMPLES = 16  # answers per window (in slow start: max(6, the limit))
MIN_WINDOW_S = 0.2  # ... and its least length, past slow start
PAYS = 0.25  # a growth pays when answers per second rise by this share of it (or more)
WASTED = 0.1  # ... and bought nothing under this share (it is taken back)
LONG_WEIGHT = 0.02  # per answer: the long-run round trip moves this share towards it
PROBE_EVERY = 10  # windows between growth probes while holding
CALM_S = 2.0  # after a halving, the same episode's other refusals are not new news


@dataclass
class ConcurrencyPolicy:
    """The records-in-flight limit and what it is learned from (see the module docstring)."""

    cap: int = DEFAULT_CAP
    floor: int = 1
    limit: float = INITIAL
    slow_start: bool = True
    base: dict[str, float] = field(default_factory=dict)  # long-run round trip per kind
    ratios: list[float] = field(default_factory=list)  # this window's, each over its base
    seen: dict[str, int] = field(default_factory=dict)  # answers per kind so far
    count: int = 0
    window_start: float | None = None
    last_rate: float = 0.0  # answers per second in the previous window
    windows: int = 0
    grew_from: float | None = None  # the limit before the last growth, until it paid
    streak: int = 0  # growths in a row that paid
    busiest: int = 0  # the most records in flight during this window
    calm_until: float = -math.inf  # no second halving before this
    recover_to: float = 0.0  # the limit before a halving: doubled back to while calm

    def __post_init__(self) -> None:
        self.limit = float(min(max(self.limit, self.floor), self.cap))

    @property
    def current(self) -> int:
        """The limit as a whole number of records, within [floor, cap]."""
        return max(self.floor, min(self.cap, math.floor(self.limit)))

    def sample(self, now: float, kind: str, seconds: float, in_use: int | None = None) -> bool:
        """One answered request of ``kind`` took ``seconds``, with ``in_use`` records in
        flight (None: as many as the limit); True when the limit changed."""
        self.busiest = max(self.busiest, self.current if in_use is None else in_use)
        if self.window_start is None:  # the window's answers are those after its start
            self.window_start = now
            return False
        usual = self.base.get(kind, seconds)
        self.ratios.append(seconds / max(usual, 1e-6))
        # A plain mean over a kind's first answers, then the exponential average.
        n = self.seen[kind] = self.seen.get(kind, 0) + 1
        self.base[kind] = usual + max(LONG_WEIGHT, 1 / n) * (seconds - usual)
        self.count += 1
        span = now - self.window_start
        if self.slow_start:
            if self.count < max(6, self.current) or span <= 0:
                return False
        elif self.count < MIN_SAMPLES or span < MIN_WINDOW_S:
            return False
        before = self.current
        queueing = statistics.median(self.ratios)
        rate = self.count / span
        if self.busiest >= self.current:
            self._update(queueing, rate)
        elif queueing > TOLERANCE:  # fewer records than allowed, and still queueing: shrink
            self.slow_start = False
            self._set(self.limit * max(0.5, TOLERANCE / queueing))
        # else: fewer records ran than the limit allows (the batch's start or end): the
        # window says nothing about more work; judge the next one.
        self.busiest = 0
        self.ratios.clear()
        self.count = 0
        self.window_start = now
        self.windows += 1
        return self.current != before

    def _update(self, queueing: float, rate: float) -> None:
        grew, self.grew_from = self.grew_from, None
        # What the last growth bought: answers per second rose by ``gain`` for ``grown``
        # more work. It paid at PAYS of it (a doubling: +25%); under WASTED it bought
        # nothing (a doubling: under +10%, within a window's noise) and is taken back.
        grown = self.limit / grew - 1 if grew else 0.0
        gain = rate / self.last_rate - 1 if self.last_rate > 0 else math.inf
        paid = grew is not None and gain >= PAYS * grown
        self.last_rate = rate
        if queueing > TOLERANCE:  # the server queues our work: shrink in proportion
            self.slow_start = False
            self._set(self.limit * max(0.5, TOLERANCE / queueing))
        elif grew is not None and gain < WASTED * grown:  # bought nothing: take it back
            self.slow_start = False
            self.recover_to = 0.0
            self._set(grew)
        elif (grew is not None and not paid) or (self.slow_start and queueing >= QUIET):
            # Bought a little (keep it), or queueing shows: stop growing, hold from here.
            self.slow_start = False
        elif self.slow_start:
            self._set(self.limit * 2, growth=True)
        elif self.limit < self.recover_to and queueing < QUIET:
            # After a halving (often a 429 storm that had nothing to do with our work in
            # flight): double back to where it was while the server shows no queueing.
            self._set(min(self.recover_to, self.limit * 2))
            if self.limit >= self.recover_to:
                self.recover_to = 0.0
        elif paid or self.windows % PROBE_EVERY == 0:
            # Each growth in a row that paid doubles the step (at most the limit itself), so
            # a server that frees up is taken up in a few windows, not dozens.
            self.streak = self.streak + 1 if paid else 0
            step = max(1.0, min(self.limit, math.sqrt(self.limit) / 2 * 2**self.streak))
            self._set(self.limit + step, growth=True)
            return
        self.streak = 0

    def _set(self, limit: float, *, growth: bool = False) -> None:
        before, self.limit = self.limit, min(float(self.cap), max(float(self.floor), limit))
        if growth and self.limit > before:
            self.grew_from = before

    def congestion(self, now: float) -> None:
        """A 429 or a burst of 5xx: halve now, and leave slow start. The other answers of
        the same episode (requests that were in flight) do not halve again: one decrease
        per ``CALM_S``."""
        if now < self.calm_until:
            return
        self.calm_until = now + CALM_S
        self.recover_to = max(self.recover_to, self.limit)
        self.slow_start = False
        self.limit = max(float(self.floor), self.limit / 2)
        self.ratios.clear()
        self.count = 0
        self.window_start = None
        self.last_rate = 0.0  # the next window starts a new comparison
        self.grew_from = None


_WORDS = frozenset(
    {"api", "records", "user", "draft", "files", "commit", "content", "actions", "publish"}
    | {"review", "submit-review", "versions", "communities", "requests", "access", "links"}
    | {"files-import"}
)


def call_kind(method: str, path: str) -> str:
    """A request's kind, ids and file keys left out: "POST /api/records/*/draft/actions/publish".
    Each kind has its own unloaded round trip (a publish takes longer than a create)."""
    parts = [p if p in _WORDS else "*" for p in path.split("/") if p]
    return f"{method} /{'/'.join(parts)}"


class Flow:
    """The async side of the policy: the limiters the pipeline waits on, kept at its limit.

    ``records`` bounds the records in flight, ``streams`` the file uploads at once (at most
    ``streams_cap``, ``--file-streams``; by default as many as records, so files never
    queue behind a cap the records do not have). anyio lets a limiter's size change while
    tasks hold it: a smaller size lets no new task in until enough have left.
    """

    def __init__(
        self,
        policy: ConcurrencyPolicy,
        streams_cap: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.streams_cap = streams_cap
        self.clock = clock
        self.records = anyio.CapacityLimiter(policy.current)
        self.streams = anyio.CapacityLimiter(self._streams())

    def _streams(self) -> int:
        n = max(2, self.policy.current)
        return min(n, self.streams_cap) if self.streams_cap else n

    def sample(self, kind: str, seconds: float) -> None:
        in_use = self.records.borrowed_tokens
        if self.policy.sample(self.clock(), kind, seconds, in_use):
            self._apply()

    def congestion(self) -> None:
        self.policy.congestion(self.clock())
        self._apply()

    def _apply(self) -> None:
        self.records.total_tokens = self.policy.current
        self.streams.total_tokens = self._streams()
