"""Errors say where, what and what the server said; HTML error pages are reduced to a line;
an aiohttp exception becomes the error of its phase (not sent, body cut, no answer)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from async_uploader.errors import (
    ApiError,
    BatchFatal,
    BodyPartlySent,
    NoAnswer,
    NotSent,
    PermanentApiError,
    ServerUnreachable,
    TransientApiError,
    first_error,
    format_server_errors,
)
from async_uploader.retry import may_resend
from async_uploader.wire import MIN_AIOHTTP, server_text, transport_error, version_tuple


def test_api_error_names_folder_key_request_and_server_message() -> None:
    err = PermanentApiError(
        "POST refused",
        method="POST",
        url="https://x.org/api/records",
        status=400,
        server_message="A validation error occurred.",
        server_errors=[{"field": "metadata.title", "messages": ["Shorter than minimum length 3."]}],
    ).with_context(folder="12", key="raw/a.dat")
    text = str(err)
    for part in (
        "folder 12",
        "'raw/a.dat'",
        "POST https://x.org/api/records",
        "HTTP 400",
        "A validation error occurred.",
        "metadata.title: Shorter than minimum length 3.",
    ):
        assert part in text


def test_no_answer_is_said_plainly() -> None:
    err = ApiError("cannot connect", method="GET", url="u", status=None)
    assert "no answer" in str(err)


@pytest.mark.parametrize(
    ("data", "text", "message", "errors"),
    [
        ({"status": 400, "message": "Invalid value x."}, "", "Invalid value x.", None),
        (
            {"message": "m", "errors": "File upload transfer failed."},
            "",
            "m",
            "File upload transfer failed.",
        ),
        (
            None,
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            "",
            None,
        ),
        (None, "<html><body><h1>Service   Unavailable</h1></body></html>", "", None),
        (None, "", None, None),
    ],
)
def test_server_text(data: object, text: str, message: str | None, errors: object) -> None:
    got_message, got_errors = server_text(data, text)
    if message == "" and text:
        expected = "502 Bad Gateway" if "title" in text else "Service Unavailable"
        assert got_message == expected
    else:
        assert got_message == message
    assert got_errors == errors


def test_format_server_errors_shapes() -> None:
    assert format_server_errors("plain") == "plain"
    assert format_server_errors([{"field": "a", "messages": ["x", "y"]}, {"other": 1}]) == (
        'a: x; y | {"other": 1}'
    )


def test_first_error_prefers_batch_fatal_then_ours() -> None:
    from async_uploader.errors import AuthRefused

    ours = PermanentApiError("x", method="GET", url="u", status=404)
    fatal = AuthRefused("t", method="POST", url="u", status=403)
    assert first_error(BaseExceptionGroup("g", [ValueError(), ours, fatal])) is fatal
    assert first_error(BaseExceptionGroup("g", [ValueError(), ours])) is ours
    group = BaseExceptionGroup("g", [ValueError()])
    assert first_error(group) is group


# -- the one aiohttp -> errors map (client.transport_error) --------------------------------


def _key() -> Any:
    from aiohttp.client_reqrep import ConnectionKey

    fields: list[Any] = ["archive.example.org", 443, True, True]
    return ConnectionKey(*fields, *[None] * (len(ConnectionKey._fields) - len(fields)))


def _body(*, sent: int, finished: bool) -> Any:
    """A streamed body that got ``sent`` of 100 bytes out (``finished``: all of them)."""
    from async_uploader.wire import CountedBody

    async def nothing() -> AsyncIterator[bytes]:
        yield b""

    body = CountedBody(nothing(), 100)
    body.sent, body.finished = sent, finished
    return body


CUT = {"sent": 40, "finished": False}
WHOLE = {"sent": 100, "finished": True}
REFUSED = ConnectionRefusedError(111, "Connection refused")
CERT = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")

TRANSPORT_TABLE = [
    # exception, body, class, reason, may a POST (not idempotent) be resent?, words in str()
    (aiohttp.ClientConnectorError(_key(), REFUSED), None, NotSent, "connect", True,
     "cannot connect (Connection refused)"),
    (aiohttp.ClientConnectorDNSError(_key(), OSError(-2, "Name or service not known")), None,
     NotSent, "connect", True, "cannot connect (Name or service not known)"),
    (aiohttp.ClientConnectorCertificateError(_key(), CERT), None, NotSent, "connect", True,
     "cannot connect (TLS certificate: "),
    (aiohttp.ConnectionTimeoutError("Connection timeout"), None, NotSent, "connect", True,
     "cannot connect (timed out)"),
    # the connection could not be opened: nothing was sent, whatever the body says
    (aiohttp.ClientConnectorError(_key(), REFUSED), CUT, NotSent, "connect", True, "not sent"),
    (aiohttp.ServerDisconnectedError(), None, NoAnswer, "no answer", False,
     "server closed the connection"),
    (aiohttp.ServerDisconnectedError(), WHOLE, NoAnswer, "no answer", False, "no answer]"),
    (aiohttp.ServerDisconnectedError(), CUT, BodyPartlySent, "body cut", False,
     "server closed the connection while the request body was being sent (40 bytes of 100"),
    (aiohttp.ClientOSError(104, "Connection reset by peer"), None, NoAnswer, "no answer", False,
     "connection error (Connection reset by peer)"),
    (aiohttp.ClientOSError(32, "Broken pipe"), CUT, BodyPartlySent, "body cut", False,
     "body cut off"),
    (aiohttp.ClientConnectionResetError("Cannot write to closing transport"), None, NoAnswer,
     "no answer", False, "connection error (Cannot write to closing transport)"),
    (aiohttp.SocketTimeoutError("Timeout on reading data from socket"), None, NoAnswer,
     "timeout", False, "timed out waiting for the server"),
    (aiohttp.SocketTimeoutError(), CUT, BodyPartlySent, "body cut", False, "timed out"),
    (aiohttp.ServerTimeoutError(), WHOLE, NoAnswer, "timeout", False, "timed out"),
    (TimeoutError(), None, NoAnswer, "timeout", False, "timed out waiting for the server"),
    (aiohttp.ClientPayloadError("Response payload is not completed"), None, NoAnswer,
     "no answer", False, "response body cut off"),
    (aiohttp.ClientError("odd"), None, NoAnswer, "no answer", False, "ClientError: odd"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("exc", "body", "cls", "reason", "post_may_resend", "words"), TRANSPORT_TABLE
)
def test_transport_errors_by_phase(
    exc: BaseException,
    body: dict[str, Any] | None,
    cls: type[TransientApiError],
    reason: str,
    post_may_resend: bool,
    words: str,
) -> None:
    url = "https://archive.example.org/api/records"
    counted = _body(**body) if body is not None else None
    err = transport_error(exc, method="POST", url=url, body=counted)
    assert type(err) is cls
    assert isinstance(err, TransientApiError) and err.status is None
    assert err.reason == reason
    assert may_resend(err.reason, idempotent=False) is post_may_resend
    assert may_resend(err.reason, idempotent=True) is True
    assert words in str(err) and f"[POST {url} -> " in str(err)


def test_an_unusable_url_is_permanent() -> None:
    err = transport_error(aiohttp.InvalidURL("http://[::1"), method="GET", url="http://[::1")
    assert type(err) is PermanentApiError and "invalid URL" in str(err)


def test_body_partly_sent_says_how_far_it_got() -> None:
    err = transport_error(
        aiohttp.ServerDisconnectedError(),
        method="PUT",
        url="u",
        body=_body(sent=40, finished=False),
    )
    assert isinstance(err, BodyPartlySent) and (err.sent, err.size) == (40, 100)


@pytest.mark.parametrize(
    ("cls", "kwargs", "status_words", "reason"),
    [
        (NotSent, {}, "not sent", "connect"),
        (ServerUnreachable, {}, "not sent", "connect"),
        (BodyPartlySent, {"sent": 1, "size": 2}, "body cut off", "body cut"),
        (NoAnswer, {}, "no answer", "no answer"),
        (NoAnswer, {"timed_out": True}, "no answer", "timeout"),
    ],
)
def test_phase_classes_say_what_happened(
    cls: type[TransientApiError], kwargs: dict[str, Any], status_words: str, reason: str
) -> None:
    err = cls("m", method="GET", url="u", status=None, **kwargs)
    assert str(err) == f"m [GET u -> {status_words}]"
    assert err.reason == reason
    assert isinstance(err, TransientApiError)
    assert isinstance(err, BatchFatal) is (cls is ServerUnreachable)


@pytest.mark.parametrize(
    ("status", "reason"), [(503, "HTTP 503"), (429, "HTTP 429"), (None, "no answer")]
)
def test_transient_reason_of_an_answer(status: int | None, reason: str) -> None:
    assert TransientApiError("m", method="GET", url="u", status=status).reason == reason


@pytest.mark.parametrize(
    ("version", "numbers"),
    [("3.11.0", (3, 11, 0)), ("3.11.0b0", (3, 11, 0)), ("3.10.11", (3, 10, 11)),
     ("4.0.0a1", (4, 0, 0)), (" 3.14.5 ", (3, 14, 5)), ("dev", ())],
)  # fmt: skip
def test_version_tuple(version: str, numbers: tuple[int, ...]) -> None:
    assert version_tuple(version) == numbers
    assert (version_tuple(version) >= MIN_AIOHTTP) is (numbers >= (3, 11))
