"""Step 2, the files: make the draft's file set equal the folder's, every byte verified.

Entries already committed with the right md5 are kept; pending or different ones are
deleted and uploaded again; each upload is a streamed PUT checksummed in the same pass
(``transfer.py``), and every committed file is journaled before the share step.
"""

from __future__ import annotations

from typing import Any

import anyio

from ..client import Response
from ..discover import LocalFile
from ..errors import first_error
from ..events import FileDone
from ..journal import FileState
from ..plan import ServerFile, plan_files
from ..transfer import FileUploader, entries_of, entry_for, local_md5
from .job import RecordJob
from .settle import unsure

JOURNAL_AT_ONCE_BYTES = 16 * 1024 * 1024


async def sync_files(job: RecordJob, draft: dict[str, Any]) -> None:
    files_url = draft["links"]["files"]
    local = {f.key: f for f in job.record.folder.files}
    listing: dict[str, Any] = {}
    if not job.fresh_draft:  # a reused or found draft may hold entries of any state
        listing = (await job.client.list_files(files_url)).obj
    by_key = {e["key"]: e for e in entries_of(listing)}
    server = {k: ServerFile(k, e.get("status", ""), e.get("checksum")) for k, e in by_key.items()}
    fplan = plan_files(job.record.folder.files, job.state.files, server)
    if fplan.verify:
        md5s = {k: await anyio.to_thread.run_sync(local_md5, local[k].path) for k in fplan.verify}
        fplan = plan_files(job.record.folder.files, job.state.files, server, md5s)
    for key in fplan.delete:
        await job.client.delete_file(by_key[key]["links"]["self"])
        await job.save(files={k: v for k, v in job.state.files.items() if k != key})
    kept = {k: job.state.files[k] for k in fplan.keep if k in job.state.files}
    for key in fplan.keep:
        if key not in kept:
            kept[key] = _state_from_server(local[key], by_key[key])
    if kept != job.state.files:
        await job.save(files=kept)
    if not fplan.upload:
        return
    entries = await init_files(job, files_url, [local[k] for k in fplan.upload])

    async def reinit(file: LocalFile) -> dict[str, Any]:
        return (await init_files(job, files_url, [file]))[file.key]

    settings = job.ctx.settings
    uploader = FileUploader(
        job.client, reinit, job.folder, settings.chunk_size, settings.stall_timeout, job.bytes_sent
    )
    try:
        async with anyio.create_task_group() as tg:
            for key in fplan.upload:
                tg.start_soon(upload_one, job, uploader, local[key], entries[key])
    except BaseExceptionGroup as group:
        raise first_error(group) from None
    finally:
        await job.save()  # the small files committed so far (see upload_one)


async def init_files(job: RecordJob, files_url: str, files: list[LocalFile]) -> dict[str, Any]:
    missing = list(files)

    async def send() -> Response:
        # Hazard: init is not idempotent (a key initialised twice gives 400).
        entries = [{"key": f.key, "size": f.size} for f in missing]
        return await job.client.init_files(files_url, entries)

    async def settle() -> Response | None:
        listing = await job.client.list_files(files_url)
        present = {e["key"] for e in entries_of(listing.obj)}
        missing[:] = [f for f in missing if f.key not in present]
        return None if missing else listing

    resp = await unsure(job, send, settle)
    return {f.key: entry_for(resp, f.key, job.folder) for f in files}


async def upload_one(
    job: RecordJob, uploader: FileUploader, file: LocalFile, entry: dict[str, Any]
) -> None:
    async with job.ctx.streams:
        state = await uploader.upload(file, entry)
    job.state = job.state.with_file(state)
    # A large committed file is journaled at once: re-checking it after a kill would mean
    # reading it all again. Small ones are journaled together when the uploads end (after
    # a kill, their local md5 is cheap to recompute and compare with the server's).
    if file.size >= JOURNAL_AT_ONCE_BYTES:
        await job.save()
    job.emit(FileDone(job.folder, file.key, file.size, state.md5))


def _state_from_server(f: LocalFile, entry: dict[str, Any]) -> FileState:
    return FileState(f.key, f.size, f.mtime_ns, str(entry.get("checksum", ""))[4:])
