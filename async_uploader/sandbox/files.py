"""File bytes on disk, streamed with the md5 computed on the fly.

Bodies are never held whole in memory: chunks go from aiohttp's stream (which applies
back-pressure to the socket) straight to a temporary file, so a 2 GiB upload keeps the
sandbox's RSS flat. With ``discard=True`` only size and md5 are kept. Blobs are
reference-counted because a published record, its edit draft and a new version that
imported its files all share the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from aiohttp import StreamReader
from aiohttp.http_exceptions import HttpProcessingError

CHUNK = 256 * 1024


class ShortBody(Exception):
    """Fewer bytes arrived than announced, or the connection dropped mid-body."""


class TooLarge(Exception):
    """The body went past the size limit while streaming."""


@dataclass(eq=False)
class Blob:
    path: Path | None  # None in discard mode
    size: int
    md5: str | None
    refs: int = 0


class BlobStore:
    """Owns the temporary directory that holds every uploaded byte."""

    def __init__(self, root: Path, *, discard: bool) -> None:
        self.root = root
        self.discard = discard
        root.mkdir(parents=True, exist_ok=True)

    def _new_path(self) -> Path:
        return self.root / uuid.uuid4().hex

    async def receive(
        self, stream: StreamReader, *, expected: int | None, limit: int
    ) -> tuple[Blob, int]:
        """Stream a body to a new blob. Returns the blob and the bytes read.

        Raises :class:`ShortBody` or :class:`TooLarge`; nothing is left on disk then.
        """
        path = None if self.discard else self._new_path()
        md5 = hashlib.md5()
        size = 0
        # Hazard: blocking file I/O in the loop; chunks are small and the page cache absorbs them.
        fh = open(path, "wb") if path is not None else None  # noqa: SIM115, ASYNC230
        try:
            try:
                async for chunk in stream.iter_chunked(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge
                    md5.update(chunk)
                    if fh is not None:
                        fh.write(chunk)  # hazard: blocking write; page cache absorbs it
            except (ConnectionError, HttpProcessingError, asyncio.IncompleteReadError) as exc:
                raise ShortBody from exc
            if expected is not None and size < expected:
                raise ShortBody
        except BaseException:
            if fh is not None:
                fh.close()
                path.unlink(missing_ok=True)  # type: ignore[union-attr]
            raise
        if fh is not None:
            fh.close()
        return Blob(path, size, md5.hexdigest()), size

    async def drain(self, stream: StreamReader, max_bytes: int | None = None) -> int:
        """Read and forget up to ``max_bytes`` (all when None). Returns the count read."""
        count = 0
        try:
            while max_bytes is None or count < max_bytes:
                want = CHUNK if max_bytes is None else min(CHUNK, max_bytes - count)
                chunk = await stream.read(want)
                if not chunk:
                    break
                count += len(chunk)
        except (ConnectionError, HttpProcessingError, asyncio.IncompleteReadError):
            pass
        return count

    async def concat(self, parts: list[Blob]) -> Blob:
        """Join multipart parts into one blob (in a thread: it may be gigabytes)."""
        size = sum(p.size for p in parts)
        if self.discard or any(p.path is None for p in parts):
            return Blob(None, size, None)
        return await asyncio.to_thread(self._concat_sync, parts, size)

    def _concat_sync(self, parts: list[Blob], size: int) -> Blob:
        path = self._new_path()
        md5 = hashlib.md5()
        with open(path, "wb") as out:
            for part in parts:
                assert part.path is not None
                with open(part.path, "rb") as src:
                    while chunk := src.read(CHUNK):
                        md5.update(chunk)
                        out.write(chunk)
        return Blob(path, size, md5.hexdigest())

    @staticmethod
    def retain(blob: Blob | None) -> None:
        if blob is not None:
            blob.refs += 1

    @staticmethod
    def release(blob: Blob | None) -> None:
        if blob is None:
            return
        blob.refs -= 1
        if blob.refs <= 0 and blob.path is not None:
            blob.path.unlink(missing_ok=True)

    @staticmethod
    async def iter_bytes(blob: Blob) -> AsyncIterator[bytes]:
        """Read a stored blob back in chunks."""
        assert blob.path is not None
        with open(blob.path, "rb") as fh:  # noqa: ASYNC230 - small chunked reads
            while chunk := fh.read(CHUNK):
                yield chunk

    def disk_usage(self) -> int:
        return sum(os.path.getsize(p) for p in self.root.iterdir() if p.is_file())
