"""One request-rate budget shared by every request of a batch.

InvenioRDM (Flask-Limiter, moving window) keys its limit on client address + User-Agent, so
all our concurrent requests share one server budget; they must share one client budget too.
The policy is pure (time is passed in) so it is tested as tables with a fake clock;
``RateLimiter`` is the thin async shell around it.

How the budget is chosen:

* ``rate`` given (``--rate``): a GCRA schedule at that rate, with ``burst`` requests allowed
  back to back.
* Learning from headers: on a response that opens a fresh window (``X-RateLimit-Remaining``
  = limit - 1), ``X-RateLimit-Reset`` - now gives the window length W, so the server allows
  ``L / W`` requests per second. We then run at ``SAFETY`` times that with no burst (a burst
  on top of a full schedule overflows a moving window), or at ``--rate`` if that is lower.
* Slowing down before the server refuses, while no schedule is learned yet: when
  ``Remaining`` falls to ``low_water`` or below, the remaining requests are spread evenly
  until the reset; at 0, we wait for it.
* On 429: the whole batch pauses until ``Retry-After`` (seconds or HTTP date), or the reset
  time, or a short jittered pause (a real InvenioRDM can say ``Retry-After: 0``). The
  schedule restarts after the pause without a burst.
* Decrease, then increase again (AIMD-like, never stuck): a 429 with no limit known from
  headers, or congestion (half of the last 20 answers 502/503/504: nginx's answer for rate
  limiting is 503), sets the rate
  to half the rate we were actually sending at (a 429 whose message names a limit, "10 per
  1 second": to that limit). From there the rate grows by ``GROWTH`` every clean step
  (``STEP_S``; ``TEXT_STEP_S`` for a limit only read from a message, so a real but
  header-less limit is probed gently) up to the ceiling: the limit learned from headers, or
  ``--rate``; with neither, once it is ``RELEASE`` times the rate it fell to, the limit is
  dropped. A transient 429 storm thus costs its pause and a few seconds, not the batch.
* Re-learning: headers that name another limit or window than the one believed replace it.
* Budgets per route class: searches have their own budget (Zenodo allows 30 searches per
  minute against 100 requests), learned from the headers of search answers; a search also
  books in the default budget, and a 429 on a search pauses the searches only.
"""

from __future__ import annotations

import math
import random
import re
import statistics
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio

SAFETY = 0.95
GROWTH = 2.0  # rate multiplier per clean step while recovering from a decrease
STEP_S = 0.5  # a clean step after a decrease with nothing learned
TEXT_STEP_S = 5.0  # ... after a decrease to a limit read only from a 429's message
RELEASE = 4.0  # no ceiling: the limit is dropped once the rate is this times its low point
# Congestion: at least half of the last 20 answers were 502/503/504. A share, not a count:
# at hundreds of requests a second, a few independent 503s (a flaky node) are no reason to
# slow down, and are retried one by one; a proxy shedding load refuses most requests.
CONGESTION_OF = 20
CONGESTION_SHARE = 0.5
CONGESTION_STATUSES = frozenset({502, 503, 504})
_LIMIT_TEXT = re.compile(r"(\d+)\s+per\s+(\d+)?\s*(second|minute|hour|day)s?", re.I)
_UNIT_SECONDS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
MIN_PAUSE = 0.5  # a 429 without a usable Retry-After still pauses this long (plus jitter)


@dataclass(frozen=True)
class ServerLimit:
    """What ``X-RateLimit-*`` headers said."""

    limit: int
    remaining: int
    reset_epoch: float

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> ServerLimit | None:
        try:
            return cls(
                int(headers["X-RateLimit-Limit"]),
                int(headers["X-RateLimit-Remaining"]),
                float(headers["X-RateLimit-Reset"]),
            )
        except (KeyError, ValueError):
            return None


