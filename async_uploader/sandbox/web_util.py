"""Small helpers shared by the route modules."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from .faults import FaultRule
from .ratelimit import RateDecision
from .state import ApiFailure, SandboxState

STATE: web.AppKey[SandboxState] = web.AppKey("sandbox_state", SandboxState)
FIRED: web.RequestKey[tuple[FaultRule, ...]] = web.RequestKey("sandbox_fired", tuple)
"""Request key: the fault rules that fired for this call."""
RATE: web.RequestKey[RateDecision] = web.RequestKey("sandbox_rate", RateDecision)
"""Request key: the rate-limit decision whose headers go on this call's response."""
BAD_JSON = "Unable to decode JSON data in request body."


def state(request: web.Request) -> SandboxState:
    return request.app[STATE]


def series(request: web.Request) -> int:
    """The InvenioRDM series whose shapes and rules this sandbox follows (14 or 12)."""
    return state(request).profile.series


def base(request: web.Request) -> str:
    """The origin every rendered link starts with: ``links_origin`` if configured (a test of
    what a client sends to another host), else the sandbox's own address."""
    st = state(request)
    return st.config.links_origin or st.base_url or str(request.url.origin())


def jresp(data: Any, status: int = 200, *, etag: int | None = None) -> web.Response:
    resp = web.json_response(data, status=status)
    if etag is not None:
        resp.headers["ETag"] = f'"{etag}"'
    return resp


def take_fault(request: web.Request, kind: str) -> FaultRule | None:
    """Claim a handler-phase fault (drop_mid_body, wrong_checksum) that fired for this call."""
    for rule in request.get(FIRED, ()):
        if rule.kind == kind:
            state(request).count_fault(kind)
            return rule
    return None


def _check_json_type(request: web.Request) -> None:
    ctype = request.headers.get("Content-Type")
    # Flask-Resources compares the whole header: a "; charset=utf-8" suffix is refused.
    if ctype is not None and ctype.strip() != "application/json":
        raise ApiFailure(415, "Invalid 'Content-Type' header. Expected one of: application/json")


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """The JSON body; ``optional`` bodies may be empty (then ``{}``)."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise ApiFailure(400, BAD_JSON)
    _check_json_type(request)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiFailure(400, BAD_JSON) from None
