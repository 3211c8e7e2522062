"""Helpers shared by the file routes (locks, streaming, failure replies)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from .files import ShortBody, TooLarge
from .render import file_json
from .state import ApiFailure, SandboxState
from .store import FileEntry, Record, Snapshot
from .web_util import base, jresp, state

TRANSFER_FAILED = "File upload transfer failed."
TRANSFER_FAILED_V12 = "The file upload transfer failed, please try again."


def files_url(request: web.Request, rec: Record, draft: bool) -> str:
    return f"{base(request)}/api/records/{rec.id}{'/draft' if draft else ''}/files"


def unlocked(rec: Record) -> None:
    if rec.published is not None:  # edit draft of a published record: bucket locked
        raise ApiFailure(403, "Bucket is locked for modifications.")


def file_reply(request: web.Request, rec: Record, snap: Snapshot, entry: FileEntry) -> Any:
    series = state(request).profile.series
    return file_json(files_url(request, rec, True), entry, snap.bucket_id, series=series)


def content_type_ok(request: web.Request) -> None:
    ctype = request.headers.get("Content-Type")
    if ctype is not None and ctype.strip() != "application/octet-stream":
        raise ApiFailure(
            415, "Invalid 'Content-Type' header. Expected one of: application/octet-stream"
        )


async def abort_mid_body(
    request: web.Request, fraction: float, stall_s: float = 0.0
) -> web.Response:
    """Fault: read part of the body, then drop the connection without an answer.

    With ``stall_s``, stop reading for that long first (a stalled upstream: the client's
    send blocks once the socket buffers are full).
    """
    total = request.content_length
    want = int(total * fraction) if total else 64 * 1024
    await state(request).blobs.drain(request.content, want)
    if stall_s:
        await asyncio.sleep(stall_s)
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)  # never delivered: the transport is gone


def remove(st: SandboxState, snap: Snapshot, entry: FileEntry) -> None:
    if snap.files.get(entry.key) is entry:
        del snap.files[entry.key]
    for blob in entry.blobs():
        st.blobs.release(blob)
    entry.blob, entry.part_blobs = None, {}


async def failed_transfer(
    request: web.Request, rec: Record, snap: Snapshot, entry: FileEntry
) -> web.Response:
    """The catch-all of the real server: 200 + ``errors`` string (v12: a 400), entry removed."""
    st = state(request)
    await st.blobs.drain(request.content)
    body = file_reply(request, rec, snap, entry)
    remove(st, snap, entry)
    if st.profile.series < 13:
        raise ApiFailure(400, TRANSFER_FAILED_V12)
    body["errors"] = TRANSFER_FAILED
    return jresp(body)


async def receive(request: web.Request, limit: int) -> Any:
    st = state(request)
    length = request.content_length
    if length is not None and length > limit:
        raise ApiFailure(400, "File size limit exceeded.")
    try:
        blob, size = await st.blobs.receive(request.content, expected=length, limit=limit)
    except ShortBody:
        return None
    except TooLarge:
        raise ApiFailure(400, "File size limit exceeded.") from None
    st.stats.bytes_received += size
    return blob