def window_reading(reset_epoch: float, wall_now: float, sent_wall: float | None) -> float:
    """The window length W from the first hit of a fresh window.

    Flask-Limiter sends Reset = int(1 + first hit + W), so at the server Reset - now lies in
    (W, W + 1]. Measured from when our request left (before the server's "now"), it lies in
    (W, W + 1 + round trip]: floor() gives W, unless it falls within the round trip past a
    whole second k, where W is k - 1 or k. Then the smaller: a window read one second too
    long would halve the rate for the whole batch without a sign, while one too short shows
    as a 429 whose message names the limit exactly, which corrects it (``on_429``). Without
    the send time (older callers): from the answer's arrival, floor(x + 0.05).
    """
    if sent_wall is None:
        return max(1.0, math.floor(max(0.0, reset_epoch - wall_now) + 0.05))
    x = reset_epoch - sent_wall
    k = math.floor(x)
    if x - k < max(0.0, wall_now - sent_wall) + 0.005:
        k -= 1
    return max(1.0, float(k))


class RatePolicy:
    """Pure scheduling state: ``reserve(now)`` books the next request and says how long to wait."""

    def __init__(self, rate: float | None = None, burst: int = 10, low_water: int = 4):
        self.user_rate = rate
        self.user_burst = max(1, burst)
        self.low_water = low_water
        self.rate = rate
        self.burst = self.user_burst
        self.tat = 0.0  # GCRA theoretical arrival time
        self.pause_until = 0.0
        self.window: float | None = None  # learned server window length (seconds)
        self.window_readings: deque[float] = deque(maxlen=5)
        self.server: ServerLimit | None = None
        self.server_rate: float | None = None  # learned from headers: limit / window
        self.span_named = 0.0  # the window a 429's message named last
        self.left = math.inf  # requests we believe remain until the server's reset
        self.reset_at = 0.0  # monotonic time of the server's reset
        self.recent: deque[float] = deque(maxlen=256)
        self.pauses = 0
        self.paused_seconds = 0.0
        # Recovery after a decrease: ``floor`` is the rate it fell to, ``next_growth`` when
        # the next clean step ends; ``step`` 0 means not recovering.
        self.floor = 0.0
        self.next_growth = math.inf
        self.step = 0.0
        self.outcomes: deque[bool] = deque(maxlen=CONGESTION_OF)  # True: a 502/503/504
        self.decreases = 0

    # -- scheduling -----------------------------------------------------------------------
    def reserve(self, now: float) -> float:
        """Book one request; return the seconds it must wait before going out (0 = now)."""
        start = max(now, self.pause_until)
        self._grow(now)
        if self.rate:
            interval = 1.0 / self.rate
            tau = (self.burst - 1) * interval
            start = max(start, self.tat - tau)
            self.tat = max(self.tat, start) + interval
        if self.window is None and self.left <= self.low_water and now < self.reset_at:
            # No learned schedule yet: spread what is left of the server's window evenly up
            # to its reset. (Once the window is learned the schedule itself stays below L,
            # and a steady state with one or two requests left is normal.)
            spacing = (self.reset_at - now) / max(self.left, 1.0)
            start = max(start, self.reset_at if self.left < 1 else now + spacing)
            self.left = max(0.0, self.left - 1)
        elif now >= self.reset_at:
            self.left = math.inf
        else:
            self.left -= 1
        self.recent.append(start)
        return start - now

    def ceiling(self) -> float | None:
        """The highest rate we may send at: the server's learned limit, or ``--rate``."""
        learned = SAFETY * self.server_rate if self.server_rate else None
        if learned and self.user_rate:
            return min(learned, self.user_rate)
        return learned or self.user_rate

    def _grow(self, now: float) -> None:
        """After a decrease: each clean step multiplies the rate by GROWTH, up to the ceiling
        (or, with none, until the limit is dropped). A new decrease restarts the steps."""
        while self.step and now >= self.next_growth and self.rate:
            self.rate *= GROWTH
            self.next_growth += self.step
            top = self.ceiling()
            if top is not None and self.rate >= top:
                self.rate, self.step = top, 0.0
                self.burst = 1 if self.server_rate else self.user_burst
            elif top is None and self.rate >= RELEASE * self.floor:
                self.rate, self.step, self.burst = None, 0.0, self.user_burst
                self.window = None  # whatever a message said, the server took more

    def _decrease(self, now: float, to: float, step: float) -> None:
        self.rate = min(to, self.ceiling() or to)
        self.floor = self.rate
        self.burst = 1
        self.step = step
        self.next_growth = max(now, self.pause_until) + step
        self.decreases += 1

    # -- learning -------------------------------------------------------------------------
    def on_headers(
        self, now: float, wall_now: float, limit: ServerLimit, sent_wall: float | None = None
    ) -> None:
        """Learn from one answer's ``X-RateLimit-*``; ``sent_wall``: when its request left."""
        if (
            self.window is not None
            and self.server_rate is not None
            and limit.limit != round(self.server_rate * self.window)
        ):
            # Another limit than the one believed (the first was learned from another route
            # class's answers, or the server changed it): the same window, the new limit.
            self._adopt_server_rate(limit.limit, self.window)
        self.server = limit
        until_reset = max(0.0, limit.reset_epoch - wall_now)
        self.reset_at = now + until_reset
        self.left = float(limit.remaining)
        if limit.remaining == limit.limit - 1 and limit.limit > 0:
            self.window_readings.append(window_reading(limit.reset_epoch, wall_now, sent_wall))
            window = statistics.median_low(self.window_readings)
            if limit.limit / window != self.server_rate:  # first reading, or another limit
                self.window = window
                self._adopt_server_rate(limit.limit, window)

    def _adopt_server_rate(self, limit: int, window: float) -> None:
        self.server_rate = limit / window
        learned = SAFETY * self.server_rate
        self.rate = min(learned, self.user_rate) if self.user_rate else learned
        self.step = 0.0  # the server said what it allows: no probing above or below it
        # No burst: in a moving window any burst on top of the schedule can exceed L.
        self.burst = 1

    def on_limit_text(self, text: str | None) -> float | None:
        """The limit a 429's message names (Flask-Limiter sets it to the limit, "10 per 1
        second"), in requests per second; the strictest wins. Not believed for good: it sets
        where a decrease lands, and the recovery probes above it (``TEXT_STEP_S``).

        This is the way in when no response ever opened a fresh window (another client with
        our User-Agent and address kept the window busy).
        """
        best: float | None = None
        for amount, count, unit in _LIMIT_TEXT.findall(text or ""):
            window = float(count or 1) * _UNIT_SECONDS[unit.lower()]
            if best is None or int(amount) / window < best:
                best, span = int(amount) / window, window
        if best is not None:
            self.span_named = span
            if self.server_rate is None:
                self.window = span
        return best

    def on_429(
        self, now: float, retry_after: float | None, jitter: float, text: str | None = None
    ) -> float:
        """Pause everything and decrease; returns the pause length (seconds from now)."""
        if retry_after is not None and retry_after > 0:
            pause = retry_after
        elif self.server is not None and self.reset_at > now:
            pause = self.reset_at - now
        else:
            pause = MIN_PAUSE
        # The answers of requests already in flight when the first 429 came are the same
        # refusal: one decrease per pause, not one per answer, and no jitter piled on.
        decided = now < self.pause_until
        if not decided:  # de-synchronise from other clients and from the window's edge
            pause += MIN_PAUSE * jitter
        self.pause_until = max(self.pause_until, now + pause)
        named = self.on_limit_text(text)
        if named is not None and self.server_rate is not None and named != self.server_rate:
            # The server's own words on its limit contradict what the headers made us
            # believe (a window read one second off): they win.
            self.window = self.span_named
            self.server_rate = named
        if not decided:
            sent = self._observed_rate(now)
            if named is not None and SAFETY * named < sent:
                self._decrease(now, SAFETY * named, TEXT_STEP_S)
            elif self.server_rate is None or named is None:
                # Nothing (or nothing more) to go by: half of what we were sending.
                self._decrease(now, max(0.5, sent / 2), STEP_S)
        self.left = math.inf
        return self._paused(pause)

    def _paused(self, pause: float) -> float:
        """Book a pause that ``pause_until`` already holds: the schedule restarts at its
        end with no burst credit."""
        if self.rate:
            self.tat = self.pause_until + (self.burst - 1) / self.rate
        self.pauses += 1
        self.paused_seconds += pause
        return pause

    def on_answer(self, now: float, status: int, jitter: float) -> float:
        """Every answer's status. When most recent answers are 502/503/504, the server (or
        its proxy: nginx answers a rate limit with 503) is shedding load: a short pause for
        everyone and a decrease, as after a 429. Returns the pause (0: no congestion)."""
        self.outcomes.append(status in CONGESTION_STATUSES)
        shed = sum(self.outcomes)
        if shed < CONGESTION_SHARE * CONGESTION_OF or now < self.pause_until:
            return 0.0
        self.outcomes.clear()
        pause = MIN_PAUSE * (1 + jitter)
        self.pause_until = max(self.pause_until, now + pause)
        self._decrease(now, max(0.5, self._observed_rate(now) / 2), STEP_S)
        return self._paused(pause)

    def _observed_rate(self, now: float) -> float:
        recent = [t for t in self.recent if now - 10.0 <= t <= now]  # sent, not booked
        if len(recent) < 2:  # too few to measure: what we were scheduled at
            return self.rate or 1.0
        span = max(now - recent[0], 0.25)  # early in a batch the span is short
        return len(recent) / span


