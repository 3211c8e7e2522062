"""Finding what lost answers left on the server, and deciding whose it is.

Finding a draft whose create answer was lost relies on the title and the time of the
attempt, not on a marker in the metadata (the BIG-MAP Archive drops
``metadata.identifiers``). Which hit belongs to which folder, and which draft may be
deleted, is decided in ``match.py`` (pure); this module reads the server and acts. A hit is
claimed for the batch only once it is confirmed (its draft read, its files compared), and
folders with the same stored title take their turns under one lock, so two folders never
share a record.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio

from ..client import InvenioClient
from ..journal import DRAFT, FileState
from ..match import (
    Hit,
    candidates,
    draft_reusable,
    files_match,
    lost_draft_candidates,
    may_delete,
    same_title,
    title_queries,
    window_for,
)
from ..plan import fingerprint
from ..transfer import entries_of, local_md5
from .job import RecordJob

INDEX_WAITS = (1.5, 4.0)  # a new draft takes ~1 s (an index refresh) to be searchable
SWEEP_AFTER = timedelta(seconds=5)  # the sweep waits this long after the last lost create


async def find_lost_draft(job: RecordJob, *, patient: bool = True) -> dict[str, Any] | None:
    """After a lost create: the draft it made, if the server has it (then it is used).

    The candidates are unclaimed, unpublished drafts with our title made within the window
    of this folder's create attempts (server clock). The search is repeated while the index
    may still be catching up (``patient``).
    """
    window = window_for(job.state.create_first or job.state.create_started, job.state.clock)
    if window is None:
        return await adopt_or_reuse(job, await search_title(job))
    last = window_for(job.state.create_started, job.state.clock) or window
    # Several attempts were sent: the one found may not be the only one that made a draft.
    resent = job.state.create_first if job.state.create_first != job.state.create_started else None
    for wait in INDEX_WAITS if patient else (0.0,):
        age = (job.client.clock.now() - last.start).total_seconds()
        if age < wait:
            await anyio.sleep(wait - age)
        for hit in lost_draft_candidates(
            job.record.title, await search_title(job), window, job.ctx.claims
        ):
            draft = await _confirm_draft(job, hit, "a create whose answer was lost")
            if draft is not None:
                if resent:
                    await job.save(sweep_from=resent)
                return draft
    return None


async def adopt_or_reuse(job: RecordJob, hits: Sequence[Hit]) -> dict[str, Any] | None:
    """Before creating a record for a folder the journal does not know: is it there already?

    A published record with our title whose files all match (md5) is adopted (the state
    says published and ``None`` is returned); an unclaimed draft with our title holding
    nothing the folder lacks is reused (returned). Runs under the folder's title lock.
    """
    others: list[str] = []
    for hit in lost_draft_candidates(job.record.title, hits, None, job.ctx.claims):
        if hit.published:
            if await adopt_published(job, hit):
                return None
            others.append(f"record {hit.id} (published, other files)")
            continue
        draft = await _confirm_draft(job, hit, "a draft with this title and no other files")
        if draft is not None:
            return draft
        others.append(f"draft {hit.id} (other files)")
    if others:
        job.notice(
            f"the server holds {', '.join(others)} with this title; none is this folder's, "
            "so a new record is made (those are left alone)",
        )
    return None


async def _confirm_draft(job: RecordJob, hit: Hit, why: str) -> dict[str, Any] | None:
    """Read a candidate draft; claim and journal it when it may serve this folder."""
    draft = await job.client.get_draft(hit.id)
    stored = draft.obj.get("metadata", {}).get("title")
    if draft.status != 200 or not same_title(job.record.title, stored):
        return None
    listing = await job.client.list_files(draft.obj["links"]["files"])
    server = {e["key"]: (e.get("status", ""), e.get("checksum")) for e in entries_of(listing.obj)}
    local = {f.key: f for f in job.record.folder.files}
    completed = [k for k, (status, _) in server.items() if status == "completed" and k in local]
    md5s = {k: await anyio.to_thread.run_sync(local_md5, local[k].path) for k in completed}
    if not draft_reusable(server, md5s) or hit.id in job.ctx.claims:
        return None
    job.ctx.claims.claim(hit.id)  # confirmed: from here on no other folder may take it
    job.notice(f"found draft {hit.id} on the server ({why}); using it")
    await job.save(
        phase=DRAFT,
        draft_id=hit.id,
        links=draft.obj.get("links"),
        fingerprint=fingerprint(job.record),
    )
    return draft.obj


async def search_title(job: RecordJob) -> list[Hit]:
    """The user's records and drafts with our title (every page)."""
    (query,) = title_queries([job.record.title], max_chars=1 << 20)
    hits = await job.client.search_all_user_records(query)
    return [Hit.of(h) for h in hits]


