"""Step 1, the draft: reuse the journaled one, find what a lost answer left, or create one.

Hazard: POST /api/records is not idempotent. The attempt is journaled (``creating``, with
the time on the server's clock and the title) *before* it is sent, and the draft id the
moment the answer arrives; a lost answer is settled by a search, never by a blind resend.
"""

from __future__ import annotations

from typing import Any

from ..errors import format_server_errors
from ..journal import CREATING, DRAFT, NEW, UNKNOWN, RecordState
from ..plan import fingerprint
from .job import RecordJob
from .reconcile import adopt_or_reuse, find_lost_draft
from .settle import unsure
from .share import confirm_published


async def ensure_draft(job: RecordJob) -> dict[str, Any] | None:
    """The draft to fill, or None when the record turns out to be shared already."""
    if job.state.draft_id:
        resp = await job.client.get_draft(job.state.draft_id)
        if resp.status == 200:
            job.notice(f"reusing draft {job.state.draft_id}")
            return await refresh_metadata(job, resp.obj, job.plan.metadata_changed)
        if await confirm_published(job):
            return None
        job.notice(f"draft {job.state.draft_id} is gone; starting again")
        job.state = RecordState(folder=job.folder)
    found: dict[str, Any] | None = None
    if job.state.phase == CREATING:
        async with job.ctx.title_lock(job.record.title):  # see create()
            found = await find_lost_draft(job)
    elif job.state.phase in (NEW, UNKNOWN) and job.found:
        # No blind creates: the batch look-up saw records with this title.
        async with job.ctx.title_lock(job.record.title):
            found = await adopt_or_reuse(job, job.found)
    if found is not None:
        return await refresh_metadata(job, found, True)
    if job.state.done:  # the journal was lost, but the record is on the server
        return None
    return await create(job)


async def create(job: RecordJob) -> dict[str, Any]:
    async def send() -> dict[str, Any]:
        # Hazard: not idempotent. Journal the attempt first, so that a kill before the
        # answer leaves a trail to search by (timed by the server's clock: drafts are
        # matched against the server's `created`).
        clock = job.client.clock
        now = clock.now().isoformat()
        earlier = job.state.create_first if job.state.phase == CREATING else None
        server_clock = clock.known and (earlier is None or job.state.clock == "server")
        await job.save(
            phase=CREATING,
            create_started=now,
            create_first=earlier or now,
            clock="server" if server_clock else "local",
            title=job.record.title,
            draft_id=None,
            links=None,
            files={},
        )
        draft = (await job.client.create_draft(job.record.metadata)).obj
        job.ctx.claims.claim(str(draft["id"]))
        job.ctx.learn_owner(draft)
        job.fresh_draft = True
        await job.save(
            phase=DRAFT,
            draft_id=str(draft["id"]),
            links=draft.get("links"),
            metadata_sha=job.record.metadata_sha256,
            fingerprint=fingerprint(job.record),
            # An earlier attempt's answer was lost: sweep for its draft once done.
            sweep_from=earlier if earlier != now else None,
        )
        if draft.get("errors"):
            problems = format_server_errors(draft["errors"])
            job.notice(f"the server noted problems it will refuse at publish: {problems}")
        return draft

    async def settle() -> dict[str, Any] | None:
        found = await find_lost_draft(job)
        return None if found is None else await refresh_metadata(job, found, True)

    # Folders with the same title create one at a time: a lost-draft search must never
    # pick up a sibling's draft before the sibling has claimed it.
    async with job.ctx.title_lock(job.record.title):
        return await unsure(job, send, settle)


async def refresh_metadata(job: RecordJob, draft: dict[str, Any], changed: bool) -> dict[str, Any]:
    if not changed:
        return draft
    # PUT replaces the whole draft; the body carries `files`, so files.enabled is kept.
    resp = await job.client.update_draft(str(draft["id"]), job.record.metadata)
    await job.save(metadata_sha=job.record.metadata_sha256)
    return {**draft, **resp.obj, "links": draft.get("links") or resp.obj.get("links")}
