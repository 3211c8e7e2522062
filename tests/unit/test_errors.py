"""Errors say where, what and what the server said; HTML error pages are reduced to a line."""

from __future__ import annotations

import pytest

from async_uploader.client import server_text
from async_uploader.errors import ApiError, PermanentApiError, first_error, format_server_errors


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
