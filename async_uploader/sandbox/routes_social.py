"""Communities, the review ("share") flow, requests, access links and grants."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from aiohttp import web

from .render import community_json, request_json
from .routes_records import strict_check
from .routing import DRAFT, RECORD, Ctx, resolve
from .state import USER_ID, ApiFailure, SandboxState, validation_failure
from .store import AccessLink, Record, Request, now_iso
from .web_util import base, jresp, read_json, series, state

routes = web.RouteTableDef()
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_LINK_PERMS = ("view", "preview", "edit")
_GRANT_PERMS = ("view", "preview", "edit", "manage")
NO_REVIEW = "Review for draft not found"


@routes.get("/api/communities/{ref}", name="community_get")
async def community_get(request: web.Request) -> web.Response:
    st = state(request)
    comm = st.store.community(request.match_info["ref"])  # NotFound: 404
    if comm.visibility != "public":
        st.require_user(request)
    return jresp(community_json(base(request), comm, series(request)), etag=1)


@routes.get("/api/communities", name="community_search")
async def community_search(request: web.Request) -> web.Response:
    st = state(request)
    q = request.query.get("q", "").strip()
    hits = []
    for comm in st.store.communities.values():
        if comm.visibility != "public" and st.user(request) is None:
            continue
        if q.startswith("slug:"):
            if comm.slug != q[5:].strip('"'):
                continue
        elif q and q.lower() not in f"{comm.slug} {comm.title}".lower():
            continue
        hits.append(community_json(base(request), comm, series(request)))
    return jresp(
        {
            "hits": {"hits": hits, "total": len(hits)},
            "aggregations": {},
            "sortBy": "bestmatch" if q else "newest",
            "links": {"self": f"{base(request)}{request.rel_url}"},
        }
    )


@routes.post("/api/communities", name="community_create")
async def community_create(request: web.Request) -> web.Response:
    st = state(request)
    user = st.require_user(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise validation_failure([{"field": "_schema", "messages": ["Invalid input type."]}])
    errors = []
    slug = body.get("slug")
    title = (body.get("metadata") or {}).get("title")
    visibility = (body.get("access") or {}).get("visibility", "public")
    if not isinstance(slug, str) or not slug:
        errors.append({"field": "slug", "messages": ["Missing data for required field."]})
    elif not _SLUG.match(slug):
        errors.append(
            {
                "field": "slug",
                "messages": [
                    "The identifier should contain only lower case letters, numbers, "
                    "dashes and underscores."
                ],
            }
        )
    elif any(c.slug == slug for c in st.store.communities.values()):
        errors.append(
            {"field": "slug", "messages": ["A community with this identifier already exists."]}
        )
    if not isinstance(title, str) or not title:
        errors.append({"field": "metadata.title", "messages": ["Missing data for required field."]})
    if visibility not in ("public", "restricted"):
        errors.append({"field": "access.visibility", "messages": ["Invalid value."]})
    if errors:
        raise validation_failure(errors)
    assert isinstance(slug, str) and isinstance(title, str)  # checked above
    comm = st.store.add_community(slug, title, user, visibility)
    return jresp(community_json(base(request), comm, series(request)), 201, etag=1)


@routes.put("/api/records/{id}/draft/review", name="review_put")
@resolve(DRAFT)
async def review_put(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec = ctx.st, ctx.rec
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("type") != "community-submission":
        raise ApiFailure(400, "Invalid review type.")
    if rec.published is not None:
        raise ApiFailure(400, "You cannot create a review for an already published record.")
    if rec.index > 1:
        raise ApiFailure(400, "You cannot create a review for a new version of a record.")
    ref = (body.get("receiver") or {}).get("community")
    comm = st.store.communities.get(ref) if isinstance(ref, str) else None
    if comm is None:  # the receiver must be the UUID: a slug is not resolved
        raise ApiFailure(400, f"Invalid value {ref}.")
    if rec.review is not None:
        if rec.review.is_open:
            raise ApiFailure(400, "You cannot update a review that has been submitted.")
        st.store.requests.pop(rec.review.id, None)
    rec.review = st.store.new_request(rec, comm, USER_ID)
    return jresp(request_json(base(request), rec.review, series=series(request)))


@routes.get("/api/records/{id}/draft/review", name="review_get")
@resolve(DRAFT)
async def review_get(request: web.Request, ctx: Ctx) -> web.Response:
    if ctx.rec.review is None:
        raise ApiFailure(404, NO_REVIEW)
    return jresp(request_json(base(request), ctx.rec.review, series=series(request)))


@routes.delete("/api/records/{id}/draft/review", name="review_delete")
@resolve(DRAFT)
async def review_delete(request: web.Request, ctx: Ctx) -> web.Response:
    rec = ctx.rec
    if rec.review is None:
        raise ApiFailure(404, NO_REVIEW)
    if rec.review.is_open:
        raise ApiFailure(400, "You cannot delete a review that has been submitted.")
    ctx.st.store.requests.pop(rec.review.id, None)
    rec.review = None
    return web.Response(status=204)


def _accept(st: SandboxState, rec: Record, req: Request) -> None:
    """Publish the draft into the request's community (inclusion)."""
    if req.community_id not in rec.parent.communities:
        rec.parent.communities.append(req.community_id)
    req.status, req.updated = "accepted", now_iso()
    st.store.publish(rec, delay=st.config.index_delay_s)
    rec.review = None  # the accepted request stays in store.requests


