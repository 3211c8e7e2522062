"""Sending a call that is not idempotent: never resend it before asking the server.

Create-draft, file init, publish and submit-review are not idempotent: resending one
blindly can make a duplicate draft, a 400 "already exists", or a 404 for a publish that in
fact went through. ``unsure`` sends such a call and, after a failure with no clear answer,
runs a *settle* step (a read-only look at the server) before it sends again.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

from ..errors import BatchFatal, PermanentApiError, TransientApiError
from ..retry import decide
from .job import RecordJob

T = TypeVar("T")


async def unsure(
    job: RecordJob,
    send: Callable[[], Awaitable[T]],
    settle: Callable[[], Awaitable[T | None]],
    *,
    min_delay: float = 0.0,
) -> T:
    """Send a non-idempotent call; before any resend, let ``settle`` ask the server.

    A 404 on a *resent* call (the draft is gone: the first attempt published it) also
    settles before it counts as a failure.
    """
    started = anyio.current_time()
    attempt = 0
    while True:
        attempt += 1
        try:
            return await send()
        except PermanentApiError as exc:
            if exc.status != 404 or attempt == 1 or isinstance(exc, BatchFatal):
                raise
            settled = await settle()
            if settled is None:
                raise
            return settled
        except TransientApiError as exc:
            if isinstance(exc, BatchFatal):
                raise
            settled = await settle()
            if settled is not None:
                return settled
            decision = decide(
                attempt=attempt,
                elapsed=anyio.current_time() - started,
                status=exc.status,
                retry_after=None,
                config=job.ctx.settings.retry,
                jitter=random.random(),
            )
            if not decision.retry:
                raise
            # Hazard: a resend of a call that may have worked; the settle step found nothing.
            delay = max(decision.delay, min_delay)
            job.client.retrying(exc.method, exc.url, f"unsure {exc.method}", attempt, delay)
            await anyio.sleep(delay)