async def sweep_orphans(job: RecordJob) -> None:
    """After a create had to be resent: delete the drafts the lost attempts made after all.

    Waits until the index has caught up with the last lost attempt, then deletes only what
    ``match.may_delete`` proves this folder's own attempts made; other same-titled drafts
    of the window are reported and left alone.
    """
    window = window_for(job.state.sweep_from, job.state.clock)
    if window is None:
        return
    last = window_for(job.state.create_started, job.state.clock) or window
    age = job.client.clock.now() - last.start  # the index must show the last attempt
    if age < SWEEP_AFTER:
        await anyio.sleep((SWEEP_AFTER - age).total_seconds())
    for hit in await search_title(job):
        if hit.id == job.state.draft_id or not same_title(job.record.title, hit.title):
            continue
        refused = may_delete(hit, job.record.title, window, job.ctx.claims)
        if refused is None:
            job.ctx.claims.claim(hit.id)
            await job.client.delete_draft(hit.id)
            job.notice(
                f"deleted draft {hit.id}: a create whose answer was lost made it, and it "
                "was found only after the create was sent again",
            )
        elif not hit.published and window.contains(hit.created):
            job.notice(f"left draft {hit.id} alone: {refused}")
    await job.save(sweep_from=None)


async def adopt_published(job: RecordJob, hit: Hit) -> bool:
    """A published record with our title is ours if every file matches the folder's md5."""
    record = await job.client.get_record(hit.id)
    if record.status != 200 or hit.id in job.ctx.claims:
        return False
    listing = await job.client.list_files(record.obj["links"]["files"])
    server = {e["key"]: e.get("checksum") for e in entries_of(listing.obj)}
    local = {f.key: f for f in job.record.folder.files}
    if set(server) != set(local):
        return False
    md5s = {k: await anyio.to_thread.run_sync(local_md5, f.path) for k, f in local.items()}
    if not files_match(server, md5s) or hit.id in job.ctx.claims:
        return False
    job.ctx.claims.claim(hit.id)
    job.notice(
        f"record {hit.id} on the server has this title and exactly these files; "
        "adopting it as this folder's (nothing is created)",
    )
    links = dict(record.obj.get("links", {}))
    # Keep the links file's shape (draft-creation links): readers use record / record_html.
    links.setdefault("record", links.get("self"))
    links.setdefault("record_html", links.get("self_html"))
    await job.save(
        draft_id=hit.id,
        links=links,
        fingerprint=fingerprint(job.record),
        files={k: FileState(k, f.size, f.mtime_ns, md5s[k]) for k, f in local.items()},
    )
    await job.mark_published(record.obj)
    return True


async def lookup(client: InvenioClient, titles: dict[str, str]) -> dict[str, tuple[Hit, ...]]:
    """The server's records for many folders at once (``folder -> title``): a few searches,
    each OR-ing many titles, run concurrently under the shared rate limiter."""
    hits: list[dict[str, Any]] = []

    async def one(query: str) -> None:
        hits.extend(await client.search_all_user_records(query))

    async with anyio.create_task_group() as tg:
        for query in title_queries(titles.values()):
            tg.start_soon(one, query)
    return candidates(titles, hits)
