"""What a content PUT's answer means, on each InvenioRDM series (pure table)."""

from __future__ import annotations

from typing import Any

import pytest

from async_uploader.transfer import content_kept

V12_AFTER_COMMIT = {"status": 400, "message": "The file upload transfer failed, please try again."}


@pytest.mark.parametrize(
    ("status", "body", "kept"),
    [
        (200, {"key": "a", "status": "pending"}, True),
        # v13+: a PUT onto a committed entry is "200 with errors", and the entry is removed
        (200, {"key": "a", "errors": "File upload transfer failed."}, False),
        # v12: the same case is a plain 400; the entry is removed all the same
        (400, V12_AFTER_COMMIT, False),
        (400, {"status": 400, "message": "File is smaller than expected."}, False),
        (404, {"status": 404, "message": "Not found."}, False),
        # a refusal that resending cannot fix: reported with the server's words
        (400, {"status": 400, "message": "A validation error occurred."}, None),
        (400, b"<html>Bad Request</html>", None),
        (403, {"status": 403, "message": "Permission denied."}, None),
        (413, {}, None),
    ],
)
def test_content_kept(status: int, body: Any, kept: bool | None) -> None:
    assert content_kept(status, body) is kept
