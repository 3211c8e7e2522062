"""One record's journey: draft -> files -> share, each step journaled before the next.

The order of operations is what makes a kill at any moment safe:

1. the journal says ``creating`` (with the time and title) *before* POST /api/records;
   the draft id is journaled the moment the answer arrives;
2. every committed file is journaled (size, mtime, md5) before the next step;
3. the journal says ``sharing`` before publish/submit-review, ``published`` after.

A rerun reads the journal and asks the server about anything that was in flight, so no
call that creates something is ever sent twice blindly.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from .client import Response
from .discover import LocalFile
from .errors import BatchFatal, TransientApiError, UploaderError, first_error, format_server_errors
from .events import FileDone
from .journal import (
    CREATING,
    DRAFT,
    IN_REVIEW,
    PUBLISHED,
    SHARING,
    UNKNOWN,
    FileState,
    RecordState,
    utcnow,
)
from .plan import Action, RecordPlan, ServerFile, fingerprint, plan_files
from .results import FileResult, Outcome, RecordResult
from .retry import decide
from .transfer import FileUploader, entries_of, entry_for, local_md5

if TYPE_CHECKING:
    from .pipeline import Run
    from .validate import ValidRecord

T = TypeVar("T")
INDEX_DELAY = 2.0  # a new draft can take ~1 s to show up in search (contract section 7)
CREATE_WINDOW = timedelta(minutes=2)  # how far before create_started a found draft may date


@dataclass
class RecordJob:
    run: Run
    record: ValidRecord
    state: RecordState
    plan: RecordPlan
    lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def folder(self) -> str:
        return self.record.folder.name

    async def save(self, **changes: Any) -> None:
        if changes:
            self.state = self.state.evolve(**changes)
        async with self.lock:
            await self.run.save(self.state)

    # -- the recipe -----------------------------------------------------------------------
    async def execute(self) -> RecordResult:
        if self.plan.action is Action.CONFIRM_SHARE and await self._confirm_published():
            return self._result(Outcome.PUBLISHED)
        draft = await self._ensure_draft()
        if draft is None:  # the share went through in an earlier run after all
            return self._result(
                Outcome.PUBLISHED if self.state.phase == PUBLISHED else Outcome.IN_REVIEW
            )
        await self._sync_files(draft)
        if self.run.config.share.value == "draft-only":
            return self._result(Outcome.DRAFT)
        return self._result(await self._share(draft))

    def _result(self, outcome: Outcome) -> RecordResult:
        files = tuple(FileResult(f.key, f.size, f.md5) for f in self.state.files.values())
        return RecordResult(self.folder, outcome, self.state.draft_id, self.state.record_url, files)

    # -- 1. the draft ---------------------------------------------------------------------
    async def _ensure_draft(self) -> dict[str, Any] | None:
        if self.state.draft_id:
            resp = await self.run.client.get_draft(self.state.draft_id)
            if resp.status == 200:
                self.run.notice(self.folder, f"reusing draft {self.state.draft_id}")
                return await self._refresh_metadata(resp.obj, self.plan.metadata_changed)
            if await self._confirm_published():
                return None
            self.run.notice(self.folder, f"draft {self.state.draft_id} is gone; starting again")
            self.state = RecordState(folder=self.folder)
        if self.state.phase in (CREATING, UNKNOWN):
            found = await self._find_lost_draft()
            if found is not None:
                return await self._refresh_metadata(found, True)
            if self.state.done:  # the journal was lost, but the record is on the server
                return None
        return await self._create()

    async def _create(self) -> dict[str, Any]:
        async def send() -> dict[str, Any]:
            # Hazard: POST /api/records is not idempotent. Journal the attempt first, so that
            # a kill before the answer leaves a trail to search by.
            await self.save(
                phase=CREATING,
                create_started=utcnow(),
                title=self.record.title,
                draft_id=None,
                links=None,
                files={},
            )
            draft = (await self.run.client.create_draft(self.record.metadata)).obj
            self.run.claimed.add(str(draft["id"]))
            await self.save(
                phase=DRAFT,
                draft_id=str(draft["id"]),
                links=draft.get("links"),
                metadata_sha=self.record.metadata_sha256,
                fingerprint=fingerprint(self.record),
            )
            if draft.get("errors"):
                self.run.notice(
                    self.folder,
                    "the server noted problems it will refuse at "
                    f"publish: {format_server_errors(draft['errors'])}",
                )
            return draft

        async def settle() -> dict[str, Any] | None:
            found = await self._find_lost_draft()
            return None if found is None else await self._refresh_metadata(found, True)

        return await self._unsure(send, settle)

    async def _unsure(
        self,
        send: Callable[[], Awaitable[T]],
        settle: Callable[[], Awaitable[T | None]],
        min_delay: float = 0.0,
    ) -> T:
        """Send a call that is not idempotent; after a failure with no clear answer, ask the
        server whether it happened (``settle``) before sending it again.
        """
        started = anyio.current_time()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await send()
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
                    config=self.run.config.retry,
                    jitter=random.random(),
                )
                if not decision.retry:
                    raise
                self.run.client.counters.retries += 1
                self.run.client.counters.by_reason[f"unsure {exc.method}"] += 1
                await anyio.sleep(max(decision.delay, min_delay))

    async def _find_lost_draft(self) -> dict[str, Any] | None:
        """Look for this folder's draft among the user's records, by title.

        After a lost create: a draft with our title made since the attempt. After an
        unreadable journal entry (no time known): any unclaimed draft with our title, or a
        published record whose files match the folder (then ``None`` is returned and the
        state says published).
        """
        since = _parse_time(self.state.create_started)
        if since is not None:
            wait = INDEX_DELAY - (datetime.now().astimezone() - since).total_seconds()
            if wait > 0:  # give the search index time to see a draft made a moment ago
                await anyio.sleep(wait)
        title = self.record.title
        quoted = title.replace("\\", "\\\\").replace('"', '\\"')
        resp = await self.run.client.search_user_records(
            {"q": f'metadata.title:"{quoted}"', "sort": "newest", "size": "50"}
        )
        hits = resp.obj.get("hits", {}).get("hits", [])
        for hit in sorted(hits, key=lambda h: str(h.get("created"))):
            hit_id = str(hit.get("id"))
            created = _parse_time(hit.get("created"))
            if (
                hit.get("metadata", {}).get("title") != title
                or hit_id in self.run.claimed
                or created is None
                or (since is not None and created < since - CREATE_WINDOW)
                or (hit.get("is_published") and since is not None)
            ):
                continue
            self.run.claimed.add(hit_id)  # no await since the check: no other task can take it
            if hit.get("is_published"):
                if await self._adopt_published(hit):
                    return None
                continue
            draft = await self.run.client.get_draft(hit_id)
            if draft.status != 200:
                continue
            self.run.notice(
                self.folder,
                f"found draft {hit_id} on the server (a create whose "
                "answer was lost, or an unreadable journal); using it",
            )
            await self.save(
                phase=DRAFT,
                draft_id=hit_id,
                links=draft.obj.get("links"),
                fingerprint=fingerprint(self.record),
            )
            return draft.obj
        return None

    async def _adopt_published(self, record: dict[str, Any]) -> bool:
        """A published record with our title: ours if every file matches the folder's md5."""
        listing = await self.run.client.list_files(record["links"]["files"])
        server = {e["key"]: e.get("checksum") for e in entries_of(listing.obj)}
        local = {f.key: f for f in self.record.folder.files}
        if set(server) != set(local):
            return False
        md5s = {k: await anyio.to_thread.run_sync(local_md5, f.path) for k, f in local.items()}
        if any(server[k] != f"md5:{md5s[k]}" for k in local):
            return False
        files = {k: FileState(k, f.size, f.mtime_ns, md5s[k]) for k, f in local.items()}
        self.run.notice(
            self.folder,
            f"journal was unreadable; record {record['id']} on the "
            "server matches the folder, so it counts as published",
        )
        await self.save(
            draft_id=str(record["id"]),
            links=record.get("links"),
            files=files,
            fingerprint=fingerprint(self.record),
        )
        await self._mark_published(record)
        return True

    async def _refresh_metadata(self, draft: dict[str, Any], changed: bool) -> dict[str, Any]:
        if not changed:
            return draft
        # PUT replaces the whole draft; the body carries `files`, so files.enabled is kept.
        resp = await self.run.client.update_draft(str(draft["id"]), self.record.metadata)
        await self.save(metadata_sha=self.record.metadata_sha256)
        return {**draft, **resp.obj, "links": draft.get("links") or resp.obj.get("links")}

    # -- 2. the files ---------------------------------------------------------------------
    async def _sync_files(self, draft: dict[str, Any]) -> None:
        files_url = draft["links"]["files"]
        local = {f.key: f for f in self.record.folder.files}
        listing: dict[str, Any] = {}
        if draft.get("files", {}).get("count", 1) or self.state.files:
            listing = (await self.run.client.list_files(files_url)).obj
        server = {
            e["key"]: ServerFile(e["key"], e.get("status", ""), e.get("checksum"))
            for e in entries_of(listing)
        }
        fplan = plan_files(self.record.folder.files, self.state.files, server)
        if fplan.verify:
            md5s = {
                k: await anyio.to_thread.run_sync(local_md5, local[k].path) for k in fplan.verify
            }
            fplan = plan_files(self.record.folder.files, self.state.files, server, md5s)
        by_key = {e["key"]: e for e in entries_of(listing)}
        for key in fplan.delete:
            await self.run.client.delete_file(by_key[key]["links"]["self"])
            await self.save(files={k: v for k, v in self.state.files.items() if k != key})
        kept = {k: self.state.files[k] for k in fplan.keep if k in self.state.files}
        for key in fplan.keep:
            if key not in kept:
                f = local[key]
                kept[key] = _state_from_server(f, by_key[key])
        if kept != self.state.files:
            await self.save(files=kept)
        if fplan.upload:
            entries = await self._init_files(files_url, [local[k] for k in fplan.upload])
            uploader = FileUploader(
                self.run.client,
                lambda f: self._reinit(files_url, f),
                self.folder,
                self.run.config.chunk_size,
                self.run.config.stall_timeout,
                lambda key, n: self.run.bytes_sent(self.folder, key, n),
            )
            try:
                async with anyio.create_task_group() as tg:
                    for key in fplan.upload:
                        tg.start_soon(self._upload_one, uploader, local[key], entries[key])
            except BaseExceptionGroup as group:
                raise first_error(group) from None

    async def _init_files(self, files_url: str, files: list[LocalFile]) -> dict[str, Any]:
        missing = list(files)

        async def send() -> Response:
            # Hazard: init is not idempotent (a key initialised twice gives 400).
            return await self.run.client.init_files(
                files_url, [{"key": f.key, "size": f.size} for f in missing]
            )

        async def settle() -> Response | None:
            listing = await self.run.client.list_files(files_url)
            present = {e["key"] for e in entries_of(listing.obj)}
            missing[:] = [f for f in missing if f.key not in present]
            return None if missing else listing

        resp = await self._unsure(send, settle)
        return {f.key: entry_for(resp, f.key, self.folder) for f in files}

    async def _reinit(self, files_url: str, file: LocalFile) -> dict[str, Any]:
        return (await self._init_files(files_url, [file]))[file.key]

    async def _upload_one(
        self, uploader: FileUploader, file: LocalFile, entry: dict[str, Any]
    ) -> None:
        async with self.run.streams:
            state = await uploader.upload(file, entry)
        self.state = self.state.with_file(state)
        await self.save()
        self.run.emit(FileDone(self.folder, file.key, file.size, state.md5))

    # -- 3. share -------------------------------------------------------------------------
    async def _share(self, draft: dict[str, Any]) -> Outcome:
        draft_id = str(draft["id"])
        community = self.run.config.share.value == "community"
        if community:
            cid = await self.run.community_id()
            await self.run.client.put_review(draft["links"]["review"], cid)

        async def send() -> Outcome:
            await self.save(phase=SHARING, fingerprint=fingerprint(self.record))
            if not community:
                resp = await self.run.client.publish(draft["links"]["publish"])
                return await self._mark_published(resp.obj)
            resp = await self.run.client.submit_review(draft_id)
            if resp.obj.get("status") == "accepted" and await self._confirm_published():
                return Outcome.PUBLISHED
            await self.save(phase=IN_REVIEW)
            return Outcome.IN_REVIEW

        async def settle() -> Outcome | None:
            # Hazard: the share may have happened with its answer lost: ask the server.
            if await self._confirm_published():
                return Outcome.PUBLISHED
            if community and await self._in_review(draft_id):
                return Outcome.IN_REVIEW
            return None

        try:
            # A publish 500 right after a commit is a known race (invenio-rdm-records #809):
            # back off at least a second before the next try.
            return await self._unsure(send, settle, min_delay=1.0)
        except UploaderError:
            await self.save(phase=DRAFT)
            raise

    async def _confirm_published(self) -> bool:
        if not self.state.draft_id:
            return False
        resp = await self.run.client.get_record(self.state.draft_id)
        if resp.status != 200:
            return False
        await self._mark_published(resp.obj)
        return True

    async def _mark_published(self, record: dict[str, Any]) -> Outcome:
        links = record.get("links", {})
        url = links.get("self_html") or links.get("record_html") or links.get("html")
        await self.save(phase=PUBLISHED, record_url=url, last_error=None)
        return Outcome.PUBLISHED

    async def _in_review(self, draft_id: str) -> bool:
        resp = await self.run.client.request(
            "GET", self.run.client.url("records", draft_id, "draft", "review"), accept=(404,)
        )
        if resp.status == 200 and resp.obj.get("status") == "submitted":
            await self.save(phase=IN_REVIEW)
            return True
        return False


def _state_from_server(f: LocalFile, entry: dict[str, Any]) -> FileState:
    return FileState(f.key, f.size, f.mtime_ns, str(entry.get("checksum", ""))[4:])


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.astimezone()
