"""InvenioRDM REST client over one aiohttp session: rate limit, retries, one exception map.

Every request goes through ``InvenioClient.request``, which

1. waits for the shared rate limiter,
2. sends the request (a streamed body is rebuilt from its factory on every attempt),
3. translates aiohttp exceptions into the ``errors`` tree (the only place that does),
4. feeds ``X-RateLimit-*`` headers and 429s back to the limiter,
5. retries what ``retry.decide`` calls transient, when the call may be resent.

Token safety: the bearer token goes only to the origin of ``--url``. Every URL (including
the links the server hands out) is checked before it is sent; a link elsewhere raises
``UnsafeLink`` without sending, and redirects are never followed by aiohttp.

Calls that are not idempotent (create draft, publish, submit-review, file init) pass
``resend=False``: they are resent only when the request provably did nothing (the
connection could not be opened, or the server answered 429). Any other failure is raised
for the pipeline, which first asks the server what happened (see ``pipeline.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import random
import re
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import anyio
import yarl

from .config import RetryConfig
from .errors import (
    ApiError,
    AuthRefused,
    PermanentApiError,
    ServerUnreachable,
    TransientApiError,
    UnsafeLink,
)
from .events import Paused, Reporter, Retrying
from .match import ServerClock
from .ratelimit import RateLimiter
from .results import Counters
from .retry import decide, is_transient_status, parse_retry_after

BodyFactory = Callable[[], AsyncIterator[bytes]]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DENIED_IN_A_ROW = 3  # refused writes in a row after some worked: the token was revoked


@dataclass(frozen=True)
class Response:
    method: str
    url: str
    status: int
    data: Any  # parsed JSON, or None
    headers: Mapping[str, str]

    @property
    def obj(self) -> dict[str, Any]:
        return self.data if isinstance(self.data, dict) else {}


class _NoAnswer(Exception):
    """Internal: the request got no HTTP answer. ``connected`` tells if it may have arrived."""

    def __init__(self, reason: str, *, connected: bool):
        super().__init__(reason)
        self.reason = reason
        self.connected = connected


def _describe(exc: BaseException) -> tuple[str, bool]:
    """The one aiohttp -> reason map. Returns (reason, request may have reached the server)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})", False
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection", True
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError):
        return "timed out waiting for the server", True
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "response body cut off", True
    if isinstance(exc, aiohttp.ClientOSError):
        return f"connection error ({exc.strerror or exc})", True
    if isinstance(exc, aiohttp.ClientError):
        return f"{type(exc).__name__}: {exc}", True
    return f"{type(exc).__name__}", True


_TITLE = re.compile(r"<title>(.*?)</title>", re.I | re.S)
_TAGS = re.compile(r"<[^>]+>")


def server_text(data: Any, text: str) -> tuple[str | None, Any]:
    """The server's ``message`` and ``errors``; for an HTML page (a proxy), its title."""
    if isinstance(data, dict):
        errors = data.get("errors")
        message = data.get("message")
        return (str(message) if message is not None else None), errors
    if text:
        title = _TITLE.search(text)
        plain = title.group(1) if title else _TAGS.sub(" ", text)
        return " ".join(plain.split())[:200] or None, None
    return None, None


