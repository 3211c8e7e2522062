"""The aiohttp application: the API route tables in matching order, the API middleware
(stats, latency, rate limit, faults) and the ``/_sandbox/`` admin routes."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web

from . import routes_files, routes_multipart, routes_records, routes_social
from .faults import FaultPlan, FaultPlanError
from .state import GENERIC_500, ApiFailure, SandboxState
from .store import NotFound
from .web_util import FIRED, RATE, STATE, jresp, read_json

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Registration order is matching order: part_put's ``{key}/content/{part}`` must come before
# the files table's catch-all ``{key:.+}`` routes.
API_ROUTES = (
    routes_records.routes,
    routes_multipart.routes,
    routes_files.routes,
    routes_social.routes,
)
_WRITES = ("POST", "PUT", "PATCH", "DELETE")
_HTML = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _fault_response(status: int, body: str) -> web.Response:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    if body == "html":
        return web.Response(
            status=status, text=_HTML.format(code=status, reason=reason), content_type="text/html"
        )
    message = GENERIC_500 if status == 500 else reason
    return web.json_response({"status": status, "message": message}, status=status)


def _storm_response(st: SandboxState) -> web.Response:
    rule = st.storm_rule
    remaining = max(st.storm_until - time.time(), 0.0)
    resp = web.json_response({"message": "Too Many Requests", "status": 429}, status=429)
    if rule is not None and rule.retry_after == "date":
        resp.headers["Retry-After"] = email.utils.formatdate(math.ceil(st.storm_until), usegmt=True)
    else:
        resp.headers["Retry-After"] = str(math.ceil(remaining))
    return resp


async def _run_handler(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiFailure as exc:
        return exc.response()
    except NotFound as exc:  # a store lookup, with the real server's message
        return ApiFailure(404, exc.message).response()
    except web.HTTPException as exc:  # unknown route, wrong method
        if exc.status == 404:
            return ApiFailure(404, "Not found.").response()
        if exc.status == 405:
            return ApiFailure(405, "The method is not allowed for the requested URL.").response()
        raise
    except ConnectionError:
        # The client went away mid-request (killed, or gave up): nobody is left to answer,
        # and it is not a server error worth a traceback in the log.
        return web.Response(status=400, text="client disconnected")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("sandbox handler failed")
        return ApiFailure(500, GENERIC_500).response()


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    st = request.app[STATE]
    if request.path.startswith("/_sandbox"):
        if st.user(request) is None and request.headers.get("X-Sandbox-Token") != st.token:
            return ApiFailure(403, "Permission denied.").response()
        return await _run_handler(request, handler)
    # The stats and fault-plan name: the aiohttp route name up to a "." (two paths serve
    # "files_list": "files_list" and "files_list.published"); "unknown" if none matched.
    route = (request.match_info.route.name or "unknown").partition(".")[0]
    stats = st.stats
    stats.requests_total += 1
    stats.per_route[route] += 1
    stats.per_method[request.method] += 1
    stats.per_user_agent[request.headers.get("User-Agent", "")] += 1
    if request.method in _WRITES and request.path.startswith("/api"):
        stats.write_requests += 1
    st.global_calls += 1
    st.route_calls[route] += 1
    global_n, route_n = st.global_calls, st.route_calls[route]
    resp = await _api_call(request, handler, st, route, route_n, global_n)
    transport = request.transport
    dropped = transport is None or transport.is_closing()
    stats.per_status["no_response" if dropped else str(resp.status)] += 1
    if resp.status == 429:
        stats.status_429 += 1
    return resp


async def _api_call(
    request: web.Request,
    handler: Handler,
    st: SandboxState,
    route: str,
    route_n: int,
    global_n: int,
) -> web.StreamResponse:
    delay = st.plan.delay_s(global_n, st.config.latency_ms, st.config.jitter_ms)
    if delay > 0:
        await asyncio.sleep(delay)
    if any(ch in request.raw_path.partition("?")[2] for ch in "'$"):
        # Werkzeug on the real server refuses a query string with a raw ' or $ (as
        # observed on InvenioRDM 14.0.5): clients must percent-encode them.
        message = "Error trying to decode a non urlencoded string."
        return ApiFailure(400, message).response()
    if st.limiter is not None:
        key = f"{request.remote}|{request.headers.get('User-Agent', '')}"
        rate = st.limiter.hit(key)
        request[RATE] = rate
        if not rate.allowed:
            return web.json_response({"message": rate.message, "status": 429}, status=429)
    fired = st.plan.decide(route, route_n, global_n) if route != "unknown" else ()
    for rule in fired:
        if rule.kind == "rate_storm" and not st.storm_active():
            st.count_fault("rate_storm")
            st.storm_until, st.storm_rule = time.time() + rule.duration_s, rule
    if st.storm_active():
        return _storm_response(st)
    for rule in fired:
        if rule.kind == "status":
            st.count_fault("status")
            return _fault_response(rule.status, rule.body)
    request[FIRED] = fired
    resp = await _run_handler(request, handler)
    if any(rule.kind == "lose_response" for rule in fired):
        # Hazard: the work is done, the answer is never delivered (the client must
        # reconcile). Writing to an aborted transport fails quietly inside aiohttp.
        st.count_fault("lose_response")
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)
    return resp


async def _add_rate_headers(request: web.Request, response: web.StreamResponse) -> None:
    """X-RateLimit-* and Retry-After on every limited response, streamed ones included."""
    rate = request.get(RATE)
    if rate is not None:
        for name, value in rate.headers().items():
            response.headers.setdefault(name, value)  # a storm's own Retry-After wins


async def admin_stats(request: web.Request) -> web.Response:
    return jresp(request.app[STATE].stats_dict())


async def admin_stats_reset(request: web.Request) -> web.Response:
    request.app[STATE].reset_stats()
    return jresp(request.app[STATE].stats_dict())


async def admin_faults_get(request: web.Request) -> web.Response:
    return jresp(request.app[STATE].plan.to_dict())


async def admin_faults_put(request: web.Request) -> web.Response:
    body = await read_json(request)
    try:
        plan = FaultPlan.from_dict(body)
    except (FaultPlanError, ValueError) as exc:
        raise ApiFailure(400, f"Invalid fault plan: {exc}") from None
    request.app[STATE].set_faults(plan)
    return jresp(plan.to_dict())


async def admin_records(request: web.Request) -> web.Response:
    return jresp(request.app[STATE].records_list())


async def admin_token(request: web.Request) -> web.Response:
    """``{"valid": false}`` revokes the token for the API (admin routes keep accepting it
    through ``X-Sandbox-Token``), ``true`` restores it."""
    body = await read_json(request)
    st = request.app[STATE]
    st.token_valid = bool(body.get("valid", True)) if isinstance(body, dict) else True
    return jresp({"valid": st.token_valid})


def create_app(st: SandboxState) -> web.Application:
    # JSON bodies up to 100 MiB like MAX_CONTENT_LENGTH; file content is streamed anyway.
    app = web.Application(middlewares=[api_middleware], client_max_size=100 * 1024 * 1024)
    app[STATE] = st
    app.on_response_prepare.append(_add_rate_headers)
    for table in API_ROUTES:
        for route in table:  # add_route, not add_routes: a GET gets no HEAD route (405)
            assert isinstance(route, web.RouteDef)
            app.router.add_route(route.method, route.path, route.handler, **route.kwargs)
    app.router.add_get("/_sandbox/stats", admin_stats)
    app.router.add_post("/_sandbox/stats/reset", admin_stats_reset)
    app.router.add_get("/_sandbox/faults", admin_faults_get)
    app.router.add_put("/_sandbox/faults", admin_faults_put)
    app.router.add_get("/_sandbox/records", admin_records)
    app.router.add_put("/_sandbox/token", admin_token)
    return app
