"""One run at a time per state directory.

Two runs sharing a state directory would both trust the journal, make duplicate drafts and
overwrite each other's entries. So a run takes this lock before it sends anything and holds it
for its life; a second run is refused at once with a message naming the holder.

``flock`` on ``<state>/lock`` first: the kernel drops it when the holder dies, even by SIGKILL,
so a crash never blocks the next run. Where the file system refuses flock (NFS or Lustre
mounted without it), the lock is the existence of ``<state>/lock.held`` (O_CREAT|O_EXCL).
Nothing removes that when its holder dies, so it can go stale: from this host when its pid is
gone, from another host when its mtime is older than ``stale_after`` (the holder calls
``refresh()`` every ``refresh_interval`` seconds).

Hazards:
- Some NFS mounts (``local_lock=flock``) accept flock but only lock on the local client; on
  such mounts, or when hosts mount the share differently, pass ``use_flock=False`` everywhere:
  the two mechanisms do not see each other.
- flock belongs to the open file description: a forked child inherits it and keeps the lock
  until it exits too. A second StateLock in the same process is refused, like another process.
- Cross-host staleness compares the NFS server's mtime with the local clock: skew between
  them must stay well below ``stale_after``. Two machines with the same hostname defeat the
  pid check; a reused pid keeps a dead holder's lock "alive" until that process ends.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import ConfigError, StateLocked

MODE_FLOCK = "flock"
MODE_FILE = "exclusive-file"
# flock errnos meaning "this file system cannot flock", not "someone else holds it".
FLOCK_UNSUPPORTED = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})
Info = dict[str, Any]


class StateLock:
    """Exclusive use of ``directory`` for one run; a context manager or acquire()/release()."""

    def __init__(
        self,
        directory: Path,
        purpose: str = "upload",
        *,
        use_flock: bool | None = None,  # None: flock, falling back where the fs refuses it
        stale_after: float = 600.0,
    ) -> None:
        self.directory = Path(directory)
        self.purpose = purpose
        self.use_flock = use_flock
        self.stale_after = stale_after
        self.path = self.directory / "lock"
        self.held_path = self.directory / "lock.held"
        self.takeover_path = self.directory / "lock.takeover"
        self.mode: str | None = None  # MODE_FLOCK or MODE_FILE while held
        self.token = uuid.uuid4().hex  # tells our lock.held from a successor's
        self._fd: int | None = None

    @property
    def refresh_interval(self) -> float:
        """How often the holder must call refresh(): a tenth of stale_after (60 s by default)."""
        return self.stale_after / 10

    def _info(self, mode: str) -> bytes:
        started = datetime.now(UTC).isoformat(timespec="seconds")
        info = {"host": socket.gethostname(), "pid": os.getpid(), "started": started}
        info |= {"purpose": self.purpose, "mode": mode, "token": self.token}
        return json.dumps(info).encode()

    def acquire(self) -> StateLock:
        """Take the lock or raise StateLocked naming the holder; ConfigError if it cannot lock."""
        if self.mode is not None:
            raise RuntimeError(f"state lock on {self.directory} is already held by this object")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if self.use_flock is False or not self._acquire_flock():
                self._acquire_file()
        except OSError as exc:  # unwritable or missing state directory: a usage problem
            raise ConfigError(f"cannot lock the state in {self.directory}: {exc}") from exc
        return self

    def _acquire_flock(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._refused(_read(self.path)) from None
        except OSError as exc:
            os.close(fd)
            if self.use_flock is None and exc.errno in FLOCK_UNSUPPORTED:
                return False
            raise
        # A refused run may read between truncate and write and find nothing: it then says
        # "holder details unreadable"; the lock itself is never in doubt.
        os.ftruncate(fd, 0)
        os.pwrite(fd, self._info(MODE_FLOCK), 0)
        os.fsync(fd)
        self._fd, self.mode = fd, MODE_FLOCK
        return True

    def _acquire_file(self) -> None:
        for _ in range(3):  # a lost takeover race re-examines the new holder
            if self._create():
                self.mode = MODE_FILE
                return
            seen = _peek(self.held_path)
            if seen is None:  # released between our create and our read: try again
                continue
            info = _read(self.held_path, seen)
            age = time.time() - seen[1].st_mtime
            if not self._stale(info, age):
                note = ""
                if info is None or info.get("host") != socket.gethostname():
                    note = f"; its {self.held_path.name} was refreshed {age:.0f} s ago"
                    note += f" and counts as abandoned after {self.stale_after:.0f} s"
                raise self._refused(info, note)
            if self._take_over(seen):
                self.mode = MODE_FILE
                return
        raise self._refused(_read(self.held_path))

    def _create(self) -> bool:
        """O_EXCL create of lock.held, complete and fsynced; False if it exists."""
        try:
            fd = os.open(self.held_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, self._info(MODE_FILE))
            os.fsync(fd)
        except OSError:  # disk full: leave no empty lock behind to block others
            os.close(fd)
            os.unlink(self.held_path)
            raise
        os.close(fd)
        return True

    def _stale(self, info: Info | None, age: float) -> bool:
        pid = info.get("pid") if info else None
        if info is None or info.get("host") != socket.gethostname() or not isinstance(pid, int):
            # Another host's (or an unreadable) lock: only its refreshes say it is alive.
            return age > self.stale_after
        if pid <= 0:  # os.kill(0 or -1) would probe whole process groups: never trust it
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            pass
        return False

    def _take_over(self, seen: tuple[bytes, os.stat_result]) -> bool:
        """Replace the stale lock.held we examined; True if we now hold the lock.

        Unlink-then-create alone is racy: two contenders both judge the same file stale, the
        first replaces it, the second unlinks the first's fresh lock. So the takeover itself is
        won by an O_EXCL create of lock.takeover, and the winner re-checks that lock.held is
        still the very file it judged (inode, mtime, content) before unlinking it. A plain
        acquirer slipping in between unlink and create wins by O_EXCL; we then lose cleanly.
        """
        try:
            fd = os.open(self.takeover_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            # A contender died mid-takeover (milliseconds long). Remaining race: two runs may
            # both judge that marker stale, and the second unlinks the first's fresh marker.
            marker = _peek(self.takeover_path)
            if marker and time.time() - marker[1].st_mtime > self.stale_after:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.takeover_path)
            return False
        os.close(fd)
        try:
            now = _peek(self.held_path)
            if now is not None:
                if _identity(now) != _identity(seen):
                    return False  # refreshed or already taken over: not the file we judged
                os.unlink(self.held_path)
            return self._create()
        finally:
            with contextlib.suppress(FileNotFoundError):  # see the remaining race above
                os.unlink(self.takeover_path)

    def refresh(self) -> None:
        """Show other hosts the holder is alive (file mode; a no-op under flock).

        Call it at least every ``refresh_interval`` seconds. Raises StateLocked if the lock
        was taken over meanwhile (we stalled past stale_after): the run must stop.
        """
        if self.mode != MODE_FILE:
            return
        info = _read(self.held_path)
        if info is None or info.get("token") != self.token:
            raise StateLocked(
                f"lost the lock on the state in {self.directory} after this run stalled: "
                f"now held by {self._describe(info)}"
            )
        os.utime(self.held_path)

    def release(self) -> None:
        """Give the lock up; idempotent. Never raises: it runs on error paths."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # no stale holder details for the next reader
            os.close(self._fd)  # closing drops the flock
            self._fd = None
        elif self.mode == MODE_FILE:
            # Check-then-unlink: a successor could only slip in if we had stalled past
            # stale_after, and then this unlink is the hazard refresh() exists to prevent.
            with contextlib.suppress(OSError):  # left behind: stale once our pid is gone
                info = _read(self.held_path)
                if info is not None and info.get("token") == self.token:
                    os.unlink(self.held_path)
        self.mode = None

    def _describe(self, info: Info | None) -> str:
        if not info:
            return "holder details unreadable"
        started = str(info.get("started"))
        with contextlib.suppress(ValueError):
            started = datetime.fromisoformat(started).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"pid {info.get('pid')} on host {info.get('host')}, started {started}, "
            f"purpose {info.get('purpose')!r}"
        )

    def _refused(self, info: Info | None, note: str = "") -> StateLocked:
        return StateLocked(
            f"another run holds the state in {self.directory} ({self._describe(info)}{note}): "
            "wait for it to end, or stop it"
        )

    def __enter__(self) -> StateLock:
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _peek(path: Path) -> tuple[bytes, os.stat_result] | None:
    """Content and stat of one open of ``path`` (so they describe the same file), or None."""
    try:
        with open(path, "rb") as f:
            return f.read(65536), os.fstat(f.fileno())
    except FileNotFoundError:
        return None


def _identity(seen: tuple[bytes, os.stat_result]) -> tuple[bytes, int, int]:
    return seen[0], seen[1].st_ino, seen[1].st_mtime_ns


def _read(path: Path, seen: tuple[bytes, os.stat_result] | None = None) -> Info | None:
    """Holder details from ``path`` (or from what _peek saw of it); None if gone or unreadable."""
    seen = seen or _peek(path)
    try:
        info = json.loads(seen[0]) if seen else None
    except ValueError:  # empty or torn: being written, or its writer died
        return None
    return info if isinstance(info, dict) else None
