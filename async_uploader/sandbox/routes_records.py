"""Drafts, publish, edit, versions, files-import, record reads and search."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from . import search
from .analysis import records_index
from .render import files_list_json, record_json
from .routing import DRAFT, PUBLIC_RECORD, PUBLISHABLE, PUBLISHED, Ctx, resolve
from .state import ApiFailure, SandboxState, validation_failure
from .store import Record, Snapshot, now_iso
from .validation import HardError, load_draft, publish_errors
from .web_util import base, jresp, read_json, state

routes = web.RouteTableDef()
MAX_RESULTS = 10_000  # RR default_max_results


def _hard(exc: HardError) -> ApiFailure:
    return ApiFailure(400, exc.message, exc.errors)


def _check_if_match(request: web.Request, snap: Snapshot) -> None:
    raw = request.headers.get("If-Match")
    if raw is None:
        return
    raw = raw.strip()
    if not raw.isdigit():  # the quoted ETag sent back verbatim fails integer parsing
        raise validation_failure([{"field": "if_match", "messages": ["Not a valid integer."]}])
    if int(raw) != snap.revision_id:
        raise ApiFailure(
            412, f"Revision id provided({int(raw)}) doesn't match record's one({snap.revision_id})"
        )


def _draft_reply(
    st: SandboxState, request: web.Request, rec: Record, status: int, errors: list[Any]
) -> web.Response:
    body = record_json(st.store, base(request), rec, draft=True)
    if errors:
        body["errors"] = errors
    assert rec.draft is not None
    return jresp(body, status, etag=rec.draft.revision_id)


@routes.post("/api/records", name="create_draft")
async def create_draft(request: web.Request) -> web.Response:
    st = state(request)
    st.require_user(request)
    body = await read_json(request)
    try:
        loaded = load_draft(body, st.profile, file_count=None)
    except HardError as exc:
        raise _hard(exc) from None
    snap = Snapshot(
        metadata=loaded.metadata,
        access=loaded.access or {"record": "public", "files": "public"},
        files_enabled=loaded.files_enabled,
        default_preview=loaded.default_preview,
        order=loaded.order,
        pids=loaded.pids or {},
        custom_fields=loaded.custom_fields,
        revision_id=1,
        updated=now_iso(),
    )
    rec = st.store.create(snap, delay=st.config.index_delay_s)
    return _draft_reply(st, request, rec, 201, loaded.errors)


@routes.get("/api/records/{id}/draft", name="get_draft")
@resolve(DRAFT)
async def get_draft(request: web.Request, ctx: Ctx) -> web.Response:
    return _draft_reply(ctx.st, request, ctx.rec, 200, [])


@routes.put("/api/records/{id}/draft", name="update_draft")
@resolve(DRAFT)
async def update_draft(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec, snap = ctx.st, ctx.rec, ctx.snap
    _check_if_match(request, snap)
    body = await read_json(request)
    try:
        loaded = load_draft(body, st.profile, file_count=len(snap.files))
    except HardError as exc:
        raise _hard(exc) from None
    snap.metadata = loaded.metadata  # replaced wholesale
    if loaded.access is not None:  # access and pids change only when given
        snap.access = loaded.access
    if loaded.pids is not None:
        snap.pids = loaded.pids
    snap.files_enabled = loaded.files_enabled  # omitted "files": back to the default (True)
    snap.default_preview = loaded.default_preview
    snap.order = loaded.order
    snap.custom_fields = loaded.custom_fields
    snap.revision_id += 1
    snap.updated = now_iso()
    return _draft_reply(st, request, rec, 200, loaded.errors)


@routes.delete("/api/records/{id}/draft", name="delete_draft")
@resolve(DRAFT)
async def delete_draft(request: web.Request, ctx: Ctx) -> web.Response:
    _check_if_match(request, ctx.snap)
    if ctx.rec.review is not None and ctx.rec.review.is_open:
        raise ApiFailure(400, "You cannot delete a draft with an open review request.")
    ctx.st.store.delete_draft(ctx.rec)
    return web.Response(status=204)


OPEN_REVIEW = (
    "You cannot publish a draft with an open review request. "
    "Please cancel the review request first."
)


def strict_check(st: SandboxState, snap: Snapshot) -> None:
    """Publish-time validation (400 with ``errors``)."""
    pending = sum(1 for e in snap.files.values() if not e.committed)
    errors = publish_errors(
        snap.metadata,
        st.profile,
        files_enabled=snap.files_enabled,
        file_count=len(snap.files),
        pending=pending,
    )
    if errors:
        raise validation_failure(errors)


@routes.post("/api/records/{id}/draft/actions/publish", name="publish")
@resolve(PUBLISHABLE)
async def publish(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec, snap = ctx.st, ctx.rec, ctx.snap
    if st.profile.community_required and not rec.parent.communities:
        raise ApiFailure(403, "Community not selected.")
    if rec.review is not None and rec.review.blocks_publish:
        raise ApiFailure(400, "" if st.profile.series < 13 else OPEN_REVIEW)  # v12: no words
    strict_check(st, snap)
    st.store.publish(rec, delay=st.config.index_delay_s)
    assert rec.published is not None
    body = record_json(st.store, base(request), rec, draft=False)
    return jresp(body, 202, etag=rec.published.revision_id)


@routes.post("/api/records/{id}/draft", name="edit")
@resolve(PUBLISHED)
async def edit(request: web.Request, ctx: Ctx) -> web.Response:
    ctx.st.store.edit(ctx.rec)
    return _draft_reply(ctx.st, request, ctx.rec, 201, [])


@routes.post("/api/records/{id}/versions", name="new_version")
@resolve(PUBLISHED)
async def new_version(request: web.Request, ctx: Ctx) -> web.Response:
    new = ctx.st.store.new_version(ctx.rec, delay=ctx.st.config.index_delay_s)
    return _draft_reply(ctx.st, request, new, 201, [])


@routes.post("/api/records/{id}/draft/actions/files-import", name="files_import")
@resolve(DRAFT)
async def files_import(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec, snap = ctx.st, ctx.rec, ctx.snap
    problem = None
    latest = st.store.latest_published(rec.parent)
    if not snap.files_enabled:
        problem = "Files support must be enabled."
    elif snap.files:
        problem = "Please remove all files first."
    elif latest is None or latest.published is None or not latest.published.files:
        problem = "The record has no files."
    if problem:
        raise validation_failure([{"field": "files.enabled", "messages": [problem]}])
    st.store.import_files(rec, snap)
    files_url = f"{base(request)}/api/records/{rec.id}/draft/files"
    return jresp(files_list_json(files_url, snap, st.profile.series), 201)


@routes.get("/api/records/{id}", name="get_record")
@resolve(PUBLIC_RECORD)
async def get_record(request: web.Request, ctx: Ctx) -> web.Response:
    body = record_json(ctx.st.store, base(request), ctx.rec, draft=False)
    return jresp(body, etag=ctx.snap.revision_id)


def _int_arg(request: web.Request, name: str, default: int) -> int:
    try:
        value = int(request.query.get(name, default))
    except ValueError:
        raise ApiFailure(400, "Invalid pagination parameters.") from None
    return value


def _search(
    request: web.Request, pairs: list[tuple[Record, Snapshot]], draft_view: bool, default: str
) -> web.Response:
    st = state(request)
    q = request.query.get("q", "")
    # unparsable: a multi_match fallback, as on the server
    match = search.matcher(q, records_index(st.profile.name))
    sort = request.query.get("sort") or ("bestmatch" if q else default)
    if sort not in search.SORTS:
        raise validation_failure([{"field": "sort", "messages": [f"Invalid sort option {sort}."]}])
    size, page = _int_arg(request, "size", 25), _int_arg(request, "page", 1)
    # RR Pagination.valid(): the page must start inside the first 10,000 results; the last
    # page allowed is cut at 10,000 (OpenSearch's max_result_window).
    if size < 1 or page < 1 or (page - 1) * size >= MAX_RESULTS:
        raise ApiFailure(400, "Invalid pagination parameters.")
    hits = [(r, s) for r, s in pairs if match(r, s)]
    key, reverse = search.sort_key(sort)
    hits.sort(key=key, reverse=reverse)
    chunk = hits[(page - 1) * size : min(page * size, MAX_RESULTS)]
    b = base(request)

    def page_url(n: int) -> str:
        args = {"page": n, "size": size, "sort": sort}
        if q:
            args["q"] = q
        return f"{b}{request.path}?{urlencode(args)}"

    # next/prev when that page would be valid against the total (RR results.py pagination)
    links = {"self": page_url(page)}
    if page * size < len(hits):
        links["next"] = page_url(page + 1)
    if page > 1 and (page - 2) * size < len(hits):
        links["prev"] = page_url(page - 1)
    return jresp(
        {
            "hits": {
                "hits": [
                    record_json(st.store, b, r, draft=draft_view and r.draft is not None)
                    for r, _ in chunk
                ],
                "total": len(hits),
            },
            "aggregations": {},
            "sortBy": sort,
            **({"page": page} if st.profile.series >= 13 else {}),  # v12 does not echo it
            "links": links,
        }
    )


@routes.get("/api/records", name="search_records")
async def search_records(request: web.Request) -> web.Response:
    st = state(request)
    user = st.user(request)
    now = time.time()
    allversions = request.query.get("allversions", "").lower() in ("true", "1")
    pairs = []
    for rec in list(st.store.records.values()):
        snap = rec.published
        if snap is None or rec.visible_at > now:
            continue
        if not allversions and not st.store.is_latest(rec):
            continue
        if snap.access.get("record") != "public" and user is None:
            continue
        pairs.append((rec, snap))
    return _search(request, pairs, False, "newest")


@routes.get("/api/user/records", name="search_user_records")
async def search_user_records(request: web.Request) -> web.Response:
    st = state(request)
    st.require_user(request)
    now = time.time()
    allversions = request.query.get("allversions", "").lower() in ("true", "1")
    flag = request.query.get("is_published")
    pairs = []
    for rec in list(st.store.records.values()):
        if rec.visible_at > now:
            continue
        if not allversions and not st.store.is_latest_draft(rec):
            continue
        if flag is not None and (rec.published is not None) != (flag.lower() == "true"):
            continue
        pairs.append((rec, rec.current))
    return _search(request, pairs, True, "updated-desc")
