"""Asking the server what happened, when a call that creates something lost its answer.

Create-draft, file init, publish and submit-review are not idempotent: resending one
blindly can make a duplicate draft, a 400 "already exists", or a 404 for a publish that in
fact went through. ``unsure`` sends such a call and, after a failure with no clear answer,
runs a *settle* step (a read-only look at the server) before it sends again.

Finding a draft whose create answer was lost relies on the title and the time of the
attempt, not on a marker in the metadata (the BIG-MAP Archive drops
``metadata.identifiers``). Drafts one folder owns are "claimed" for the whole batch, and
creates of folders with the same title are serialised, so two folders never share a draft.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .errors import BatchFatal, PermanentApiError, TransientApiError
from .journal import DRAFT, FileState
from .plan import fingerprint
from .retry import decide
from .transfer import entries_of, local_md5

if TYPE_CHECKING:
    from .record import RecordJob

T = TypeVar("T")
INDEX_WAITS = (1.5, 4.0)  # a new draft takes ~1 s (an index refresh) to be searchable
CREATE_WINDOW = timedelta(minutes=2)  # how far before the attempt a found draft may date


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
                config=job.run.config.retry,
                jitter=random.random(),
            )
            if not decision.retry:
                raise
            job.run.client.counters.retries += 1
            job.run.client.counters.by_reason[f"unsure {exc.method}"] += 1
            await anyio.sleep(max(decision.delay, min_delay))


async def find_lost_draft(job: RecordJob, *, patient: bool = True) -> dict[str, Any] | None:
    """Look for the folder's draft among the user's records, by title (and time).

    After a lost create: an unclaimed draft with our title made since the attempt; the
    search is repeated while the index may still be catching up (``patient``). After an
    unreadable journal entry (no time known): any unclaimed draft with our title, or a
    published record whose files all match the folder (then the state says published and
    ``None`` is returned).
    """
    since = parse_time(job.state.create_started)
    waits = INDEX_WAITS if (patient and since is not None) else (0.0,)
    for wait in waits:
        if since is not None:
            age = (datetime.now().astimezone() - since).total_seconds()
            if age < wait:
                await anyio.sleep(wait - age)
        found = await _search_once(job, since)
        if found is not None or job.state.done:
            return found
    return None


async def _search_once(job: RecordJob, since: datetime | None) -> dict[str, Any] | None:
    for hit in await search_title(job):
        hit_id = str(hit.get("id"))
        created = parse_time(hit.get("created"))
        if (
            hit_id in job.run.claimed
            or created is None
            or (since is not None and (created < since - CREATE_WINDOW or hit.get("is_published")))
        ):
            continue
        job.run.claimed.add(hit_id)  # no await since the check: no other task can take it
        if hit.get("is_published"):
            if await adopt_published(job, hit):
                return None
            continue
        draft = await job.run.client.get_draft(hit_id)
        if draft.status != 200:
            continue
        job.run.notice(
            job.folder,
            f"found draft {hit_id} on the server (a create whose answer "
            "was lost, or an unreadable journal); using it",
        )
        await job.save(
            phase=DRAFT,
            draft_id=hit_id,
            links=draft.obj.get("links"),
            fingerprint=fingerprint(job.record),
        )
        return draft.obj
    return None


async def search_title(job: RecordJob) -> list[dict[str, Any]]:
    """The user's records with exactly our title, oldest first."""
    title = job.record.title
    quoted = title.replace("\\", "\\\\").replace('"', '\\"')
    resp = await job.run.client.search_user_records(
        {"q": f'metadata.title:"{quoted}"', "sort": "newest", "size": "100"}
    )
    hits = [
        h
        for h in resp.obj.get("hits", {}).get("hits", [])
        if h.get("metadata", {}).get("title") == title
    ]
    return sorted(hits, key=lambda h: str(h.get("created")))


async def sweep_orphans(job: RecordJob, since: str | None) -> None:
    """After a create had to be resent: delete drafts the lost attempts made after all."""
    start = parse_time(since)
    if start is None:
        return
    for hit in await search_title(job):
        hit_id = str(hit.get("id"))
        created = parse_time(hit.get("created"))
        if (
            hit.get("is_published")
            or hit_id in job.run.claimed
            or created is None
            or created < start - CREATE_WINDOW
        ):
            continue
        job.run.claimed.add(hit_id)
        await job.run.client.delete_draft(hit_id)
        job.run.notice(
            job.folder,
            f"deleted draft {hit_id}: a create whose answer was lost "
            "made it, and it was found only after the create was sent again",
        )


async def adopt_published(job: RecordJob, record: dict[str, Any]) -> bool:
    """A published record with our title is ours if every file matches the folder's md5."""
    listing = await job.run.client.list_files(record["links"]["files"])
    server = {e["key"]: e.get("checksum") for e in entries_of(listing.obj)}
    local = {f.key: f for f in job.record.folder.files}
    if set(server) != set(local):
        return False
    md5s = {k: await anyio.to_thread.run_sync(local_md5, f.path) for k, f in local.items()}
    if any(server[k] != f"md5:{md5s[k]}" for k in local):
        return False
    job.run.notice(
        job.folder,
        f"journal was unreadable; record {record['id']} on the server "
        "matches the folder, so it counts as published",
    )
    links = dict(record.get("links", {}))
    # Keep the links file's shape (draft-creation links): readers use record / record_html.
    links.setdefault("record", links.get("self"))
    links.setdefault("record_html", links.get("self_html"))
    await job.save(
        draft_id=str(record["id"]),
        links=links,
        fingerprint=fingerprint(job.record),
        files={k: FileState(k, f.size, f.mtime_ns, md5s[k]) for k, f in local.items()},
    )
    await job.mark_published(record)
    return True


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.astimezone()
