"""Draft files (init, content, parts, commit, delete) and published-file reads."""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from .file_common import (
    abort_mid_body,
    content_type_ok,
    failed_transfer,
    file_reply,
    files_url,
    receive,
    remove,
    unlocked,
)
from .render import file_json, files_list_json, mimetype
from .routes_multipart import init_multipart
from .routing import DRAFT, PUBLIC_FILES, Ctx, resolve
from .state import GENERIC_500, ApiFailure, SandboxState, validation_failure
from .store import FileEntry, now_iso
from .web_util import jresp, read_json, state, take_fault

routes = web.RouteTableDef()
MAX_FILES = 100
_INIT_KEYS = {"key", "size", "checksum", "metadata", "transfer", "access"}
_INIT_KEYS_V12 = {"key", "size", "checksum", "storage_class", "uri"}  # as observed on 12.1.0


@routes.get("/api/records/{id}/draft/files", name="files_list")
@resolve(DRAFT)
async def files_list(request: web.Request, ctx: Ctx) -> web.Response:
    return jresp(
        files_list_json(files_url(request, ctx.rec, True), ctx.snap, ctx.st.profile.series)
    )


@routes.get("/api/records/{id}/files", name="files_list.published")
@resolve(PUBLIC_FILES)
async def record_files_list(request: web.Request, ctx: Ctx) -> web.Response:
    return jresp(
        files_list_json(files_url(request, ctx.rec, False), ctx.snap, ctx.st.profile.series)
    )


def _parse_init(body: Any, st: SandboxState) -> list[FileEntry]:
    if not isinstance(body, list):
        raise validation_failure([{"field": "_schema", "messages": ["Invalid input type."]}])
    v12 = st.profile.series < 13
    if not body and not v12:  # v12 takes an empty batch as a no-op
        raise validation_failure([{"field": "_schema", "messages": ["No files to upload."]}])
    entries, errors = [], []
    for i, item in enumerate(body):
        if not isinstance(item, dict):
            errors.append({"field": f"{i}", "messages": ["Invalid input type."]})
            continue
        for extra in sorted(set(item) - (_INIT_KEYS_V12 if v12 else _INIT_KEYS)):
            errors.append({"field": f"{i}.{extra}", "messages": ["Unknown field."]})
        if not isinstance(item.get("key"), str) or not item["key"]:
            errors.append({"field": f"{i}.key", "messages": ["Missing data for required field."]})
            continue
        # v12 knows no transfer types: its "Unknown field." above is the only answer to one
        transfer = {"type": "L"} if v12 else item.get("transfer", {"type": "L"})
        if not isinstance(transfer, dict):
            raise ApiFailure(400, "Transfer metadata must be a dictionary.")
        ttype = transfer.get("type", "L")
        if ttype in ("F", "R"):
            raise ApiFailure(403, "Permission denied.")  # admins only
        if ttype not in ("L", "M"):
            errors.append({"field": f"{i}.transfer.type", "messages": ["Invalid transfer type."]})
            continue
        size = item.get("size")
        entry = FileEntry(
            key=item["key"],
            created=now_iso(),
            updated=now_iso(),
            transfer_type=ttype,
            metadata=item.get("metadata"),
            declared_size=size if isinstance(size, int) else None,
            declared_checksum=item.get("checksum"),
        )
        if ttype == "M":
            init_multipart(entry, transfer, i, errors)
        entries.append(entry)
    if errors:
        raise validation_failure(errors)
    return entries


