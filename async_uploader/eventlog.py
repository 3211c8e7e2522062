"""The event log: every progress event as one JSON line (NDJSON), for batch logs and dashboards.

``upload --events FILE`` hands this writer every event the library emits (beside the human
renderer). A dashboard tailing the file must see each line as it happens, so every line is
flushed at once; only ``BytesSent`` is coalesced (one ``progress`` line per file per second at
most), because a large upload emits one per chunk. The log is a by-product: a write error must
never sink the upload, so it is reported once on stderr and the log stops. The schema is in
the README ("Event log").
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from ._version import __version__
from .errors import ConfigError
from .events import (
    BatchDone,
    BatchStarted,
    BytesSent,
    Event,
    FileDone,
    Notice,
    Paused,
    RecordDone,
    RecordStarted,
    Retrying,
)

PROGRESS_INTERVAL = 1.0  # seconds between two progress lines of one file

KINDS: dict[type, str] = {
    BatchStarted: "plan",
    RecordStarted: "record_start",
    FileDone: "file_done",
    Retrying: "retry",
    Paused: "pause",
    Notice: "notice",
}


def utc_now() -> str:
    """ISO 8601 in UTC with milliseconds, e.g. ``2026-11-26T09:15:02.113Z``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class _Sending:
    """One file's bytes not yet written in a progress line (coalescing state)."""

    pending: int = 0  # bytes put on the wire since the file's last progress line
    taken_back: int = 0  # since then, bytes of failed attempts that will be sent again
    sent: int = 0  # this file's bytes so far in this run, net of what was taken back
    last: float = float("-inf")  # clock() of the file's last progress line


class EventLog:
    """A reporter writing one JSON object per event; opened and closed by the CLI.

    ``record_done`` comes once per record folder: as the library reports it, or, for folders
    the library settles without processing (done in an earlier run, invalid, changed) or
    that stopped with the batch, at the end just before ``batch_done`` (with ``"late": true``).
    So counting ``record_done`` lines by ``state`` gives the batch summary exactly.
    """

    def __init__(
        self,
        stream: TextIO,
        name: str,
        *,
        owned: bool = True,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], str] = utc_now,
        errors: TextIO | None = None,
    ):
        self.stream = stream
        self.name = name
        self.owned = owned  # closed by close(); stdout is not ours to close
        self.clock = clock
        self.now = now
        self.errors = errors  # where the one write-error message goes (None: sys.stderr)
        self.broken = False
        self._files: dict[tuple[str, str], _Sending] = {}
        self._reported: set[str] = set()  # folders with a record_done line

    @classmethod
    def open(cls, target: str, records_dir: Path | None = None) -> EventLog:
        """``-`` is stdout; a file is appended to (a resumed job keeps one log), and a
        ``batch_start`` line marks where this run begins. Unwritable: a usage error (exit 2)."""
        if target == "-":
            log = cls(sys.stdout, "stdout", owned=False)
        else:
            try:
                stream = open(target, "a", encoding="utf-8")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise ConfigError(f"cannot open the event log {target}: {exc.strerror}") from None
            log = cls(stream, target)
        log.write(
            "batch_start",
            {
                "version": __version__,
                "pid": os.getpid(),
                "records_dir": str(records_dir) if records_dir is not None else None,
            },
        )
        return log

    def __call__(self, event: Event) -> None:
        if self.broken:
            return
        try:
            self._handle(event)
        except Exception as exc:  # a log must never sink the upload
            self._fail(exc)

    def _handle(self, event: Event) -> None:
        if isinstance(event, BytesSent):
            sending = self._files.setdefault((event.folder, event.key), _Sending())
            # Kept apart, not netted: the report counts bytes on the wire and bytes resent.
            if event.n >= 0:
                sending.pending += event.n
            else:
                sending.taken_back -= event.n
            sending.sent += event.n
            if self.clock() - sending.last >= PROGRESS_INTERVAL:
                self._progress(event.folder, event.key, sending)
        elif isinstance(event, FileDone):
            done = self._files.pop((event.folder, event.key), None)
            if done is not None:
                self._progress(event.folder, event.key, done)
            self.write("file_done", asdict(event))
        elif isinstance(event, RecordDone):
            self._drain(event.result.folder)
            self._reported.add(event.result.folder)
            self.write("record_done", {**event.result.to_json(), "late": False})
        elif isinstance(event, BatchDone):
            self._drain(None)
            for record in event.result.records:  # written together: flushed with batch_done
                if record.folder not in self._reported:
                    self._reported.add(record.folder)
                    self.write("record_done", {**record.to_json(), "late": True}, flush=False)
            summary = event.result.to_json()
            del summary["records"]  # each is in its record_done line (and in --report)
            self.write("batch_done", {**summary, "exit_code": event.result.exit_code})
        else:
            self.write(KINDS.get(type(event), type(event).__name__), asdict(event))

    def _progress(self, folder: str, key: str, sending: _Sending) -> None:
        if sending.pending or sending.taken_back:
            data = {
                "folder": folder,
                "key": key,
                "bytes": sending.pending,
                "taken_back": sending.taken_back,
                "sent": sending.sent,
            }
            self.write("progress", data)
            sending.pending = sending.taken_back = 0
        sending.last = self.clock()

    def _drain(self, folder: str | None) -> None:
        """Write what is pending for a folder's files (all files for None), and forget them:
        a failed record's last bytes, or everything at batch end, so progress adds up."""
        for (name, key), sending in list(self._files.items()):
            if folder is None or name == folder:
                del self._files[(name, key)]
                self._progress(name, key, sending)

    def write(self, kind: str, fields: dict[str, Any], *, flush: bool = True) -> None:
        """One line: ``event`` and ``time`` first, then the event's fields."""
        if self.broken:
            return
        try:
            line = json.dumps({"event": kind, "time": self.now(), **fields}, default=str)
            self.stream.write(line + "\n")
            if flush:
                self.stream.flush()
        except Exception as exc:  # disk full, broken pipe, closed file
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Say it once, then stop writing; the upload goes on."""
        self.broken = True
        print(
            f"async-uploader: cannot write the event log ({self.name}): {exc}; "
            "the upload goes on without it",
            file=self.errors or sys.stderr,
            flush=True,
        )
        if self.stream is sys.stdout:  # a closed pipe: keep the exit from complaining again
            with contextlib.suppress(OSError, ValueError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def close(self) -> None:
        """Flush (and close a file we opened); an error here is reported like any other."""
        try:
            if not self.broken:
                self.stream.flush()
        except Exception as exc:  # as in write()
            self._fail(exc)
        if self.owned:
            with contextlib.suppress(OSError):
                self.stream.close()
