"""What one record's steps share: the narrow batch context, and the record's own state.

``RecordContext`` is built once per batch by the pipeline and handed to every record: only
what a step needs (no batch object to reach through). ``RecordJob`` is one record's mutable
journey state; every change goes through ``save``, which journals it before the step goes on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio

from ..client import InvenioClient
from ..config import RetryConfig, ShareMode
from ..events import BytesSent, Event, Notice, Reporter
from ..journal import PUBLISHED, RecordState
from ..match import Hit, clean_text
from ..plan import RecordPlan
from ..results import Outcome
from ..state import owner_of
from ..validate import ValidRecord


@dataclass(frozen=True)
class StepSettings:
    """The settings the steps read (a slice of ``UploadConfig``)."""

    share: ShareMode
    chunk_size: int
    stall_timeout: float
    retry: RetryConfig


class Claims:
    """Record and draft ids a folder of this batch owns: no other folder may take one.

    A hit is claimed only once it is confirmed (its draft read, its files compared)."""

    def __init__(self, ids: set[str] | None = None) -> None:
        self._ids: set[str] = set(ids or ())

    def __contains__(self, record_id: object) -> bool:
        return record_id in self._ids

    def __iter__(self) -> Any:
        return iter(self._ids)

    def claim(self, record_id: str) -> None:
        self._ids.add(record_id)


class TitleLocks:
    """One lock per stored title: creates and look-ups of folders whose titles the server
    would store alike must not interleave (a sibling's draft is never mistaken for ours)."""

    def __init__(self) -> None:
        self._locks: dict[str, anyio.Lock] = {}

    def __call__(self, title: str) -> anyio.Lock:
        return self._locks.setdefault(clean_text(title), anyio.Lock())


@dataclass
class RecordContext:
    """The narrow context of the record steps (one per batch)."""

    client: InvenioClient
    save_state: Callable[[RecordState], Awaitable[None]]  # shielded journal write
    reporter: Reporter
    streams: anyio.CapacityLimiter  # file uploads in flight
    settings: StepSettings
    community_id: Callable[[], Awaitable[str]]  # the --community UUID, resolved once
    claims: Claims = field(default_factory=Claims)
    title_lock: TitleLocks = field(default_factory=TitleLocks)
    owner: str | None = None  # the token's user id, once a created draft names it

    def learn_owner(self, record: dict[str, Any]) -> None:
        self.owner = self.owner or owner_of(record)


@dataclass
class RecordJob:
    """One record on its way: what it is, what the journal says, what is left to do."""

    ctx: RecordContext
    record: ValidRecord
    state: RecordState
    plan: RecordPlan
    found: tuple[Hit, ...] = ()  # the batch look-up's hits with this folder's title
    fresh_draft: bool = False  # created by this job just now: known to have no files
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def folder(self) -> str:
        return self.record.folder.name

    @property
    def client(self) -> InvenioClient:
        return self.ctx.client

    async def save(self, **changes: Any) -> None:
        if changes:
            self.state = self.state.evolve(**changes)
        # Hazard: cancellation. Taking the lock is a cancellation point too, and the server
        # has already changed: the whole save is shielded.
        with anyio.CancelScope(shield=True):
            async with self.lock:
                await self.ctx.save_state(self.state)

    def emit(self, event: Event) -> None:
        self.ctx.reporter(event)

    def notice(self, message: str) -> None:
        self.ctx.reporter(Notice(self.folder, message))

    def bytes_sent(self, key: str, n: int) -> None:
        self.client.report(BytesSent(self.folder, key, n))  # counted from the event

    async def mark_published(self, record: dict[str, Any]) -> Outcome:
        links = record.get("links", {})
        url = links.get("self_html") or links.get("record_html") or links.get("html")
        await self.save(phase=PUBLISHED, record_url=url, last_error=None)
        return Outcome.PUBLISHED
