"""The sandbox's rate limiting matches a bare ``limits`` moving window, as Flask-Limiter uses it.

One scripted request sequence (real time: ``limits``' MemoryStorage reads ``time.time()``
and offers no clock hook) goes to the sandbox over loopback HTTP, and after each answer
the same hit goes to a ``limits`` moving window driven here the way Flask-Limiter drives
it (limits smallest window first, stop at the first breach, headers from the breached
limit or the smallest window, ``Reset = int(reset_time + 1)``,
``Retry-After = int(Reset - now)``, message ``str(limit)``). Decisions, headers and 429
bodies must agree. Script times are 100 ms away from every window edge, so the few ms
between the two hits cannot change a decision.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

import pytest
from limits import parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

pytestmark = pytest.mark.anyio

SPEC = "5 per 1 second;8 per 1 minute"
UA = "parity-client"
HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")
# (offset in seconds, expected status, the limit a refusal names)
SCRIPT = [
    (0.0, 200, None),
    (0.2, 200, None),
    (0.4, 200, None),
    (0.6, 200, None),
    (0.8, 200, None),
    (0.9, 429, "5 per 1 second"),  # five hits in the last second
    (1.1, 200, None),  # the hit at 0.0 left the window
    (1.3, 200, None),
    (1.5, 200, None),  # the minute's eighth
    (1.7, 429, "8 per 1 minute"),  # the second's window took this hit, the minute refused
    (1.9, 429, "8 per 1 minute"),
    (2.0, 429, "5 per 1 second"),  # 1.1, 1.3, 1.5 and the refused 1.7, 1.9 fill the second
]


class BareFlaskLimiter:
    """What Flask-Limiter does per request, over ``limits`` alone."""

    def __init__(self, spec: str) -> None:
        self.items = sorted(parse_many(spec))
        self.strategy = MovingWindowRateLimiter(MemoryStorage())

    def request(self, key: str) -> tuple[int, dict[str, str], Any]:
        shown, status = self.items[0], 200
        for item in self.items:
            if not self.strategy.hit(item, key):
                shown, status = item, 429
                break
        reset_time, remaining = self.strategy.get_window_stats(shown, key)
        reset_at = int(reset_time + 1)
        headers = {
            "X-RateLimit-Limit": str(shown.amount),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset_at),
            "Retry-After": str(int(reset_at - time.time())),
        }
        body = {"message": str(shown), "status": 429} if status == 429 else None
        return status, headers, body


async def test_sandbox_matches_bare_limits_moving_window(running: Any) -> None:
    bare = BareFlaskLimiter(SPEC)
    async with running(rate_limit=SPEC) as (sb, session):
        url = f"{sb.url}/api/records"
        key = f"127.0.0.1|{UA}"  # the sandbox's key: client address + User-Agent
        start = math.ceil(time.time()) + 0.05  # keep script times off whole seconds
        seen = []
        for offset, want_status, want_limit in SCRIPT:
            await asyncio.sleep(max(0.0, start + offset - time.time()))
            async with session.get(url, headers={"User-Agent": UA}) as resp:
                got_headers = {name: resp.headers[name] for name in HEADERS}
                got_body = await resp.json() if resp.status == 429 else None
                got = (resp.status, got_headers, got_body)
            expected = bare.request(key)
            assert got == expected, f"at +{offset}s"
            assert resp.status == want_status, f"at +{offset}s"
            if want_limit is not None:
                assert got_body == {"message": want_limit, "status": 429}
            seen.append(
                got_headers["X-RateLimit-Limit"] + "/" + got_headers["X-RateLimit-Remaining"]
            )
        # Allowed calls show the 1-second window; refusals show the limit that refused.
        assert seen == ["5/4", "5/3", "5/2", "5/1", "5/0", "5/0"] + ["5/0"] * 3 + ["8/0"] * 2 + [
            "5/0"
        ]
        assert sb.stats()["status_429"] == 4
