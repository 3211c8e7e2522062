"""The wire: aiohttp and URLs, translated once for the rest of the client.

``transport_error`` is the one place aiohttp exceptions become the ``errors`` tree, by how far
the request got (``NotSent``, ``BodyPartlySent``, ``NoAnswer``); ``disable_silent_resend``
makes sure aiohttp never resends a request on its own; ``with_query`` and ``origin_of`` build
and check URLs (the token only ever goes to the origin of ``--url``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import yarl

from .errors import (
    ApiError,
    BodyPartlySent,
    ConfigError,
    NoAnswer,
    NotSent,
    PermanentApiError,
)

BodyFactory = Callable[[], AsyncIterator[bytes]]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


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


# -- aiohttp's silent resend ------------------------------------------------------------
# aiohttp 3.10 (aio-libs/aiohttp#7363) made ClientSession resend an idempotent request (GET,
# PUT, DELETE, ...) once when a kept-alive connection fails under it (ClientOSError or
# ServerDisconnectedError), passing the same ``data`` again: a streamed body goes out
# half-consumed. The switch, ``ClientSession._retry_connection``, exists and is honoured from
# aiohttp 3.11.0 (#9141); setting it on 3.10 is a silent no-op. It is private, so its absence
# is an error, never a guess.
MIN_AIOHTTP = (3, 11)


def version_tuple(version: str) -> tuple[int, ...]:
    """The leading numbers of a version string: "3.11.0b0" -> (3, 11, 0)."""
    numbers = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(n) for n in numbers.group(0).split(".")) if numbers else ()


def disable_silent_resend(
    session: aiohttp.ClientSession, *, version: str = aiohttp.__version__
) -> None:
    """Switch off aiohttp's own resend of requests over a dropped kept-alive connection.

    Raises ``ConfigError`` (nothing sent, exit 2) when this aiohttp is older than 3.11 or has
    no ``ClientSession._retry_connection`` (a future release that renamed it): then resends
    could happen behind the tool's back, which the tool refuses to run with. Idempotent;
    ``InvenioClient`` calls it on the session it is given.
    """
    need = ".".join(map(str, MIN_AIOHTTP))
    if version_tuple(version) < MIN_AIOHTTP:
        raise ConfigError(
            f"aiohttp {version} is installed, but async-uploader needs aiohttp >= {need}, < 4: "
            "older releases resend a request on their own after a dropped connection "
            "(a half-sent upload included) and cannot be told not to. "
            f"Upgrade it: pip install 'aiohttp>={need},<4'"
        )
    # Declared by aiohttp itself (ATTRS, 3.11 to 3.14 and main), not merely assigned by
    # someone earlier: an assignment would make a renamed switch look present.
    declared = "_retry_connection" in getattr(type(session), "ATTRS", ())
    if not (declared and isinstance(getattr(session, "_retry_connection", None), bool)):
        raise ConfigError(
            f"aiohttp {version} has no ClientSession._retry_connection, the switch that stops "
            "it from resending a request on its own after a dropped connection; this release "
            f"is not supported yet. Install one that has it ({need} to 3.14 do): "
            f"pip install 'aiohttp>={need},<3.15'"
        )
    session._retry_connection = False


# -- the one aiohttp -> errors map -------------------------------------------------------
class CountedBody:
    """A streamed request body that remembers how far it got (for ``transport_error``).

    ``finished``: aiohttp asked past the last chunk, so every chunk was accepted by the
    connection. ``error``: the body itself failed (a file that shrank, a read error), which
    aiohttp reports as a connection error; the client raises this one instead.
    """

    def __init__(self, chunks: AsyncIterator[bytes], size: int | None):
        self.chunks = chunks
        self.size = size
        self.sent = 0
        self.finished = False
        self.error: BaseException | None = None

    def __aiter__(self) -> CountedBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self.chunks.__anext__()
        except StopAsyncIteration:
            self.finished = True
            raise
        except Exception as exc:
            self.error = exc
            raise
        self.sent += len(chunk)
        return chunk

    async def aclose(self) -> None:
        aclose = getattr(self.chunks, "aclose", None)
        if aclose is not None:
            await aclose()


def _os_text(exc: BaseException) -> str:
    error = getattr(exc, "os_error", None) or exc
    return str(getattr(error, "strerror", None) or error or type(exc).__name__)


def _mib(n: int) -> str:
    return f"{n} bytes" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def transport_error(
    exc: BaseException, *, method: str, url: str, body: CountedBody | None = None
) -> ApiError:
    """The one map from an aiohttp (or asyncio) exception to the ``errors`` tree.

    The phase decides the class: the connection could not be opened -> ``NotSent``; it
    broke while a streamed body was still being sent -> ``BodyPartlySent``; the request was
    sent whole (a small body goes out in one write) -> ``NoAnswer``. A URL aiohttp cannot
    use is a ``PermanentApiError``. Messages are for people; they never hold the token.
    """
    where: dict[str, Any] = {"method": method, "url": url, "status": None}
    if isinstance(exc, aiohttp.InvalidURL):
        return PermanentApiError(f"invalid URL ({exc})", **where)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return NotSent("cannot connect (timed out)", **where)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return NotSent(f"cannot connect (TLS certificate: {exc.certificate_error})", **where)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return NotSent(f"cannot connect ({_os_text(exc)})", **where)
    timed_out = isinstance(exc, TimeoutError)  # aiohttp.ServerTimeoutError included
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        detail = "server closed the connection"
    elif timed_out:
        detail = "timed out waiting for the server"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        detail = "response body cut off"
    elif isinstance(exc, OSError):  # ClientOSError, ClientConnectionResetError
        detail = f"connection error ({_os_text(exc)})"
    else:
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if body is not None and not body.finished:
        of = f" of {_mib(body.size)}" if body.size is not None else ""
        return BodyPartlySent(
            f"{detail} while the request body was being sent ({_mib(body.sent)}{of} handed over)",
            sent=body.sent,
            size=body.size,
            **where,
        )
    return NoAnswer(detail, timed_out=timed_out, **where)


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
