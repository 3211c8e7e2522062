"""One HTTP session for a whole batch: keep-alive connections, the token, one rate limiter
and one records-in-flight controller."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from .client import InvenioClient
from .concurrency import DEFAULT_CAP, DEFAULT_FLOOR, ConcurrencyPolicy, Flow
from .config import USER_AGENT, UploadConfig
from .events import Reporter, no_reporter
from .ratelimit import RateLimiter, RatePolicy
from .results import Counters


@asynccontextmanager
async def open_client(
    config: UploadConfig, counters: Counters, reporter: Reporter = no_reporter
) -> AsyncIterator[InvenioClient]:
    """One aiohttp session (keep-alive) and one rate limiter for the whole batch."""
    timeout = aiohttp.ClientTimeout(
        total=None,
        connect=config.connect_timeout,
        sock_connect=config.connect_timeout,
        sock_read=config.read_timeout,
    )
    records_cap = config.records_in_flight or DEFAULT_CAP
    connector = aiohttp.TCPConnector(
        limit=records_cap + (config.file_streams or records_cap) + 4,
        ssl=config.verify_tls,
    )
    headers = {"User-Agent": USER_AGENT, "Authorization": f"Bearer {config.token}"}
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers=headers, raise_for_status=False
    ) as session:
        # Hazard: aiohttp silently resends an idempotent request once after a dropped
        # keep-alive connection, reusing a half-read streamed body; InvenioClient switches
        # that off (client.disable_silent_resend) and fails loudly where it cannot.
        yield InvenioClient(
            session,
            api_url=config.api_url,
            limiter=RateLimiter(RatePolicy(config.rate, config.burst)),
            flow=Flow(
                ConcurrencyPolicy(cap=records_cap, floor=min(DEFAULT_FLOOR, records_cap)),
                config.file_streams,
            ),
            retry=config.retry,
            counters=counters,
            reporter=reporter,
        )
