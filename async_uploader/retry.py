"""When to send an HTTP call again: a pure decision table, tested without sleeping.

=====================================  ============  ===========================================
outcome (error class, counting key)    transient?    what happens
=====================================  ============  ===========================================
connection refused, DNS, TLS, connect  yes           back off, resend (any call: nothing was
timeout (``NotSent``, "connect")                     sent)
connection broke while sending the     yes           back off, resend if the call is idempotent
body (``BodyPartlySent``, "body cut")
sent whole, closed/reset before the    yes           back off, resend if the call is idempotent
answer (``NoAnswer``, "no answer")
no answer in time (``NoAnswer``,       yes           back off, resend if the call is idempotent
"timeout"); a stalled upload
408 Request Timeout                    yes           back off, resend if the call is idempotent
429 Too Many Requests                  yes           the whole batch pauses (``ratelimit.py``);
                                                     resend any call: it was refused unread.
                                                     Does not use up attempts, only total time
500, 502, 503, 504, other 5xx          yes           back off (honouring Retry-After), resend
(JSON or a proxy's HTML page)                        if the call is idempotent
other 4xx (400, 403, 404, 409, 413..)  no            the record fails with the server's message
=====================================  ============  ===========================================

Back-off is exponential with full jitter (``delay = U(0, min(cap, base * 2**(n-1)))``), bounded
by attempts and by total elapsed time, whichever comes first. A ``Retry-After`` from the
server wins over the computed delay. Which *calls* are idempotent is decided by the caller
(``client.py``, ``resend=``): POST /api/records, file init and publish are not, and after a
failure that may have reached the server they are not resent blindly (``may_resend``).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .config import RetryConfig
from .errors import Reason, http_reason

# The failures after which a call that is not idempotent provably did nothing.
NOTHING_DONE = frozenset({Reason.CONNECT.value, http_reason(429)})


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or 500 <= status <= 599


def may_resend(reason: str, *, idempotent: bool) -> bool:
    """May a call be sent again after a failure counted under ``reason`` (``Reason`` or
    "HTTP <status>")? An idempotent call always may; any other call only when the failure
    proves that the server did nothing (not sent, or refused with 429)."""
    return idempotent or reason in NOTHING_DONE


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
