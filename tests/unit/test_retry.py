"""The retry decision table, row by row (no sleeping), and which calls may go again."""

from __future__ import annotations

import pytest

from async_uploader.config import RetryConfig
from async_uploader.errors import Reason, http_reason
from async_uploader.retry import decide, is_transient_status, may_resend, parse_retry_after

CFG = RetryConfig(attempts=4, total_seconds=60.0, base_delay=0.5, max_delay=8.0)


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (409, False),
        (412, False),
        (413, False),
        (415, False),
    ],
)
def test_transient_statuses(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


@pytest.mark.parametrize(
    ("attempt", "elapsed", "status", "retry_after", "jitter", "retry", "delay"),
    [
        # connection error: exponential ceiling 0.5, 1, 2, 4 ... with full jitter
        (1, 0.0, None, None, 1.0, True, 0.5),
        (2, 0.0, None, None, 1.0, True, 1.0),
        (3, 0.0, None, None, 0.5, True, 1.0),
        (1, 0.0, None, None, 0.0, True, 0.0),
        # the cap
        (3, 0.0, 503, None, 0.999, True, 1.998),
        # attempts exhausted
        (4, 0.0, 503, None, 0.5, False, 0.0),
        # Retry-After wins over a smaller computed delay
        (1, 0.0, 503, 5.0, 0.1, True, 5.0),
        # total time budget
        (2, 59.9, 500, None, 1.0, False, 0.0),
        # permanent
        (1, 0.0, 400, None, 0.5, False, 0.0),
        (1, 0.0, 403, 3.0, 0.5, False, 0.0),
        # 429 does not use up attempts; it waits for the pause plus a small spread
        (10, 0.0, 429, 0.0, 0.0, True, 0.05),
        (10, 0.0, 429, 0.0, 1.0, True, 0.30),
        (10, 59.0, 429, 2.0, 0.0, False, 0.0),
    ],
)
def test_decisions(
    attempt: int,
    elapsed: float,
    status: int | None,
    retry_after: float | None,
    jitter: float,
    retry: bool,
    delay: float,
) -> None:
    d = decide(
        attempt=attempt,
        elapsed=elapsed,
        status=status,
        retry_after=retry_after,
        config=CFG,
        jitter=jitter,
    )
    assert d.retry is retry
    assert d.delay == pytest.approx(delay)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("-4", 0.0),
        ("", None),
        (None, None),
        ("garbage", None),
        # HTTP dates relative to now = 1_000_000_000 (Sun, 09 Sep 2001 01:46:40 GMT)
        ("Sun, 09 Sep 2001 01:46:50 GMT", 10.0),
        ("Sun, 09 Sep 2001 01:46:30 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, 1_000_000_000.0) == expected


@pytest.mark.parametrize(
    ("reason", "idempotent", "may"),
    [
        # the request provably did nothing: any call may go again
        ("connect", False, True),
        ("HTTP 429", False, True),
        # it may have reached the server: only an idempotent call goes again blindly
        ("body cut", False, False),
        ("no answer", False, False),
        ("timeout", False, False),
        ("HTTP 408", False, False),
        ("HTTP 500", False, False),
        ("HTTP 503", False, False),
        ("upload stalled", False, False),
        ("connect", True, True),
        ("body cut", True, True),
        ("no answer", True, True),
        ("timeout", True, True),
        ("HTTP 503", True, True),
    ],
)
def test_may_resend(reason: str, idempotent: bool, may: bool) -> None:
    assert may_resend(reason, idempotent=idempotent) is may


def test_reasons_are_stable_keys() -> None:
    """The report's ``retries_by_reason`` keys: renaming one breaks readers of old reports."""
    assert {r.value for r in Reason} == {
        "connect",
        "body cut",
        "no answer",
        "timeout",
        "upload stalled",
        "content not kept",
        "content missing",
        "checksum mismatch",
    }
    assert http_reason(503) == "HTTP 503"
