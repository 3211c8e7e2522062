"""One exception tree for the whole tool.

::

    UploaderError                      root: everything the tool raises on purpose
    ├── ConfigError                    bad options or environment; nothing was sent (exit 2)
    │   └── StateLocked                another run holds this batch's state (exit 2)
    ├── ChecksumMismatch               server md5 differs from the local one after a re-upload
    ├── ApiError                       the server answered with an error, or did not answer
    │   ├── TransientApiError          408/429/5xx, or no answer: retried, budget spent
    │   │   │                          (an HTTP status: ``reason`` is "HTTP 503")
    │   │   ├── NotSent                the connection could not be opened (refused, DNS, TLS,
    │   │   │   │                      connect timeout): the request certainly did nothing,
    │   │   │   │                      so any call may be resent                   "connect"
    │   │   │   └── ServerUnreachable  ... and that outlasted the retry budget (also BatchFatal)
    │   │   ├── BodyPartlySent         the connection broke while the request body was being
    │   │   │                          sent (a streamed upload cut off)            "body cut"
    │   │   └── NoAnswer               the request was sent whole, no answer came: the
    │   │                              connection closed or reset before the answer, the
    │   │                              answer cut off                              "no answer"
    │   │                              or no answer in time                        "timeout"
    │   └── PermanentApiError          other 4xx: the record fails with the server's message
    └── BatchFatal                     stops the whole batch early (exit 3)
        ├── AuthRefused                token refused on writes (403 before any write worked,
        │                              or several in a row: revoked mid-run)
        ├── CommunityNotFound          the --community slug does not exist on the server
        ├── ServerUnreachable          (see above)
        ├── UnsafeLink                 the server linked to another origin (or plain http
        │                              off loopback): the token is never sent there
        └── JournalWriteFailed         the journal cannot be written (disk full, read-only)

The phases follow httpx's model (``ConnectError`` / ``WriteError`` / ``ReadError``,
``ReadTimeout``): what matters for a resend is how far the request got. Only ``NotSent`` (and
a 429) proves that a call which is not idempotent did nothing; after ``BodyPartlySent`` or
``NoAnswer`` it may have worked, so such a call is not resent blindly (``retry.may_resend``).
Every transient error has a ``reason``: a short, stable key (``Reason``, or "HTTP <status>")
under which its resends are counted, as opposed to its message, which is for people.

Every error carries the context a person needs to act on it: the record folder, the file
key, and for API errors the HTTP method, URL, status and the server's own ``message`` and
``errors``. Folders refused by local validation are not errors but results (``Outcome.INVALID``
with every problem listed). aiohttp exceptions are translated into this tree in exactly one place
(``client.py``). No error ever holds the token: URLs never carry it (it travels in the
``Authorization`` header only) and request headers are not kept.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any


class Reason(StrEnum):
    """Why a call was sent again: the stable keys of ``Retrying.reason`` and of the report's
    ``retries_by_reason`` (an HTTP status is counted as "HTTP <status>", see ``http_reason``)."""

    CONNECT = "connect"  # NotSent: the connection could not be opened
    BODY_CUT = "body cut"  # BodyPartlySent: the connection broke while sending the body
    NO_ANSWER = "no answer"  # NoAnswer: closed or reset before the answer, answer cut off
    TIMEOUT = "timeout"  # NoAnswer: no answer within the read timeout
    STALLED = "upload stalled"  # transfer.py: no chunk accepted for --stall-timeout
    NOT_KEPT = "content not kept"  # transfer.py: the server did not keep a PUT's content
    CONTENT_MISSING = "content missing"  # transfer.py: commit said the content is missing
    CHECKSUM = "checksum mismatch"  # transfer.py: the server's md5 differs; uploaded again


def http_reason(status: int) -> str:
    """The counting key of a resend after an HTTP answer, e.g. "HTTP 503"."""
    return f"HTTP {status}"


class UploaderError(Exception):
    """Root of the tree. ``folder`` and ``key`` locate the problem in the input."""

    def __init__(self, message: str, *, folder: str | None = None, key: str | None = None):
        super().__init__(message)
        self.message = message
        self.folder = folder
        self.key = key

    def where(self) -> str:
        parts = []
        if self.folder is not None:
            parts.append(f"folder {self.folder}")
        if self.key is not None:
            parts.append(f"file {self.key!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.where()
        return f"{where}: {self.message}" if where else self.message


class ConfigError(UploaderError):
    """Usage or configuration problem found before any request was sent."""


class StateLocked(ConfigError):
    """Another run holds the batch's state; this one sent nothing and stops (exit 2)."""