@routes.post("/api/records/{id}/draft/files", name="files_init")
@resolve(DRAFT)
async def files_init(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec, snap = ctx.st, ctx.rec, ctx.snap
    body = await read_json(request)
    unlocked(rec)
    if not snap.files_enabled:
        raise ApiFailure(403, "Files are not enabled.")
    entries = _parse_init(body, st)
    if len(snap.files) + len(entries) > MAX_FILES:
        raise ApiFailure(
            400, "Uploading selected files will result in exceeding the max amount per record."
        )
    seen = set(snap.files)
    for entry in entries:  # the batch is one unit of work: any duplicate refuses all
        if entry.key in seen:
            raise ApiFailure(400, f"File with key {entry.key} already exists.")
        seen.add(entry.key)
    for entry in entries:
        snap.files[entry.key] = entry
    return jresp(files_list_json(files_url(request, rec, True), snap, st.profile.series), 201)


@routes.delete("/api/records/{id}/draft/files", name="files_delete_all")
@resolve(DRAFT)
async def files_delete_all(request: web.Request, ctx: Ctx) -> web.Response:
    unlocked(ctx.rec)
    ctx.st.store.drop_snapshot(ctx.snap)
    return web.Response(status=204)


@routes.get("/api/records/{id}/draft/files/{key:.+}/content", name="content_get")
@resolve(DRAFT)
async def draft_content_get(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _send_content(request, ctx.entry)


@routes.get("/api/records/{id}/files/{key:.+}/content", name="content_get.published")
@resolve(PUBLIC_FILES)
async def record_content_get(request: web.Request, ctx: Ctx) -> web.StreamResponse:
    return await _send_content(request, ctx.entry)


async def _send_content(request: web.Request, entry: FileEntry) -> web.StreamResponse:
    blob = entry.blob
    if blob is None or not entry.committed:
        raise ApiFailure(404, "Not found.")
    if blob.path is None:
        raise ApiFailure(404, "Content was discarded (sandbox started with discard_bytes).")
    resp = web.StreamResponse(headers={"Content-Type": mimetype(entry.key)})
    resp.content_length = blob.size
    await resp.prepare(request)
    async for chunk in state(request).blobs.iter_bytes(blob):
        await resp.write(chunk)
    await resp.write_eof()
    return resp


@routes.put("/api/records/{id}/draft/files/{key:.+}/content", name="content_put")
@resolve(DRAFT)
async def content_put(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec, snap, entry = ctx.st, ctx.rec, ctx.snap, ctx.entry
    unlocked(rec)
    content_type_ok(request)
    if entry.transfer_type == "M" and not st.profile.allow_multipart:
        raise ApiFailure(403, "Permission denied.")
    if entry.committed or entry.transfer_type == "M":
        return await failed_transfer(request, rec, snap, entry)
    if len(entry.key) > 255:
        raise ApiFailure(400, "Filename is too long.")
    rule = take_fault(request, "drop_mid_body")
    stall = take_fault(request, "stall_mid_body")
    if rule is not None or stall is not None:
        st.blobs.release(entry.blob)
        entry.blob = None
        fraction = rule.fraction if rule is not None else stall.fraction  # type: ignore[union-attr]
        return await abort_mid_body(request, fraction, stall.duration_s if stall else 0.0)
    used = sum(e.blob.size for e in snap.files.values() if e.blob and e is not entry)
    blob = await receive(request, min(st.config.max_file_size, st.config.max_file_size - used))
    if snap.files.get(entry.key) is not entry or entry.committed:
        st.blobs.release(blob)  # deleted or committed while the bytes were arriving
        raise ApiFailure(404, f"Record '{rec.id}' has no file '{entry.key}'.")
    st.blobs.release(entry.blob)
    entry.blob = None
    entry.updated = now_iso()
    if blob is None:  # short or aborted body: the entry stays pending, without content
        raise ApiFailure(400, "File is smaller than expected.")
    st.blobs.retain(blob)
    entry.blob = blob
    return jresp(file_reply(request, rec, snap, entry))


@routes.post("/api/records/{id}/draft/files/{key:.+}/commit", name="commit")
@resolve(DRAFT)
async def commit(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec, snap, entry = ctx.st, ctx.rec, ctx.snap, ctx.entry
    unlocked(rec)
    if entry.transfer_type == "M":
        if not st.profile.allow_multipart:
            raise ApiFailure(403, "Permission denied.")
        assert entry.parts is not None
        if sorted(entry.part_blobs) != list(range(1, entry.parts + 1)):
            raise ApiFailure(500, GENERIC_500)
        parts = [entry.part_blobs[n] for n in range(1, entry.parts + 1)]
        joined = await st.blobs.concat(parts)
        for blob in parts:
            st.blobs.release(blob)
        st.blobs.retain(joined)
        entry.part_blobs, entry.blob, entry.transfer_type = {}, joined, "L"
        # A checksum declared at init is reported unverified, as on the real server.
        entry.checksum = entry.declared_checksum or (f"md5:{joined.md5}" if joined.md5 else None)
    elif entry.blob is None:
        raise ApiFailure(500, GENERIC_500)  # "File with key X not uploaded yet." unmapped
    elif entry.blob.size == 0 and not st.profile.allow_empty_files:
        raise ApiFailure(400, "Empty files are not accepted.")
    else:
        entry.checksum = f"md5:{entry.blob.md5}" if entry.blob.md5 else None
    if take_fault(request, "wrong_checksum") is not None:
        entry.checksum = "md5:" + hashlib.md5(f"wrong:{entry.checksum}".encode()).hexdigest()
    entry.committed = True
    entry.updated = now_iso()
    return jresp(file_reply(request, rec, snap, entry))


@routes.get("/api/records/{id}/draft/files/{key:.+}", name="file_get")
@resolve(DRAFT)
async def file_get(request: web.Request, ctx: Ctx) -> web.Response:
    return jresp(file_reply(request, ctx.rec, ctx.snap, ctx.entry))


@routes.get("/api/records/{id}/files/{key:.+}", name="file_get.published")
@resolve(PUBLIC_FILES)
async def record_file_get(request: web.Request, ctx: Ctx) -> web.Response:
    url = files_url(request, ctx.rec, False)
    return jresp(file_json(url, ctx.entry, ctx.snap.bucket_id, series=ctx.st.profile.series))


@routes.put("/api/records/{id}/draft/files/{key:.+}", name="file_update")
@resolve(DRAFT)
async def file_update(request: web.Request, ctx: Ctx) -> web.Response:
    entry = ctx.entry
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation_failure([{"field": "_schema", "messages": ["Invalid input type."]}])
    if "metadata" in body:
        entry.metadata = body["metadata"]
    entry.updated = now_iso()
    return jresp(file_reply(request, ctx.rec, ctx.snap, entry))


@routes.delete("/api/records/{id}/draft/files/{key:.+}", name="file_delete")
@resolve(DRAFT)
async def file_delete(request: web.Request, ctx: Ctx) -> web.Response:
    unlocked(ctx.rec)
    remove(ctx.st, ctx.snap, ctx.entry)
    return web.Response(status=204)
