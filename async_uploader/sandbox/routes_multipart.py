"""Multipart ("M", v13+) transfers: init checks and part uploads.

``app`` registers this table before the files table so that ``{key}/content/{part}`` is
matched before the catch-all ``{key}`` route.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .file_common import (
    TRANSFER_FAILED,
    abort_mid_body,
    content_type_ok,
    file_reply,
    receive,
    unlocked,
)
from .routing import DRAFT, Ctx, resolve
from .state import ApiFailure
from .store import FileEntry
from .web_util import jresp, take_fault

routes = web.RouteTableDef()


def init_multipart(entry: FileEntry, transfer: dict[str, Any], i: int, errors: list[Any]) -> None:
    parts, part_size = transfer.get("parts"), transfer.get("part_size")
    if not isinstance(parts, int) or parts < 1:
        errors.append(
            {"field": f"{i}.transfer.parts", "messages": ["Missing data for required field."]}
        )
        return
    if entry.declared_size is None:
        raise ApiFailure(400, "Multipart file transfer requires file size.")
    if not isinstance(part_size, int) or part_size < 1:
        raise ApiFailure(400, "Multipart file transfer requires part_size.")
    if not (parts - 1) * part_size < entry.declared_size <= parts * part_size and not (
        parts == 1 and entry.declared_size == 0
    ):
        raise ApiFailure(400, "Invalid part_size and parts for the file size.")
    entry.parts, entry.part_size = parts, part_size


@routes.put(r"/api/records/{id}/draft/files/{key:.+}/content/{part:\d+}", name="part_put")
@resolve(DRAFT)
async def part_put(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec, snap, entry = ctx.st, ctx.rec, ctx.snap, ctx.entry
    unlocked(rec)
    content_type_ok(request)
    if not st.profile.allow_multipart:
        raise ApiFailure(403, "Permission denied.")
    if entry.transfer_type != "M":
        raise ApiFailure(
            400, f'Transfer type "{entry.transfer_type}" does not support multipart uploads.'
        )
    part = int(request.match_info["part"])
    assert entry.parts is not None and entry.part_size is not None
    last = entry.parts
    expect = (
        entry.part_size
        if part < last
        else (entry.declared_size or 0) - (last - 1) * entry.part_size
    )
    if entry.committed or not 1 <= part <= last or request.content_length not in (None, expect):
        await st.blobs.drain(request.content)
        body = file_reply(request, rec, snap, entry)
        body["errors"] = TRANSFER_FAILED  # the entry is kept for part errors
        return jresp(body)
    rule = take_fault(request, "drop_mid_body")
    stall = take_fault(request, "stall_mid_body")
    if rule is not None or stall is not None:
        fraction = rule.fraction if rule is not None else stall.fraction  # type: ignore[union-attr]
        return await abort_mid_body(request, fraction, stall.duration_s if stall else 0.0)
    blob = await receive(request, expect)
    if blob is None:
        raise ApiFailure(400, "File is smaller than expected.")
    if blob.size != expect or snap.files.get(entry.key) is not entry:
        st.blobs.retain(blob)
        st.blobs.release(blob)
        body = file_reply(request, rec, snap, entry)
        body["errors"] = TRANSFER_FAILED
        return jresp(body)
    st.blobs.retain(blob)
    st.blobs.release(entry.part_blobs.get(part))
    entry.part_blobs[part] = blob
    return jresp(file_reply(request, rec, snap, entry))