class ChecksumMismatch(UploaderError):
    def __init__(self, *, folder: str, key: str, local_md5: str, server_checksum: str | None):
        super().__init__(
            f"server checksum {server_checksum} differs from local md5:{local_md5} "
            "after a second upload",
            folder=folder,
            key=key,
        )
        self.local_md5 = local_md5
        self.server_checksum = server_checksum


class ApiError(UploaderError):
    """The server refused a request, or could not be reached.

    ``status`` is None when no HTTP answer arrived (connection error, timeout).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None,
        server_message: str | None = None,
        server_errors: Any = None,
        folder: str | None = None,
        key: str | None = None,
    ):
        super().__init__(message, folder=folder, key=key)
        self.method = method
        self.url = url
        self.status = status
        self.server_message = server_message
        self.server_errors = server_errors

    def with_context(self, *, folder: str | None = None, key: str | None = None) -> ApiError:
        """Fill in the record folder and file key once the caller knows them."""
        if self.folder is None:
            self.folder = folder
        if self.key is None:
            self.key = key
        return self

    unanswered = "no answer"  # what ``__str__`` says in place of a status when none came

    def __str__(self) -> str:
        head = super().__str__()
        status = self.unanswered if self.status is None else f"HTTP {self.status}"
        text = f"{head} [{self.method} {self.url} -> {status}]"
        if self.server_message:
            text += f" server says: {self.server_message!r}"
        if self.server_errors:
            text += f" errors: {format_server_errors(self.server_errors)}"
        return text


class TransientApiError(ApiError):
    """Worth retrying: 408, 429, 5xx (JSON or a proxy's HTML), dropped connections.

    ``reason`` is the stable counting key: "HTTP <status>" for an answer; the subclasses
    below (no answer) set their own.
    """

    reason: str = Reason.NO_ANSWER

    def __init__(self, message: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        if self.status is not None:
            self.reason = http_reason(self.status)


class NotSent(TransientApiError):
    """The connection could not be opened: the request certainly did nothing on the server,
    so any call, even one that is not idempotent, may be sent again."""

    reason = Reason.CONNECT
    unanswered = "not sent"


class BodyPartlySent(TransientApiError):
    """The connection broke while the request body was being sent.

    ``sent`` is how many body bytes had been handed to the connection, of ``size``."""

    reason = Reason.BODY_CUT
    unanswered = "body cut off"

    def __init__(self, message: str, *, sent: int, size: int | None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.sent = sent
        self.size = size


class NoAnswer(TransientApiError):
    """The request was sent whole, but no answer came (the connection was closed or reset
    before the answer, the answer was cut off, or it did not come in time): the server may
    have acted on it."""

    def __init__(self, message: str, *, timed_out: bool = False, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.reason = Reason.TIMEOUT if timed_out else Reason.NO_ANSWER


class PermanentApiError(ApiError):
    """Not worth retrying: the request itself is wrong (4xx other than 408/429)."""


class BatchFatal(UploaderError):
    """Stops the whole batch: retrying other records cannot succeed either."""


class AuthRefused(PermanentApiError, BatchFatal):
    pass


class CommunityNotFound(PermanentApiError, BatchFatal):
    pass


class ServerUnreachable(NotSent, BatchFatal):
    """The connection could not be opened, again and again, for the whole retry budget."""


class JournalWriteFailed(BatchFatal):
    pass


def format_server_errors(errors: Any) -> str:
    """Render the server's ``errors`` (a list of {field, messages} or a plain string)."""
    if isinstance(errors, str):
        return errors
    if isinstance(errors, list):
        parts = []
        for item in errors:
            if isinstance(item, dict) and "field" in item:
                msgs = item.get("messages") or item.get("message") or []
                if isinstance(msgs, str):
                    msgs = [msgs]
                parts.append(f"{item['field']}: {'; '.join(str(m) for m in msgs)}")
            else:
                parts.append(json.dumps(item, ensure_ascii=False))
        return " | ".join(parts)
    return json.dumps(errors, ensure_ascii=False)


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report for a group from a task group: batch-fatal first, then ours.

    Anything else (a bug, a cancellation) is returned as the whole group, unchanged.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for kind in (BatchFatal, UploaderError):
        for leaf in leaves:
            if isinstance(leaf, kind):
                return leaf
    return group


class UnsafeLink(PermanentApiError, BatchFatal):
    """A link from the server points away from the origin of ``--url``.

    Following it would hand the bearer token to another host (or send it unencrypted), so
    the request is never sent; every record would meet the same link, so the batch stops.
    """
