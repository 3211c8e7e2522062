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

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from .client import Response
from .config import ShareMode
from .discover import LocalFile
from .errors import UploaderError, first_error, format_server_errors
from .events import FileDone
from .journal import (
    CREATING,
    DRAFT,
    IN_REVIEW,
    NEW,
    PUBLISHED,
    SHARING,
    UNKNOWN,
    FileState,
    RecordState,
)
from .match import Hit
from .plan import Action, RecordPlan, ServerFile, fingerprint, plan_files
from .reconcile import adopt_or_reuse, find_lost_draft, sweep_orphans, unsure
from .results import FileResult, Outcome, RecordResult
from .state import owner_of
from .transfer import FileUploader, entries_of, entry_for, local_md5

JOURNAL_AT_ONCE_BYTES = 16 * 1024 * 1024

if TYPE_CHECKING:
    from .pipeline import Run
    from .validate import ValidRecord


@dataclass
class RecordJob:
    run: Run
    record: ValidRecord
    state: RecordState
    plan: RecordPlan
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    fresh_draft: bool = False  # created by this job just now: known to have no files
    found: tuple[Hit, ...] = ()  # the batch look-up's hits with this folder's title

    @property
    def folder(self) -> str:
        return self.record.folder.name

    async def save(self, **changes: Any) -> None:
        if changes:
            self.state = self.state.evolve(**changes)
        # Hazard: cancellation. Taking the lock is a cancellation point too, and the server
        # has already changed: the whole save is shielded.
        with anyio.CancelScope(shield=True):
            async with self.lock:
                await self.run.save(self.state)

    # -- the recipe -----------------------------------------------------------------------
    async def execute(self) -> RecordResult:
        outcome = await self._journey()
        if self.state.sweep_from:  # a create was resent: its lost twin may exist
            async with self.run.title_lock(self.record.title):
                await sweep_orphans(self)
        return self._result(outcome)

    async def _journey(self) -> Outcome:
        if self.plan.action is Action.SWEEP:
            return Outcome.PUBLISHED if self.state.phase == PUBLISHED else Outcome.IN_REVIEW
        if self.plan.action is Action.CONFIRM_SHARE and await self._confirm_published():
            return Outcome.PUBLISHED
        draft = await self._ensure_draft()
        if draft is None:  # the share went through in an earlier run after all
            return Outcome.PUBLISHED if self.state.phase == PUBLISHED else Outcome.IN_REVIEW
        await self._sync_files(draft)
        if self.run.config.share is ShareMode.DRAFT_ONLY:
            return Outcome.DRAFT
        return await self._share(draft)

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
        found: dict[str, Any] | None = None
        if self.state.phase == CREATING:
            async with self.run.title_lock(self.record.title):  # see _create
                found = await find_lost_draft(self)
        elif self.state.phase in (NEW, UNKNOWN) and self.found:
            # No blind creates: the batch look-up saw records with this title.
            async with self.run.title_lock(self.record.title):
                found = await adopt_or_reuse(self, self.found)
        if found is not None:
            return await self._refresh_metadata(found, True)
        if self.state.done:  # the journal was lost, but the record is on the server
            return None
        return await self._create()

    async def _create(self) -> dict[str, Any]:
        async def send() -> dict[str, Any]:
            # Hazard: POST /api/records is not idempotent. Journal the attempt first, so that
            # a kill before the answer leaves a trail to search by (timed by the server's
            # clock: drafts are matched against the server's `created`).
            clock = self.run.client.clock
            now = clock.now().isoformat()
            earlier = self.state.create_first if self.state.phase == CREATING else None
            await self.save(
                phase=CREATING,
                create_started=now,
                create_first=earlier or now,
                clock="server"
                if clock.known and (earlier is None or self.state.clock == "server")
                else "local",
                title=self.record.title,
                draft_id=None,
                links=None,
                files={},
            )
            draft = (await self.run.client.create_draft(self.record.metadata)).obj
            self.run.claimed.add(str(draft["id"]))
            self.run.owner = self.run.owner or owner_of(draft)
            self.fresh_draft = True
            await self.save(
                phase=DRAFT,
                draft_id=str(draft["id"]),
                links=draft.get("links"),
                metadata_sha=self.record.metadata_sha256,
                fingerprint=fingerprint(self.record),
                # An earlier attempt's answer was lost: sweep for its draft once done.
                sweep_from=earlier if earlier != now else None,
            )
            if draft.get("errors"):
                self.run.notice(
                    self.folder,
                    "the server noted problems it will refuse at "
                    f"publish: {format_server_errors(draft['errors'])}",
                )
            return draft

        async def settle() -> dict[str, Any] | None:
            found = await find_lost_draft(self)
            return None if found is None else await self._refresh_metadata(found, True)

        # Folders with the same title create one at a time: a lost-draft search must never
        # pick up a sibling's draft before the sibling has claimed it.
        async with self.run.title_lock(self.record.title):
            return await unsure(self, send, settle)

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
        if not self.fresh_draft:  # a reused or found draft may hold entries of any state
            listing = (await self.run.client.list_files(files_url)).obj
        by_key = {e["key"]: e for e in entries_of(listing)}
        server = {
            k: ServerFile(k, e.get("status", ""), e.get("checksum")) for k, e in by_key.items()
        }
        fplan = plan_files(self.record.folder.files, self.state.files, server)
        if fplan.verify:
            md5s = {
                k: await anyio.to_thread.run_sync(local_md5, local[k].path) for k in fplan.verify
            }
            fplan = plan_files(self.record.folder.files, self.state.files, server, md5s)
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
            finally:
                await self.save()  # the small files committed so far (see _upload_one)

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

        resp = await unsure(self, send, settle)
        return {f.key: entry_for(resp, f.key, self.folder) for f in files}

    async def _reinit(self, files_url: str, file: LocalFile) -> dict[str, Any]:
        return (await self._init_files(files_url, [file]))[file.key]

    async def _upload_one(
        self, uploader: FileUploader, file: LocalFile, entry: dict[str, Any]
    ) -> None:
        async with self.run.streams:
            state = await uploader.upload(file, entry)
        self.state = self.state.with_file(state)
        # A large committed file is journaled at once: re-checking it after a kill would mean
        # reading it all again. Small ones are journaled together when the uploads end (after
        # a kill, their local md5 is cheap to recompute and compare with the server's).
        if file.size >= JOURNAL_AT_ONCE_BYTES:
            await self.save()
        self.run.emit(FileDone(self.folder, file.key, file.size, state.md5))

    # -- 3. share -------------------------------------------------------------------------
    async def _share(self, draft: dict[str, Any]) -> Outcome:
        draft_id = str(draft["id"])
        community = self.run.config.share is ShareMode.COMMUNITY
        if community:
            review = await self._review_status(draft_id)
            if review == "submitted":  # an earlier run submitted it; the curators decide
                await self.save(phase=IN_REVIEW)
                return Outcome.IN_REVIEW
            if review == "accepted" and await self._confirm_published():
                return Outcome.PUBLISHED
            cid = await self.run.community_id()
            await self.run.client.put_review(draft["links"]["review"], cid)

        async def send() -> Outcome:
            await self.save(phase=SHARING, fingerprint=fingerprint(self.record))
            if not community:
                resp = await self.run.client.publish(draft["links"]["publish"])
                return await self.mark_published(resp.obj)
            resp = await self.run.client.submit_review(draft_id)
            if resp.obj.get("status") == "accepted" and await self._confirm_published():
                return Outcome.PUBLISHED
            await self.save(phase=IN_REVIEW)
            return Outcome.IN_REVIEW

        async def settle() -> Outcome | None:
            # Hazard: the share may have happened with its answer lost: ask the server.
            if await self._confirm_published():
                return Outcome.PUBLISHED
            if community and await self._review_status(draft_id) == "submitted":
                await self.save(phase=IN_REVIEW)
                return Outcome.IN_REVIEW
            return None

        try:
            # A publish 500 right after a commit is a known race (invenio-rdm-records #809):
            # back off at least a second before the next try.
            return await unsure(self, send, settle, min_delay=1.0)
        except UploaderError:
            await self.save(phase=DRAFT)
            raise

    async def _confirm_published(self) -> bool:
        if not self.state.draft_id:
            return False
        resp = await self.run.client.get_record(self.state.draft_id)
        if resp.status != 200:
            return False
        await self.mark_published(resp.obj)
        return True

    async def mark_published(self, record: dict[str, Any]) -> Outcome:
        links = record.get("links", {})
        url = links.get("self_html") or links.get("record_html") or links.get("html")
        await self.save(phase=PUBLISHED, record_url=url, last_error=None)
        return Outcome.PUBLISHED

    async def _review_status(self, draft_id: str) -> str | None:
        """The draft's review request status ("created", "submitted", ...), or None."""
        resp = await self.run.client.request(
            "GET", self.run.client.url("records", draft_id, "draft", "review"), accept=(404,)
        )
        return resp.obj.get("status") if resp.status == 200 else None


def _state_from_server(f: LocalFile, entry: dict[str, Any]) -> FileState:
    return FileState(f.key, f.size, f.mtime_ns, str(entry.get("checksum", ""))[4:])
