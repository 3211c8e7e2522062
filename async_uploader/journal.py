"""Per-record journal: what is known to exist on the server, written before the next step.

One small JSON file per record folder in the server's folder of the state root (see
``state.py``). Each write goes to a temporary file, is fsync'd, then atomically renamed over
the old one, so a kill at any moment leaves either the old or the new state, never a torn
file. The directory itself is fsync'd when an entry is first made and before a create or a
share is sent: after a power cut those entries must not read as older, or a folder would
look new and be created again without a search.

Formats: version 2 (this one) tracks whose clock timed a create attempt; version 1 entries
are read and migrated on load (``from_json``), never treated as unreadable. An entry from a
newer tool is refused for its folder (``EntryTooNew``) rather than guessed at.

The journal is a strong hint, not the truth: a rerun reconciles it with the server (the
draft's file list, ``GET /api/records/{id}``). An unreadable entry is reported and treated
as "unknown", never a crash.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .errors import JournalWriteFailed

VERSION = 2

# Phases, in the order a record goes through them.
NEW = "new"
UNKNOWN = "unknown"  # the journal entry was unreadable: the server decides
CREATING = "creating"  # POST /api/records sent; its outcome is unknown until it answers
DRAFT = "draft"  # the draft exists (draft_id known)
SHARING = "sharing"  # publish / submit-review sent; outcome unknown until it answers
IN_REVIEW = "in-review"  # submitted to a community that reviews before inclusion
PUBLISHED = "published"
DONE_PHASES = frozenset({PUBLISHED, IN_REVIEW})


def utcnow() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class FileState:
    """A file the server has committed, and the local file it came from."""

    key: str
    size: int
    mtime_ns: int
    md5: str


@dataclass(frozen=True)
class RecordState:
    folder: str
    phase: str = NEW
    fingerprint: str = ""  # of the local folder when the current draft/record was made
    metadata_sha: str = ""  # of record_metadata.json as last sent to the draft
    draft_id: str | None = None
    links: dict[str, Any] | None = None  # the draft-creation `links`, as records_links.json wants
    record_url: str | None = None
    create_started: str | None = None  # ISO time the latest create was sent
    create_first: str | None = None  # ISO time the first create of this folder was sent
    clock: str = "server"  # whose clock timed them: "server" (Date header) or "local" (v1)
    sweep_from: str | None = None  # a create was resent: look for its lost twin from here
    title: str | None = None
    files: dict[str, FileState] = field(default_factory=dict)
    last_error: str | None = None
    attempts: int = 0
    updated: str | None = None

    def evolve(self, **changes: Any) -> RecordState:
        return replace(self, updated=utcnow(), **changes)

    def with_file(self, state: FileState) -> RecordState:
        return self.evolve(files={**self.files, state.key: state})

    @property
    def done(self) -> bool:
        return self.phase in DONE_PHASES

    def to_json(self) -> dict[str, Any]:
        # Shallow on purpose (not dataclasses.asdict, which deep-copies): this runs on the
        # event loop for every journal write, and json.dumps only reads the values.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["version"] = VERSION
        data["files"] = [
            {"key": f.key, "size": f.size, "mtime_ns": f.mtime_ns, "md5": f.md5}
            for f in self.files.values()
        ]
        return data

    @classmethod
    def from_json(cls, data: Any) -> RecordState:
        if not isinstance(data, dict) or not isinstance(data.get("version"), int):
            raise ValueError("not a journal entry")
        version = data.pop("version")
        if version > VERSION:
            raise EntryTooNew(version)
        if version == 1:  # v1 timed attempts with the local clock, and kept only the latest
            data["create_first"] = data.get("create_started")
            data["clock"] = "local"
        files = {f["key"]: FileState(**f) for f in data.pop("files", [])}
        return cls(files=files, **data)


class EntryTooNew(ValueError):
    """An entry written by a newer async-uploader: its folder is left alone."""

    def __init__(self, version: int):
        super().__init__(
            f"journal entry of format {version}, newer than this tool's {VERSION}: "
            "upgrade async-uploader (the folder is left alone)"
        )


_FIELDS = tuple(f.name for f in fields(RecordState))


def entry_name(folder: str) -> str:
    """File name for a folder's entry: safe on every file system, reversible enough to read."""
    if folder.isalnum() and folder.isascii():  # the common case ("0", "run12"): no quoting
        return folder + ".json"
    return quote(folder, safe="") + ".json"


class Journal:
    """Reads and writes the per-record entries of one state directory."""

    def __init__(self, state_dir: Path):
        self.dir = state_dir
        self._known: set[str] = set()  # folders whose entry file is known to exist
        _umask()  # read now, on the caller's thread, before saves run in worker threads

    def path_for(self, folder: str) -> Path:
        return self.dir / entry_name(folder)

    def load(self, folder: str) -> tuple[RecordState | None, str | None]:
        """The entry, or (None, warning) when it is missing or unreadable.

        Raises ``EntryTooNew`` for an entry of a newer format.
        """
        path = os.path.join(self.dir, entry_name(folder))  # str paths: this runs per folder
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"journal entry {path} unreadable ({exc.strerror}); checking the server"
        try:
            state = RecordState.from_json(json.loads(raw))
        except EntryTooNew:
            raise
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return None, f"journal entry {path} is corrupt ({exc}); checking the server"
        if state.folder != folder:
            return None, f"journal entry {path} belongs to {state.folder!r}; ignoring it"
        self._known.add(folder)
        return state, None

    def save(self, state: RecordState) -> None:
        """Atomic write (see ``atomic_write``)."""
        self.write(state.folder, self.encode(state), durable=self.needs_sync(state))

    def needs_sync(self, state: RecordState) -> bool:
        """Whether this write must survive a power cut (the directory is fsync'd): the
        entry's first write, and the steps whose loss would resend a create or a share."""
        return state.folder not in self._known or state.phase in (CREATING, SHARING)

    @staticmethod
    def encode(state: RecordState) -> bytes:
        return json.dumps(state.to_json(), ensure_ascii=False, separators=(",", ":")).encode()

    def write(self, folder: str, data: bytes, *, durable: bool = False) -> None:
        """Write an encoded entry: only system calls, so a worker thread running it does not
        hold the GIL against the event loop.

        Hazard: callers run this under a shielded cancel scope, so a cancellation never lands
        between the server change and its journal entry.
        """
        try:
            # The directory is fsync'd only when ``durable``: otherwise after a power cut a
            # rename may be lost and the entry read one step older, which a rerun reconciles
            # with the server (a lost `draft` step is found again; a lost file is re-checked).
            atomic_write(self.path_for(folder), data, sync_dir=durable)
            self._known.add(folder)
        except OSError as exc:
            raise JournalWriteFailed(
                f"cannot write the journal in {self.dir}: {exc.strerror or exc}",
                folder=folder,
            ) from exc


def atomic_write(target: Path, data: bytes, *, sync_dir: bool = True) -> None:
    """Temp file in the same directory, fsync, rename over the target, fsync the directory."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.suffix)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are ordinary files
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if sync_dir:
        _fsync_dir(target.parent)


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it: not from many threads)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
