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
  schedule restarts after the pause without a burst. Without any known rate, a 429 sets the
  rate to half the rate we were actually sending at.
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
        self.left = math.inf  # requests we believe remain until the server's reset
        self.reset_at = 0.0  # monotonic time of the server's reset
        self.recent: deque[float] = deque(maxlen=256)
        self.pauses = 0
        self.paused_seconds = 0.0

    # -- scheduling -----------------------------------------------------------------------
    def reserve(self, now: float) -> float:
        """Book one request; return the seconds it must wait before going out (0 = now)."""
        start = max(now, self.pause_until)
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

    # -- learning -------------------------------------------------------------------------
    def on_headers(self, now: float, wall_now: float, limit: ServerLimit) -> None:
        self.server = limit
        until_reset = max(0.0, limit.reset_epoch - wall_now)
        self.reset_at = now + until_reset
        self.left = float(limit.remaining)
        if limit.remaining == limit.limit - 1 and limit.limit > 0:
            # Flask-Limiter sends Reset = int(1 + oldest hit + W): for the first hit of a
            # window, Reset - now lies in (W, W + 1], less our share of the latency. floor()
            # gives W; the median of the last readings absorbs the odd reading at an edge.
            self.window_readings.append(max(1.0, math.floor(until_reset + 0.05)))
            window = statistics.median_low(self.window_readings)
            if window != self.window:
                self.window = window
                self._adopt_server_rate(limit.limit, window)

    def _adopt_server_rate(self, limit: int, window: float) -> None:
        learned = SAFETY * limit / window
        self.rate = min(learned, self.user_rate) if self.user_rate else learned
        # No burst: in a moving window any burst on top of the schedule can exceed L.
        self.burst = 1

    def on_limit_text(self, text: str | None) -> None:
        """Learn from a 429's message, which Flask-Limiter sets to the limit ("10 per 1 second").

        This is the way in when no response ever opened a fresh window (another client with
        our User-Agent and address kept the window busy). The strictest limit wins.
        """
        best: float | None = None
        for amount, count, unit in _LIMIT_TEXT.findall(text or ""):
            window = float(count or 1) * _UNIT_SECONDS[unit.lower()]
            if best is None or int(amount) / window < best:
                best, limit, span = int(amount) / window, int(amount), window
        if best is not None and (self.window is None or span != self.window):
            self.window = span
            self._adopt_server_rate(limit, span)

    def on_429(self, now: float, retry_after: float | None, jitter: float) -> float:
        """Pause everything; returns the pause length (seconds from now)."""
        if retry_after is not None and retry_after > 0:
            pause = retry_after
        elif self.server is not None and self.reset_at > now:
            pause = self.reset_at - now
        else:
            pause = MIN_PAUSE
        pause += MIN_PAUSE * jitter  # de-synchronise from other clients and from the edge
        if self.rate is None:
            self.rate = max(0.5, self._observed_rate(now) / 2)
            self.burst = 1
        self.pause_until = max(self.pause_until, now + pause)
        # Restart the schedule at the end of the pause with no burst credit.
        if self.rate:
            self.tat = self.pause_until + (self.burst - 1) / self.rate
        self.left = math.inf
        self.pauses += 1
        self.paused_seconds += pause
        return pause

    def _observed_rate(self, now: float) -> float:
        recent = [t for t in self.recent if t >= now - 10.0]
        if len(recent) < 2:
            return 1.0
        span = max(now - recent[0], 1.0)
        return len(recent) / span


class RateLimiter:
    """Async shell: ``await acquire()`` before each request; feed every response back."""

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
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.rand = rand

    async def acquire(self) -> None:
        while True:
            delay = self.policy.reserve(self.clock())
            if delay <= 0:
                return
            await self.sleep(delay)
            # A 429 may have paused the batch while we slept: then book again.
            if self.clock() >= self.policy.pause_until:
                return

    def observe(self, headers: Mapping[str, str]) -> None:
        limit = ServerLimit.from_headers(headers)
        if limit is not None:
            self.policy.on_headers(self.clock(), self.wall(), limit)

    def too_many_requests(self, retry_after: float | None, message: str | None = None) -> float:
        self.policy.on_limit_text(message)
        return self.policy.on_429(self.clock(), retry_after, self.rand())