SEARCH = "search"
DEFAULT = "default"
_SEARCH_PATHS = ("/api/records", "/api/user/records", "/api/communities")


def route_class(method: str, path: str) -> str:
    """The budget a request books in: listings and searches have their own (Zenodo: 30 per
    minute against 100); everything else shares the default one."""
    if method == "GET" and path.rstrip("/").endswith(_SEARCH_PATHS):
        return SEARCH
    return DEFAULT


class RateLimiter:
    """Async shell: ``await acquire(route_class)`` before each request; feed every response
    back with the same class. A search books in its own budget and in the default one."""

    def __init__(
        self,
        policy: RatePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rand: Callable[[], float] = random.random,
    ):
        self.policy = policy
        self.policies = {DEFAULT: policy}
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.rand = rand

    def policy_for(self, cls: str) -> RatePolicy:
        if cls not in self.policies:
            self.policies[cls] = RatePolicy(self.policy.user_rate, self.policy.user_burst)
        return self.policies[cls]

    async def acquire(self, cls: str = DEFAULT) -> None:
        if cls != DEFAULT:
            await self._acquire(self.policy_for(cls))
        await self._acquire(self.policy)

    async def _acquire(self, policy: RatePolicy) -> None:
        while True:
            delay = policy.reserve(self.clock())
            if delay <= 0:
                return
            await self.sleep(delay)
            # A 429 may have paused the budget while we slept: then book again.
            if self.clock() >= policy.pause_until:
                return

    def observe(
        self, headers: Mapping[str, str], cls: str = DEFAULT, sent_wall: float | None = None
    ) -> None:
        limit = ServerLimit.from_headers(headers)
        if limit is None:
            return
        self.policy_for(cls).on_headers(self.clock(), self.wall(), limit, sent_wall)
        if cls != DEFAULT and self.policy.server is None:
            # Most servers have one limit for every route: until an answer of its own says
            # otherwise, the main budget starts from what a search answer said.
            self.policy.on_headers(self.clock(), self.wall(), limit, sent_wall)

    def too_many_requests(
        self, retry_after: float | None, message: str | None = None, cls: str = DEFAULT
    ) -> float:
        """A 429 pauses the budget of the request's class only: a search refused by its
        own (smaller) limit does not stop the uploads."""
        return self.policy_for(cls).on_429(self.clock(), retry_after, self.rand(), message)

    def answered(self, status: int) -> float:
        """Every answer (any class): when most are 502/503/504 the whole batch slows down
        (the default budget, which every request books in); the pause, or 0."""
        return self.policy.on_answer(self.clock(), status, self.rand())

    @property
    def pauses(self) -> int:
        return sum(p.pauses for p in self.policies.values())
