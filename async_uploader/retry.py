"""When to send an HTTP call again: a pure decision table, tested without sleeping.

=====================================  ============  ===========================================
outcome                                transient?    what happens
=====================================  ============  ===========================================
connection refused/reset, DNS, TLS     yes           back off, resend (if the call allows it)
timeout (connect or read), stall       yes           back off, resend (if the call allows it)
408 Request Timeout                    yes           back off, resend
429 Too Many Requests                  yes           the whole batch pauses (``ratelimit.py``);
                                                     does not use up attempts, only total time
500, 502, 503, 504, other 5xx          yes           back off (honouring Retry-After), resend;
(JSON or a proxy's HTML page)
other 4xx (400, 403, 404, 409, 413..)  no            the record fails with the server's message
=====================================  ============  ===========================================

Back-off is exponential with full jitter (``delay = U(0, min(cap, base * 2**(n-1)))``), bounded
by attempts and by total elapsed time, whichever comes first. A ``Retry-After`` from the
server wins over the computed delay. Which *calls* may be resent at all is decided by the
caller (``client.py``): POST /api/records and publish are never resent blindly.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .config import RetryConfig


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    delay: float
    reason: str


def decide(
    *,
    attempt: int,
    elapsed: float,
    status: int | None,
    retry_after: float | None,
    config: RetryConfig,
    jitter: float,
) -> RetryDecision:
    """Decide about the failed ``attempt``-th try (1-based) of one call.

    ``status`` is None for a connection error or timeout. ``jitter`` is a number in [0, 1)
    supplied by the caller (random in production, fixed in tests).
    """
    if status is not None and not is_transient_status(status):
        return RetryDecision(False, 0.0, f"HTTP {status} is not transient")
    what = "no answer" if status is None else f"HTTP {status}"
    if status == 429:
        # The rate limiter pauses the whole batch; this call only needs a small spread so
        # that waiting calls do not all fire at the same instant when the pause ends.
        delay = (retry_after or 0.0) + 0.05 + 0.25 * jitter
    else:
        if attempt >= config.attempts:
            return RetryDecision(False, 0.0, f"{what}, gave up after {attempt} attempts")
        ceiling = min(config.max_delay, config.base_delay * 2 ** (attempt - 1))
        delay = jitter * ceiling
        if retry_after is not None:
            delay = max(delay, min(retry_after, config.max_delay * 4))
    if elapsed + delay > config.total_seconds:
        return RetryDecision(
            False,
            0.0,
            f"{what}, gave up after {elapsed:.0f} s ({config.total_seconds:.0f} s budget)",
        )
    return RetryDecision(True, delay, what)


def parse_retry_after(value: str | None, now_epoch: float) -> float | None:
    """``Retry-After`` in seconds, from either form the RFC allows (delta or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now_epoch)
