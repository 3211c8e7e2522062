"""A lossy reverse proxy in front of the real server: requests complete, chosen answers vanish.

The uploader must survive a lost answer to ``POST /api/records`` (and other calls) without
leaving duplicates or orphan drafts. The sandbox can simulate that, but only a proxy in front
of the real InvenioRDM shows it on the real code: the request is forwarded and completes on the
server, then the proxy drops the client's connection without a byte of answer.

Usage (from a test; the proxy runs its own event loop in a background thread)::

    with LossyProxy(real_server.url, [Lose("POST", "/api/records", every=2)]) as proxy:
        run the client with --url proxy.url
        proxy.count("POST", "/api/records"), proxy.lost_total()

Request bodies are streamed to the server (file content PUTs are never held in memory), and
so are non-JSON answers (downloads). JSON answers are read whole so the server's own origin
(``SITE_API_URL``: http://127.0.0.1:5000) can be rewritten to the proxy's, like the Location
and Link headers: a client that only follows links of its own ``--url`` origin keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal
from urllib.parse import urlsplit

import aiohttp
import yarl
from aiohttp import web
from multidict import CIMultiDict

# Hop-by-hop headers (RFC 9110 7.6.1) and those the proxy recomputes: never forwarded as is.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "accept-encoding",  # the proxy asks for identity bodies, so JSON can be rewritten
    "content-encoding",
}
CHUNK = 64 * 1024
RECORD_ID = re.compile(r"^[a-z0-9]{5}-[a-z0-9]{5}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FILE_TAIL = re.compile(r"/(content(/\d+)?|commit|parts/\d+)$")  # multipart: content/<n>


def path_pattern(path: str) -> str:
    """``/api/records/abcde-12345/draft/files/a/b.txt/content`` -> ``/api/records/{id}/draft/
    files/{key}/content``: stable counter keys whatever the ids and file keys were."""
    head, sep, rest = path.partition("/files/")
    parts = [
        "{id}" if RECORD_ID.match(p) else "{uuid}" if UUID.match(p) else p for p in head.split("/")
    ]
    out = "/".join(parts)
    if sep:
        tail = FILE_TAIL.search(rest)
        out += "/files/{key}" + (re.sub(r"\d+$", "{n}", tail.group(0)) if tail else "")
    return out


@dataclass
class Lose:
    """Which answers to lose: requests with ``method`` whose path fully matches ``path``.

    Of the matching requests (counted from 1), the n-th is lost when ``n % every == 0`` (so
    ``every=2`` loses the 2nd, 4th, ...), or when ``n in nth`` if ``nth`` is given; at most
    ``times`` in all. ``when="after"`` forwards the request, waits for the server's whole
    answer, then drops the client (the state changed, the client cannot know);
    ``"before"`` drops it without forwarding (nothing happened). ``how="close"`` closes the
    connection cleanly (FIN, no bytes); ``"reset"`` aborts it (RST).
    """

    method: str
    path: str
    every: int = 1
    nth: frozenset[int] | None = None
    times: int | None = None
    when: Literal["after", "before"] = "after"
    how: Literal["close", "reset"] = "close"
    seen: int = field(default=0, init=False)
    lost: int = field(default=0, init=False)

    def decide(self, method: str, path: str) -> bool:
        """Count a request against this rule; True if its answer is to be lost."""
        if method.upper() != self.method.upper() or not re.fullmatch(self.path, path):
            return False
        self.seen += 1
        if self.times is not None and self.lost >= self.times:
            return False
        hit = self.seen in self.nth if self.nth is not None else self.seen % self.every == 0
        if hit:
            self.lost += 1
        return hit


class LossyProxy:
    """The proxy; a context manager that starts it on a free loopback port in a thread."""

    def __init__(
        self,
        upstream: str,
        rules: Iterable[Lose] = (),
        server_origin: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream.rstrip("/")
        # The origin the server writes into its links (its SITE_API_URL), by default upstream's.
        parts = urlsplit(server_origin or self.upstream)
        self.server_origin = f"{parts.scheme}://{parts.netloc}"
        self.host, self.port = host, port
        self.url = ""  # set once listening: http://127.0.0.1:<port>
        self._lock = threading.Lock()
        self._rules = list(rules)
        self._counts: Counter[tuple[str, str]] = Counter()
        self._lost: Counter[tuple[str, str]] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- configuration and counters (thread-safe: tests read them from another thread) --

    def set_rules(self, rules: Iterable[Lose]) -> None:
        """Replace the loss rules (their counters start at zero)."""
        with self._lock:
            self._rules = list(rules)

    def count(self, method: str | None = None, pattern: str | None = None) -> int:
        """Forwarded (or dropped-before) requests, optionally of one method and path pattern
        (as :func:`path_pattern` writes it, e.g. ``/api/records/{id}/draft/actions/publish``)."""
        with self._lock:
            return sum(
                n
                for (m, p), n in self._counts.items()
                if (method is None or m == method.upper()) and (pattern is None or p == pattern)
            )

    def lost(self, method: str | None = None, pattern: str | None = None) -> int:
        """Answers lost, with the same filters as :meth:`count`."""
        with self._lock:
            return sum(
                n
                for (m, p), n in self._lost.items()
                if (method is None or m == method.upper()) and (pattern is None or p == pattern)
            )

    def counts(self) -> dict[str, int]:
        """``{"POST /api/records": 3, ...}``: a copy of every request counter."""
        with self._lock:
            return {f"{m} {p}": n for (m, p), n in sorted(self._counts.items())}

    def lost_counts(self) -> dict[str, int]:
        with self._lock:
            return {f"{m} {p}": n for (m, p), n in sorted(self._lost.items())}

    def reset_counts(self) -> None:
        with self._lock:
            self._counts.clear()
            self._lost.clear()

    # -- lifecycle --

    def __enter__(self) -> LossyProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> str:
        """Listen (in a daemon thread with its own loop); the proxy's URL."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="lossy-proxy", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout=30)
        return self.url

    def stop(self) -> None:
        if self._loop is None:
            return
        loop, self._loop = self._loop, None
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._stop(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        loop.close()

    async def _start(self) -> None:
        # No total timeout: uploads of large files may take long; the server has its own.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30)
        self._session = aiohttp.ClientSession(
            timeout=timeout, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        )
        app = web.Application(client_max_size=1024**4)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://{self.host}:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # -- the proxying --

    def _decide(self, method: str, path: str) -> Lose | None:
        with self._lock:
            key = (method.upper(), path_pattern(path))
            self._counts[key] += 1
            rule = next((r for r in self._rules if r.decide(method, path)), None)
            if rule is not None:
                self._lost[key] += 1
            return rule

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rule = self._decide(request.method, request.path)
        if rule is not None and rule.when == "before":
            return self._drop(request, rule)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Accept-Encoding"] = "identity"
        data: AsyncIterator[bytes] | None = None
        if request.body_exists:
            if request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
            data = request.content.iter_chunked(CHUNK)  # streamed, never read whole
        assert self._session is not None
        async with self._session.request(
            request.method,
            # As sent, byte for byte: re-parsing would un-escape %27 and the server refuses '.
            yarl.URL(self.upstream + request.raw_path, encoded=True),
            headers=headers,
            data=data,
            allow_redirects=False,
        ) as upstream:
            out_headers = self._response_headers(upstream)
            if self._is_json(upstream):
                body = await upstream.read()
                if rule is not None:
                    return self._drop(request, rule)
                body = body.replace(self.server_origin.encode(), self.url.encode())
                return web.Response(status=upstream.status, headers=out_headers, body=body)
            if rule is not None:
                while await upstream.content.read(CHUNK):  # let the server finish sending
                    pass
                return self._drop(request, rule)
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            if upstream.content_length is not None and request.method != "HEAD":
                response.content_length = upstream.content_length
            await response.prepare(request)
            async for chunk in upstream.content.iter_chunked(CHUNK):
                await response.write(chunk)
            await response.write_eof()
            return response

    def _response_headers(self, upstream: aiohttp.ClientResponse) -> CIMultiDict[str]:
        out: CIMultiDict[str] = CIMultiDict()
        for name, value in upstream.headers.items():  # repeated ones (Set-Cookie) kept
            if name.lower() in HOP_BY_HOP:
                continue
            if name.lower() in ("location", "link", "content-location"):
                value = value.replace(self.server_origin, self.url)
            out.add(name, value)
        return out

    @staticmethod
    def _is_json(upstream: aiohttp.ClientResponse) -> bool:
        ctype = upstream.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return ctype == "application/json" or ctype.endswith("+json")

    @staticmethod
    def _drop(request: web.Request, rule: Lose) -> web.StreamResponse:
        """Close the client's connection with no answer; aiohttp then has nothing to write."""
        transport = request.transport
        if transport is not None:
            if rule.how == "reset":
                sock = transport.get_extra_info("socket")
                if sock is not None:  # SO_LINGER 0: close() sends RST instead of FIN
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
        # Writing this to the closed transport fails quietly inside aiohttp (no error log).
        return web.Response(status=599)