class InvenioClient:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        limiter: RateLimiter,
        retry: RetryConfig,
        counters: Counters,
        reporter: Reporter,
        rand: Callable[[], float] = random.random,
    ):
        self.session = session
        self.api = api_url.rstrip("/")
        self.origin = origin_of(self.api)
        self.clock = ServerClock()
        self.limiter = limiter
        self.retry = retry
        self.counters = counters
        self.report = reporter
        self.rand = rand
        self.writes_ok = 0  # a 403 before any write worked means the token is refused
        self.denied_in_a_row = 0
        self.first_write = anyio.Event()  # the token is proven good: more records may start

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
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = await self._send_once(
                    method, url, json=json, body=body, size=size, params=params
                )
            except _NoAnswer as exc:
                may_resend = resend or not exc.connected
                decision = decide(
                    attempt=attempt,
                    elapsed=time.monotonic() - start,
                    status=None,
                    retry_after=None,
                    config=self.retry,
                    jitter=self.rand(),
                )
                if not (may_resend and decision.retry):
                    self.counters.gave_up += 1
                    cls = TransientApiError if exc.connected else ServerUnreachable
                    raise cls(exc.reason, method=method, url=url, status=None) from None
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
                pause = self.limiter.too_many_requests(retry_after, str(resp.obj.get("message")))
                self.counters.pauses += 1
                self.counters.paused_seconds += pause
                self.report(Paused(pause, f"HTTP 429 on {method} {url}"))
            # Non-idempotent calls are only resent when the server certainly did nothing.
            may_resend = resend or resp.status == 429
            decision = decide(
                attempt=attempt,
                elapsed=time.monotonic() - start,
                status=resp.status,
                retry_after=retry_after if resp.status != 429 else 0.0,
                config=self.retry,
                jitter=self.rand(),
            )
            if not (may_resend and decision.retry):
                raise self.error_for(resp)
            await self._wait_retry(method, url, f"HTTP {resp.status}", attempt, decision.delay)

    async def _wait_retry(
        self, method: str, url: str, reason: str, attempt: int, delay: float
    ) -> None:
        self.counters.retries += 1
        self.counters.by_reason[reason.split(" (")[0]] += 1
        self.report(Retrying(method, url, reason, attempt, delay))
        await anyio.sleep(delay)

    async def _send_once(
        self,
        method: str,
        url: str,
        *,
        json: Any,
        body: BodyFactory | None,
        size: int | None,
        params: Mapping[str, str] | None,
    ) -> Response:
        await self.limiter.acquire()
        self.counters.requests += 1
        if method in WRITE_METHODS:
            self.counters.writes += 1
        headers = {"Accept": "application/json"}
        data: Any = None
        if body is not None:
            # Hazard: a retried upload must start again from byte 0 with a fresh md5, so the
            # body is rebuilt from its factory on every attempt.
            headers["Content-Type"] = "application/octet-stream"
            if size is not None:
                headers["Content-Length"] = str(size)
            data = body()
        elif json is not None:
            headers["Content-Type"] = "application/json"
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
                self.limiter.observe(r.headers)
                self.clock.observe(r.headers.get("Date"), datetime.now(UTC))
                payload: Any = None
                if text and "json" in (r.content_type or ""):
                    try:
                        payload = jsonlib.loads(text)
                    except ValueError:
                        payload = None
                resp = Response(method, url, r.status, payload, dict(r.headers))
                if payload is None and text:
                    resp = Response(method, url, r.status, {"_text": text[:2000]}, resp.headers)
                return resp
        except (TimeoutError, aiohttp.ClientError) as exc:
            reason, connected = _describe(exc)
            raise _NoAnswer(reason, connected=connected) from None
        finally:
            if data is not None and hasattr(data, "aclose"):
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

    # -- endpoints ------------------------------------------------------------------------
    def url(self, *parts: str) -> str:
        return "/".join([self.api, *(quote(p, safe="") for p in parts)])

    async def create_draft(self, body: Mapping[str, Any]) -> Response:
        # Hazard: not idempotent. Every accepted POST makes a new draft.
        return await self.request("POST", self.url("records"), json=body, resend=False)

    async def get_draft(self, draft_id: str) -> Response:
        return await self.request("GET", self.url("records", draft_id, "draft"), accept=(404,))

    async def update_draft(self, draft_id: str, body: Mapping[str, Any]) -> Response:
        return await self.request("PUT", self.url("records", draft_id, "draft"), json=body)

    async def delete_draft(self, draft_id: str) -> Response:
        return await self.request("DELETE", self.url("records", draft_id, "draft"), accept=(404,))

    async def get_record(self, record_id: str) -> Response:
        return await self.request("GET", self.url("records", record_id), accept=(404, 410))

    async def list_files(self, files_url: str) -> Response:
        return await self.request("GET", files_url)

    async def init_files(self, files_url: str, entries: list[dict[str, Any]]) -> Response:
        # Hazard: not idempotent (a second init of a key gives 400 "already exists").
        return await self.request("POST", files_url, json=entries, resend=False)

    async def delete_file(self, file_url: str) -> Response:
        return await self.request("DELETE", file_url, accept=(404,))

    async def put_content(self, content_url: str, body: BodyFactory, size: int) -> Response:
        return await self.request("PUT", content_url, body=body, size=size, accept=(400, 404))

    async def commit(self, commit_url: str) -> Response:
        # A 500 here means "content missing" (contract 3.5): the caller re-PUTs.
        return await self.request("POST", commit_url, accept=(400, 404, 500))

    async def publish(self, publish_url: str) -> Response:
        # Hazard: not idempotent; after a lost answer, GET /api/records/{id} decides.
        return await self.request("POST", publish_url, resend=False)

    async def search_user_records(self, params: Mapping[str, str]) -> Response:
        return await self.request("GET", self.url("user", "records"), params=params)

    async def probe_own_records(self) -> Response:
        """The newest of the user's records (and the total). The user's own records need no
        right but a valid token, so a refusal here means the token is refused."""
        resp = await self.request(
            "GET",
            self.url("user", "records"),
            params={"size": "1", "sort": "newest"},
            accept=(401, 403),
        )
        if resp.status in (401, 403):
            raise AuthRefused(
                "the server refused the token (INVENIO_TOKEN / --token-file): check that it is "
                "valid, not expired or revoked, and belongs to this server",
                method=resp.method,
                url=resp.url,
                status=resp.status,
                server_message=resp.obj.get("message"),
            )
        return resp

    async def search_all_user_records(self, q: str, size: int = 100) -> list[dict[str, Any]]:
        """Every hit of ``q`` among the user's records and drafts, all pages read."""
        hits: list[dict[str, Any]] = []
        page = 1
        while True:
            resp = await self.search_user_records(
                {"q": q, "size": str(size), "page": str(page), "sort": "newest"}
            )
            found = resp.obj.get("hits", {})
            batch = found.get("hits", []) if isinstance(found, dict) else []
            hits.extend(h for h in batch if isinstance(h, dict))
            total = found.get("total") if isinstance(found, dict) else None
            if isinstance(total, dict):  # some servers give OpenSearch's {"value": n}
                total = total.get("value")
            more = bool(resp.obj.get("links", {}).get("next"))
            if isinstance(total, int):
                more = more or page * size < total
            # 10,000 results is the server's ceiling (page * size); the queries stay far below.
            if not batch or not more or page * size >= 10_000:
                return hits
            page += 1

    async def get_community(self, slug_or_id: str) -> Response:
        return await self.request("GET", self.url("communities", slug_or_id), accept=(404,))

    async def search_communities(self, slug: str) -> Response:
        return await self.request(
            "GET", self.url("communities"), params={"q": f"slug:{slug}", "size": "5"}
        )

    async def put_review(self, review_url: str, community_id: str) -> Response:
        return await self.request(
            "PUT",
            review_url,
            json={"receiver": {"community": community_id}, "type": "community-submission"},
        )

    async def submit_review(self, draft_id: str) -> Response:
        # Hazard: not idempotent (with direct inclusion it publishes).
        url = self.url("records", draft_id, "draft", "actions", "submit-review")
        return await self.request(
            "POST",
            url,
            json={"payload": {"content": "Uploaded with async-uploader", "format": "html"}},
            resend=False,
        )


def with_query(url: str, params: Mapping[str, str] | None) -> str | yarl.URL:
    """``url`` with ``params`` percent-encoded in full. yarl leaves ``'`` and ``$`` as they
    are, and the real InvenioRDM answers such a query string with 400 "Error trying to
    decode a non urlencoded string." (a title like "d'une cathode" would break searches)."""
    if not params:
        return url
    query = urlencode(params, quote_via=quote, safe="")
    return yarl.URL(f"{yarl.URL(url)}?{query}", encoded=True)


def origin_of(url: str) -> str:
    """``scheme://host:port`` with the default port made explicit; "" for a relative URL."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return ""
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower(), 0)
    return f"{parts.scheme.lower()}://{parts.hostname.lower()}:{port}"