@routes.post("/api/records/{id}/draft/actions/submit-review", name="submit_review")
@resolve(DRAFT)
async def submit_review(request: web.Request, ctx: Ctx) -> web.Response:
    st, rec = ctx.st, ctx.rec
    body = await read_json(request, optional=True)
    if rec.review is None:
        raise ApiFailure(404, NO_REVIEW)
    req = rec.review
    if req.status != "created":
        raise ApiFailure(400, f"Invalid action submit for a request in state {req.status}.")
    assert rec.draft is not None
    strict_check(st, rec.draft)
    comm = st.store.communities[req.community_id]
    require_review = isinstance(body, dict) and bool(body.get("require_review"))
    direct = USER_ID in comm.members and comm.review_policy != "closed" and not require_review
    req.status, req.updated = "submitted", now_iso()
    if direct:
        _accept(st, rec, req)
    b = base(request)
    after = f"{b}/records/{rec.id}" if req.status == "accepted" else f"{b}/me/requests/{req.id}"
    return jresp(request_json(b, req, next_html=after, series=series(request)), 202)


@routes.get("/api/requests/{rid}", name="request_get")
async def request_get(request: web.Request) -> web.Response:
    st = state(request)
    st.require_user(request)
    req = st.store.requests.get(request.match_info["rid"])
    if req is None:
        raise ApiFailure(404, "The persistent identifier does not exist.")
    return jresp(request_json(base(request), req, series=series(request)))


@routes.post("/api/requests/{rid}/actions/{action}", name="request_action")
async def request_action(request: web.Request) -> web.Response:
    st = state(request)
    st.require_user(request)
    req = st.store.requests.get(request.match_info["rid"])
    if req is None:
        raise ApiFailure(404, "The persistent identifier does not exist.")
    await read_json(request, optional=True)
    action = request.match_info["action"]
    allowed = {
        "accept": ("submitted",),
        "decline": ("submitted",),
        "cancel": ("submitted", "created"),
    }
    if action not in allowed:
        raise ApiFailure(404, "Not found.")
    if req.status not in allowed[action]:
        raise ApiFailure(400, f"Invalid action {action} for a request in state {req.status}.")
    rec = st.store.records.get(req.record_id)
    if action == "accept":
        if rec is None or rec.draft is None:
            raise ApiFailure(400, "The draft of this request no longer exists.")
        strict_check(st, rec.draft)
        _accept(st, rec, req)
    else:
        req.status = "declined" if action == "decline" else "cancelled"
        req.updated = now_iso()
    return jresp(request_json(base(request), req, series=series(request)))


@routes.post("/api/records/{id}/access/links", name="access_links")
@resolve(RECORD)
async def access_links_create(request: web.Request, ctx: Ctx) -> web.Response:
    body = await read_json(request)
    if not isinstance(body, dict) or body.get("permission") not in _LINK_PERMS:
        raise validation_failure(
            [{"field": "permission", "messages": ["Must be one of: view, preview, edit."]}]
        )
    link = AccessLink(
        id=str(uuid.uuid4()),
        created_at=now_iso(),
        expires_at=body.get("expires_at"),
        permission=body["permission"],
        description=str(body.get("description", "")),
        token=secrets.token_urlsafe(32),
    )
    ctx.rec.parent.links.append(link)
    return jresp(_link_json(link), 201)


def _link_json(link: AccessLink) -> dict[str, Any]:
    """InvenioRDM leaves ``expires_at`` out of a link that never expires."""
    return {k: v for k, v in link.__dict__.items() if k != "expires_at" or v is not None}


@routes.get("/api/records/{id}/access/links", name="access_links")
@resolve(RECORD)
async def access_links_list(request: web.Request, ctx: Ctx) -> web.Response:
    hits = [_link_json(link) for link in ctx.rec.parent.links]
    return jresp({"hits": {"hits": hits, "total": len(hits)}})


def _grant_errors(grants: Any) -> list[dict[str, Any]]:
    if not isinstance(grants, list) or not 1 <= len(grants) <= 100:
        return [{"field": "grants", "messages": ["Length must be between 1 and 100."]}]
    errors = []
    for i, grant in enumerate(grants):
        subject = grant.get("subject") if isinstance(grant, dict) else None
        if (
            not isinstance(subject, dict)
            or subject.get("type") not in ("user", "role", "system_role")
            or "id" not in subject
        ):
            errors.append({"field": f"grants.{i}.subject", "messages": ["Invalid value."]})
        elif grant.get("permission") not in _GRANT_PERMS:
            errors.append({"field": f"grants.{i}.permission", "messages": ["Invalid value."]})
    return errors


@routes.post("/api/records/{id}/access/grants", name="access_grants")
@resolve(RECORD)
async def access_grants_create(request: web.Request, ctx: Ctx) -> web.Response:
    body = await read_json(request)
    grants = body.get("grants") if isinstance(body, dict) else None
    errors = _grant_errors(grants)
    if errors:
        raise validation_failure(errors)
    assert isinstance(grants, list)
    added = [
        {"subject": g["subject"], "permission": g["permission"], "origin": "api"} for g in grants
    ]
    ctx.rec.parent.grants.extend(added)
    return jresp({"hits": {"hits": added, "total": len(added)}}, 201)


@routes.get("/api/records/{id}/access/grants", name="access_grants")
@resolve(RECORD)
async def access_grants_list(request: web.Request, ctx: Ctx) -> web.Response:
    grants = ctx.rec.parent.grants
    return jresp({"hits": {"hits": grants, "total": len(grants)}})
