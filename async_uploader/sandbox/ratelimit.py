"""Rate limiting as InvenioRDM does it: Flask-Limiter over the ``limits`` library.

Limits are strings such as ``"20 per 1 second"`` or ``"1000 per minute;25000 per hour"``
(``limits.parse_many``). The strategy is ``limits``' own moving window over an in-memory
storage, keyed by client address + User-Agent (so parallel workers share one budget, as on
the real server). What Flask-Limiter adds on top is mirrored here (``Limiter.__evaluate_limits``
and ``Limiter.__inject_headers`` in flask_limiter/_extension.py):

* the limits are tried smallest window first (``sorted``), each one ``hit`` in turn; the
  first refusal stops the loop (``fail_on_first_breach``), so the hits already taken on
  the smaller windows stay counted;
* the headers describe the breached limit, or else the smallest window's one;
* the window stats are read when the headers are written: ``X-RateLimit-Reset`` is
  ``int(reset_time + 1)``, ``Retry-After`` is ``int(reset - time.time())``;
* the 429 message is ``str(limit)``: ``"20 per 1 second"``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

__all__ = ["MovingWindowLimiter", "RateDecision", "RateLimitItem", "parse_limits"]


def parse_limits(spec: str) -> tuple[RateLimitItem, ...]:
    """Parse ``"N per [M] unit[;...]"`` with ``limits``; raises ValueError on anything else."""
    try:
        return tuple(parse_many(spec))
    except ValueError:
        msg = f"bad rate limit {spec!r} (expected e.g. '20 per 1 second')"
        raise ValueError(msg) from None


@dataclass(frozen=True)
class RateDecision:
    """One request's verdict: Flask-Limiter's ``current_limit`` for that request."""

    allowed: bool
    item: RateLimitItem  # the limit the headers describe (the breached one on a refusal)
    strategy: MovingWindowRateLimiter
    key: str

    @property
    def message(self) -> str:
        """The 429 message, as Flask-Limiter words it (``str(limit)``): ``"20 per 1 second"``."""
        return str(self.item)

    def headers(self) -> dict[str, str]:
        """The four headers, from the window as it stands now (Flask-Limiter reads it late)."""
        reset_time, remaining = self.strategy.get_window_stats(self.item, self.key)
        reset_at = int(reset_time + 1)
        return {
            "X-RateLimit-Limit": str(self.item.amount),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset_at),
            "Retry-After": str(int(reset_at - time.time())),
        }


class MovingWindowLimiter:
    """``limits``' moving window over a ``MemoryStorage``, applied as Flask-Limiter does."""

    def __init__(self, limits: tuple[RateLimitItem, ...] | list[RateLimitItem]) -> None:
        self.limits = tuple(sorted(limits))  # smallest window first, as Flask-Limiter
        self.storage = MemoryStorage()
        self.strategy = MovingWindowRateLimiter(self.storage)

    def hit(self, key: str) -> RateDecision:
        for item in self.limits:
            if not self.strategy.hit(item, key):
                return RateDecision(False, item, self.strategy, key)
        return RateDecision(True, self.limits[0], self.strategy, key)
