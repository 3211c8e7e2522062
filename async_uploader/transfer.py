"""Stream one file into a draft: content PUT with md5 in the same pass, commit, verify.

A transfer is a few small dependent steps, each of which can fail in its own way:

* content PUT: the body is read in ``chunk_size`` pieces with aiofiles (never the whole
  file in memory) and hashed as it goes. Transient failures are resent by the client from
  byte 0 (the body factory restarts the read and the md5, and takes back the progress it had
  reported). After a PUT the server did not accept (400 "File is smaller than expected.";
  a PUT onto a committed entry, which v13+ answers 200 with ``errors`` and v12 with 400 "The
  file upload transfer failed, please try again.") the entry is looked up: re-PUT if it is
  still pending, re-init if the server removed it.
* commit: a 500 means "content missing" (contract 3.5): PUT again, then commit.
* verify: the server's ``md5:`` checksum must equal ours. On a mismatch the file is deleted,
  uploaded once more, and then the record fails.
* stall: an upload that has not had a chunk accepted for ``stall_timeout`` seconds is
  aborted and sent again.

Every resend here (a stalled PUT, a PUT whose content was not kept, a commit tried again, a
re-PUT after "content missing", the re-upload after a checksum mismatch) is announced with
``client.retrying``: one ``Retrying`` event each, which is also what counts it. One
``FileBody`` serves every attempt of a file, so each resend takes back the bytes of the
attempt it repeats (``Counters.bytes_resent``).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiofiles.threadpool
import anyio

from .client import InvenioClient, Response
from .discover import LocalFile
from .errors import (
    BodyPartlySent,
    ChecksumMismatch,
    PermanentApiError,
    Reason,
    TransientApiError,
    UploaderError,
    http_reason,
)
from .journal import FileState

CONTENT_ATTEMPTS = 4  # server-side refusals of a content PUT (each already retried by the client)
COMMIT_RECHECK = 1.0  # seconds before a commit answered 500 is tried once more
# 400 messages of a content PUT whose bytes the server did not keep (anything else is a
# refusal): a body that ended early (every series), a PUT onto a committed entry (v12).
NOT_KEPT_400 = ("File is smaller than expected.", "The file upload transfer failed")


def content_kept(status: int, body: Any) -> bool | None:
    """Did a content PUT's answer keep the bytes? True, False (look the entry up and send
    again), or None: a refusal to report. Pure, so the series' differences are a table."""
    if status == 200:
        return not (isinstance(body, dict) and "errors" in body)
    if status == 404:
        return False  # the entry is gone (removed after a failed transfer): init again
    if status == 400 and isinstance(body, dict):
        message = str(body.get("message") or "")
        return False if message.startswith(NOT_KEPT_400) else None
    return None


class FileBody:
    """A re-startable request body over one local file, hashing what it sends."""

    def __init__(self, file: LocalFile, chunk_size: int, on_progress: Callable[[int], None]):
        self.file = file
        self.chunk_size = chunk_size
        self.on_progress = on_progress
        self.sent = 0
        self.md5: str | None = None
        self.sending = False
        self.last_progress = time.monotonic()

    def __call__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        # Hazard: rewind. A retry starts again at byte 0, so the bytes the failed attempt
        # reported are taken back and the digest starts afresh.
        if self.sent:
            self.on_progress(-self.sent)
            self.sent = 0
        self.md5 = None
        digest = hashlib.md5()
        left = self.file.size
        if left == 0:
            self.md5 = digest.hexdigest()
        self.sending = True
        self.last_progress = time.monotonic()
        raw = open(self.file.path, "rb")  # noqa: ASYNC230, SIM115 (a local open; closed below)
        try:
            fh = aiofiles.threadpool.wrap(raw)  # chunked reads in aiofiles' worker threads
            while left > 0:
                chunk = await fh.read(min(self.chunk_size, left))
                if not chunk:
                    raise UploaderError(
                        f"file shrank while being uploaded ({left} bytes missing)",
                        key=self.file.key,
                    )
                digest.update(chunk)
                left -= len(chunk)
                if left == 0:
                    # aiohttp may stop iterating once Content-Length bytes are out (the
                    # answer can arrive first), so the digest is final before the yield.
                    self.md5 = digest.hexdigest()
                self.sent += len(chunk)
                self.on_progress(len(chunk))
                yield chunk
                # aiohttp asks for the next chunk once this one is written out.
                self.last_progress = time.monotonic()
        finally:
            self.sending = False
            # Hazard: cancellation. aiohttp cancels the body writer (plain Task.cancel, which
            # no shield stops) as soon as the answer arrives: close synchronously.
            raw.close()


