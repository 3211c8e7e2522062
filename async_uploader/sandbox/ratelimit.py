"""A moving-window rate limiter shaped like Flask-Limiter's (InvenioRDM's limiter).

Limits are strings such as ``"20 per 1 second"`` or ``"1000 per minute;25000 per hour"``.
Hits are keyed by client address + User-Agent (so parallel workers share one budget, as on
the real server). A refused hit is not recorded, as with Flask-Limiter's moving window.
"""

from __future__ import annotations

import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

_UNITS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 30 * 86400,
    "year": 365 * 86400,
}
_ITEM = re.compile(
    r"^\s*(\d+)\s*(?:per|/)\s*(\d+)?\s*(second|minute|hour|day|month|year)s?\s*$", re.I
)


@dataclass(frozen=True)
class RateLimitItem:
    amount: int
    multiples: int
    unit: str

    @property
    def seconds(self) -> float:
        return float(self.multiples * _UNITS[self.unit])

    @property
    def text(self) -> str:
        """The 429 message, as Flask-Limiter words it: ``"20 per 1 second"``."""
        return f"{self.amount} per {self.multiples} {self.unit}"


def parse_limits(spec: str) -> tuple[RateLimitItem, ...]:
    """Parse ``"N per [M] unit[;...]"``; raises ValueError on anything else."""
    items = []
    for part in re.split(r"[;,]", spec):
        if not part.strip():
            continue
        match = _ITEM.match(part)
        if match is None:
            raise ValueError(f"bad rate limit {part.strip()!r} (expected e.g. '20 per 1 second')")
        amount, multiples, unit = match.groups()
        items.append(RateLimitItem(int(amount), int(multiples or 1), unit.lower()))
    if not items:
        raise ValueError("empty rate limit")
    return tuple(items)


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    item: RateLimitItem  # the limit the headers describe (the breached one on a refusal)
    remaining: int
    reset: int  # epoch seconds when the oldest hit in the window expires
    retry_after: int  # seconds until ``reset``

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.item.amount),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
            "Retry-After": str(self.retry_after),
        }


class MovingWindowLimiter:
    """In-memory moving windows, one deque of hit times per (key, limit)."""

    def __init__(
        self, limits: tuple[RateLimitItem, ...], clock: Callable[[], float] = time.time
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._hits: dict[tuple[str, int], deque[float]] = {}

    def _window(self, key: str, i: int, now: float) -> deque[float]:
        window = self._hits.setdefault((key, i), deque())
        horizon = now - self.limits[i].seconds
        while window and window[0] <= horizon:
            window.popleft()
        return window

    def hit(self, key: str) -> RateDecision:
        now = self._clock()
        windows = [self._window(key, i, now) for i in range(len(self.limits))]
        for i, window in enumerate(windows):
            if len(window) >= self.limits[i].amount:
                return self._decision(False, i, window, now)
        for window in windows:
            window.append(now)
        # Describe the tightest limit, the one a client should pace itself by.
        tightest = min(range(len(windows)), key=lambda i: self.limits[i].amount - len(windows[i]))
        return self._decision(True, tightest, windows[tightest], now)

    def _decision(self, allowed: bool, i: int, window: deque[float], now: float) -> RateDecision:
        item = self.limits[i]
        oldest = window[0] if window else now
        reset = math.ceil(oldest + item.seconds)
        return RateDecision(
            allowed=allowed,
            item=item,
            remaining=max(item.amount - len(window), 0),
            reset=reset,
            retry_after=max(reset - math.ceil(now), 0),
        )
