"""The REST transport over one aiohttp session: rate limit, retries, one exception map.

Every request goes through ``InvenioClient.request``, which

1. waits for the shared rate limiter,
2. sends the request (a streamed body is rebuilt from its factory on every attempt),
3. translates aiohttp exceptions into the ``errors`` tree (``transport_error``, the only
   place that does), by how far the request got: ``NotSent``, ``BodyPartlySent``, ``NoAnswer``,
4. feeds ``X-RateLimit-*`` headers and 429s back to the limiter,
5. retries what ``retry.decide`` calls transient, when the call may be resent
   (``retry.may_resend``), announcing every resend as one ``Retrying`` event.

A transport you can reason about: every request on the wire is one the client knows about.
aiohttp would resend an idempotent request once, silently, after a kept-alive connection
failed (reusing a half-sent streamed body); ``disable_silent_resend`` switches that off, or
refuses to start when it cannot (see there). The counters are fed from the events the client
hands on (``report``), so the report and an event log agree.

Token safety: the bearer token goes only to the origin of ``--url``. Every URL (including
the links the server hands out) is checked before it is sent; a link elsewhere raises
``UnsafeLink`` without sending, and redirects are never followed by aiohttp.

Calls that are not idempotent (create draft, publish, submit-review, file init) pass
``resend=False``: they are resent only when the request provably did nothing (``NotSent``:
the connection could not be opened, or the server answered 429). Any other failure is raised
for the caller, which first asks the server what happened (see ``steps/settle.py``).
"""

from __future__ import annotations

import contextlib
import json as jsonlib
import random
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import anyio

from .concurrency import Flow, call_kind
from .config import RetryConfig
from .errors import (
    ApiError,
    AuthRefused,
    NotSent,
    PermanentApiError,
    ServerUnreachable,
    TransientApiError,
    UnsafeLink,
    UploaderError,
    http_reason,
)
from .events import Event, Paused, Reporter, Retrying, count
from .match import ServerClock
from .ratelimit import DEFAULT, RateLimiter, route_class
from .results import Counters
from .retry import decide, is_transient_status, may_resend, parse_retry_after
from .wire import (
    WRITE_METHODS,
    BodyFactory,
    CountedBody,
    Response,
    disable_silent_resend,
    origin_of,
    server_text,
    transport_error,
    with_query,
)

DENIED_IN_A_ROW = 3  # refused writes in a row after some worked: the token was revoked


class RestClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        limiter: RateLimiter,
        retry: RetryConfig,
        counters: Counters,
        reporter: Reporter,
        flow: Flow | None = None,
        rand: Callable[[], float] = random.random,
    ):
        disable_silent_resend(session)  # every request on the wire is one we know about
        self.session = session
        self.api = api_url.rstrip("/")
        self.origin = origin_of(self.api)
        self.clock = ServerClock()
        self.limiter = limiter
        # Records in flight, learned from round trips (None: a client outside a batch).
        self.flow = flow
        self.retry = retry
        self.counters = counters
        self.reporter = reporter
        self.rand = rand
        self.writes_ok = 0  # a 403 before any write worked means the token is refused
        self.denied_in_a_row = 0
        self.first_write = anyio.Event()  # the token is proven good: more records may start

    # -- events -------------------------------------------------------------------------
    def report(self, event: Event) -> None:
        """Count ``event`` (``events.count``) and hand it to the reporter."""
        count(self.counters, event)
        self.reporter(event)

    def retrying(self, method: str, url: str, reason: str, attempt: int, delay: float) -> None:
        """Announce one resend of a call (any layer's): exactly one ``Retrying`` event, which
        is also what counts it. ``reason`` is a stable key (``errors.Reason``,
        ``errors.http_reason``), the ``attempt`` the one that failed."""
        self.report(Retrying(method, url, str(reason), attempt, delay))

    # -- transport ------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        body: BodyFactory | None = None,
        size: int | None = None,
        params: Mapping[str, str] | None = None,
        accept: Collection[int] = (),
        resend: bool = True,
    ) -> Response:
        """Send with retries. Statuses in ``accept`` are returned as they are, not raised."""
        self.check_origin(method, url)
        cls = route_class(method, urlsplit(url).path)
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._send_once(
                    method, url, cls, json=json, body=body, size=size, params=params
                )
            except TransientApiError as exc:  # no answer: NotSent, BodyPartlySent, NoAnswer
                decision = decide(
                    attempt=attempt,
                    elapsed=time.monotonic() - start,
                    status=None,
                    retry_after=None,
                    config=self.retry,
                    jitter=self.rand(),
                )
                if not (may_resend(exc.reason, idempotent=resend) and decision.retry):
                    self.counters.gave_up += 1
                    raise self._given_up(exc, attempt, budget_left=decision.retry) from None
                await self._wait_retry(method, url, exc.reason, attempt, decision.delay)
                continue
            if 300 <= resp.status < 400:
                raise self.redirected(resp)
            if resp.status < 400 or resp.status in accept:
                if method in WRITE_METHODS and resp.status < 400:
                    self.writes_ok += 1
                    self.denied_in_a_row = 0
                    self.first_write.set()
                return resp
            retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
            if resp.status == 429:
                self.counters.responses_429 += 1
                message = str(resp.obj.get("message"))
                pause = self.limiter.too_many_requests(retry_after, message, cls)
                self.report(Paused(pause, f"HTTP 429 on {method} {url}"))
                if self.flow is not None and cls == DEFAULT:
                    self.flow.congestion()

            decision = decide(
                attempt=attempt,
                elapsed=time.monotonic() - start,
                status=resp.status,
                retry_after=retry_after if resp.status != 429 else 0.0,
                config=self.retry,
                jitter=self.rand(),
            )
            reason = http_reason(resp.status)
            if not (may_resend(reason, idempotent=resend) and decision.retry):
                raise self.error_for(resp)
            await self._wait_retry(method, url, reason, attempt, decision.delay)

    def _given_up(
        self, exc: TransientApiError, attempts: int, *, budget_left: bool
    ) -> TransientApiError:
        """The error to raise for a call that got no answer and is not sent again."""
        if budget_left:  # not idempotent, and it may have reached the server: caller decides
            exc.message += f" ({exc.method} is not resent blindly)"
            return exc
        if isinstance(exc, NotSent):  # the budget ran out and nothing ever got through
            exc = ServerUnreachable(exc.message, method=exc.method, url=exc.url, status=None)
        if attempts > 1:
            exc.message += f" (gave up after {attempts} attempts)"
        return exc

    async def _wait_retry(
        self, method: str, url: str, reason: str, attempt: int, delay: float
    ) -> None:
        self.retrying(method, url, reason, attempt, delay)
        await anyio.sleep(delay)

    async def _send_once(
        self,
        method: str,
        url: str,
        cls: str,
        *,
        json: Any,
        body: BodyFactory | None,
        size: int | None,
        params: Mapping[str, str] | None,
    ) -> Response:
        await self.limiter.acquire(cls)
        self.counters.requests += 1
        if method in WRITE_METHODS:
            self.counters.writes += 1
        headers = {"Accept": "application/json"}
        data: CountedBody | None = None
        if body is not None:
            # Hazard: a retried upload must start again from byte 0 with a fresh md5, so the
            # body is rebuilt from its factory on every attempt.
            headers["Content-Type"] = "application/octet-stream"
            if size is not None:
                headers["Content-Length"] = str(size)
            data = CountedBody(body(), size)
        elif json is not None:
            headers["Content-Type"] = "application/json"
        sent_at, sent_wall = time.monotonic(), time.time()
        try:
            async with self.session.request(
                method,
                with_query(url, params),
                json=json if body is None else None,
                data=data,
                headers=headers,
                allow_redirects=False,  # a redirect could carry the token elsewhere
            ) as r:
                text = await r.text(errors="replace")
                self.limiter.observe(r.headers, cls, sent_wall)
                if (pause := self.limiter.answered(r.status)) > 0:
                    # Most answers lately were 502/503/504: congestion, the batch slows down.
                    self.report(Paused(pause, f"HTTP {r.status} on most answers lately"))
                    if self.flow is not None:
                        self.flow.congestion()
                self.clock.observe(r.headers.get("Date"), datetime.now(UTC))
                payload: Any = None
                if text and "json" in (r.content_type or ""):
                    try:
                        payload = jsonlib.loads(text)
                    except ValueError:
                        payload = None
                resp = Response(method, url, r.status, payload, dict(r.headers))
                if self.flow is not None and body is None and r.status < 500 and r.status != 429:
                    # A small call's round trip: the controller's queueing signal (uploads
                    # are left out, their time is their size).
                    kind = call_kind(method, urlsplit(url).path)
                    self.flow.sample(kind, time.monotonic() - sent_at)
                if payload is None and text:
                    resp = Response(method, url, r.status, {"_text": text[:2000]}, resp.headers)
                return resp
        except (TimeoutError, aiohttp.ClientError) as exc:
            if data is not None and data.error is not None:
                # The body failed, not the connection (aiohttp wraps what the body raised).
                if isinstance(data.error, UploaderError):
                    raise data.error from None
                raise UploaderError(f"cannot read the request body: {data.error}") from None
            raise transport_error(exc, method=method, url=url, body=data) from None
        finally:
            if data is not None:
                # aiohttp's body writer may still be inside the generator (it is being
                # cancelled and will close it itself); then aclose() refuses, harmlessly.
                with contextlib.suppress(RuntimeError):
                    await data.aclose()

    def check_origin(self, method: str, url: str) -> None:
        """Refuse, before sending, any URL outside the origin of ``--url``."""
        if origin_of(url) != self.origin:
            raise UnsafeLink(
                f"the server gave a link to {origin_of(url)}, not to {self.origin} (--url); "
                "not sending the token there. Check the server's SITE_API_URL / proxy setup",
                method=method,
                url=url,
                status=None,
            )

    def redirected(self, resp: Response) -> ApiError:
        target = resp.headers.get("Location", "")
        cls: type[ApiError] = PermanentApiError
        text = f"{resp.method} redirected to {target or '(no Location)'}; redirects are not "
        text += "followed (use the final URL as --url)"
        if target and origin_of(target) not in ("", self.origin):
            cls = UnsafeLink
            text = f"the server redirected to {origin_of(target)}, not to {self.origin} "
            text += "(--url); not following it with the token"
        return cls(text, method=resp.method, url=resp.url, status=resp.status)

    def error_for(self, resp: Response) -> ApiError:
        """The error for a refused request, with the server's own words."""
        raw = resp.data if isinstance(resp.data, dict) else {}
        message, errors = server_text(raw if "_text" not in raw else None, raw.get("_text", ""))
        text = f"{resp.method} refused" if resp.status < 500 else "server error"
        kwargs: dict[str, Any] = dict(
            method=resp.method,
            url=resp.url,
            status=resp.status,
            server_message=message,
            server_errors=errors,
        )
        denied = (
            resp.status in (401, 403)
            and resp.method in WRITE_METHODS
            and (resp.status == 401 or (message or "").startswith("Permission denied"))
        )
        self.denied_in_a_row = self.denied_in_a_row + 1 if denied else 0
        # The token is refused when no write has worked yet, or when writes that used to
        # work are now refused several times in a row (revoked or expired mid-run).
        if denied and (self.writes_ok == 0 or self.denied_in_a_row >= DENIED_IN_A_ROW):
            return AuthRefused(
                "the server refused the token (INVENIO_TOKEN / --token-file): check that it is "
                "valid, not expired or revoked, and belongs to this server",
                **kwargs,
            )
        if is_transient_status(resp.status):
            self.counters.gave_up += 1
            return TransientApiError(text, **kwargs)
        return PermanentApiError(text, **kwargs)