def local_md5(path: os.PathLike[str] | str, chunk_size: int = 1024 * 1024) -> str:
    """md5 of a local file (used when the journal cannot vouch for a committed file)."""
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class FileUploader:
    """Uploads the files of one record draft.

    ``reinit`` initialises one key again after the server dropped its entry; it belongs to
    the record (init is not idempotent, so the record checks the server before a resend).
    """

    client: InvenioClient
    reinit: Callable[[LocalFile], Awaitable[dict[str, Any]]]
    folder: str
    chunk_size: int
    stall_timeout: float
    on_progress: Callable[[str, int], None]

    async def upload(self, file: LocalFile, entry: dict[str, Any]) -> FileState:
        """PUT + commit + verify one initialised entry; re-upload once on a checksum mismatch."""
        body = FileBody(file, self.chunk_size, lambda n: self.on_progress(file.key, n))
        state, server_sum = await self._put_and_commit(file, entry, body)
        if server_sum == f"md5:{state.md5}":
            return state
        # Hazard: the server stored other bytes than we sent. Delete, upload once more.
        await self.client.delete_file(entry["links"]["self"])
        entry = await self.reinit(file)
        self.client.retrying("PUT", entry["links"]["content"], Reason.CHECKSUM, 1, 0.0)
        state, server_sum = await self._put_and_commit(file, entry, body)
        if server_sum != f"md5:{state.md5}":
            raise ChecksumMismatch(
                folder=self.folder, key=file.key, local_md5=state.md5, server_checksum=server_sum
            )
        return state

    async def _put_and_commit(
        self, file: LocalFile, entry: dict[str, Any], body: FileBody
    ) -> tuple[FileState, str]:
        for attempt in range(1, CONTENT_ATTEMPTS + 1):
            md5, entry = await self._put_content(file, entry, body)
            commit_url = entry["links"]["commit"]
            resp = await self.client.commit(commit_url)
            if resp.status == 500:
                # A lone 500 may be a passing error; one that repeats means the content is
                # missing (contract 3.5), and only then is the whole file sent again.
                self.client.retrying("POST", commit_url, http_reason(500), 1, COMMIT_RECHECK)
                await anyio.sleep(COMMIT_RECHECK)
                resp = await self.client.commit(commit_url)
            if resp.status == 200:
                before = os.stat(file.path)
                if (before.st_size, before.st_mtime_ns) != (file.size, file.mtime_ns):
                    raise UploaderError(
                        "file changed while it was uploaded; rerun to send the new content",
                        folder=self.folder,
                        key=file.key,
                    )
                state = FileState(file.key, file.size, file.mtime_ns, md5)
                return state, str(resp.obj.get("checksum"))
            if resp.status != 500:
                raise self._refused(resp, file)
            if attempt < CONTENT_ATTEMPTS:  # content missing on the server: send it again
                content_url = entry["links"]["content"]
                self.client.retrying("PUT", content_url, Reason.CONTENT_MISSING, attempt, 0.0)
        raise TransientApiError(
            "commit kept failing",
            method="POST",
            url=entry["links"]["commit"],
            status=500,
            folder=self.folder,
            key=file.key,
        )

    async def _put_content(
        self, file: LocalFile, entry: dict[str, Any], body: FileBody
    ) -> tuple[str, dict[str, Any]]:
        for attempt in range(1, CONTENT_ATTEMPTS + 1):
            resp = await self._put_watched(entry["links"]["content"], body, file)
            kept = content_kept(resp.status, resp.obj)
            if kept and body.md5 is not None:
                return body.md5, entry
            if kept is None:
                raise self._refused(resp, file)
            if attempt == CONTENT_ATTEMPTS:
                break
            # The server did not keep the content. Pending: PUT again. Gone: init again.
            found = await self.client.request("GET", entry["links"]["self"], accept=(404,))
            if found.status == 404:
                entry = await self.reinit(file)
            else:
                entry = found.obj or entry
            self.client.retrying("PUT", entry["links"]["content"], Reason.NOT_KEPT, attempt, 0.0)
        raise TransientApiError(
            "content upload kept failing",
            method="PUT",
            url=entry["links"]["content"],
            status=resp.status,
            server_message=str(resp.obj.get("message") or resp.obj.get("errors") or "none kept"),
            folder=self.folder,
            key=file.key,
        )

    async def _put_watched(self, url: str, body: FileBody, file: LocalFile) -> Response:
        """The PUT, aborted and resent if no chunk is accepted for ``stall_timeout`` seconds."""
        for attempt in range(1, CONTENT_ATTEMPTS + 1):
            stalled = False
            async with anyio.create_task_group() as tg:

                async def watchdog() -> None:
                    nonlocal stalled
                    while True:
                        await anyio.sleep(min(5.0, self.stall_timeout / 4))
                        if body.sending and time.monotonic() - body.last_progress > (
                            self.stall_timeout
                        ):
                            stalled = True
                            tg.cancel_scope.cancel()

                tg.start_soon(watchdog)
                resp = await self.client.put_content(url, body, file.size)
                tg.cancel_scope.cancel()
            if not stalled:
                return resp
            if attempt < CONTENT_ATTEMPTS:
                self.client.retrying("PUT", url, Reason.STALLED, attempt, 0.0)
        raise BodyPartlySent(
            f"upload stalled (no progress for {self.stall_timeout:.0f} s, "
            f"{CONTENT_ATTEMPTS} attempts)",
            sent=body.sent,
            size=file.size,
            method="PUT",
            url=url,
            status=None,
            folder=self.folder,
            key=file.key,
        )

    def _refused(self, resp: Response, file: LocalFile) -> PermanentApiError:
        err = self.client.error_for(resp)
        err.with_context(folder=self.folder, key=file.key)
        return err  # type: ignore[return-value]


def entry_for(resp: Response, key: str, folder: str) -> dict[str, Any]:
    """Find a key's entry in a files-list response (never by position: order is not promised)."""
    for entry in entries_of(resp.obj):
        if entry.get("key") == key:
            return entry
    raise PermanentApiError(
        f"the server's file list has no entry {key!r}",
        method=resp.method,
        url=resp.url,
        status=resp.status,
        folder=folder,
        key=key,
    )


def entries_of(listing: dict[str, Any]) -> list[dict[str, Any]]:
    entries = listing.get("entries", [])
    if isinstance(entries, dict):  # inside a draft's JSON, entries are keyed by name
        return list(entries.values())
    return list(entries)
