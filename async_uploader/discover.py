r"""Stage 1: find the record folders under a root and the data files each one attaches.

Pure file-system reading (no network, no file contents read). Anything odd found on the way
(an escaping or broken symlink, an unreadable sub-directory) becomes a :class:`Problem` on the
record instead of an exception, so one bad folder never hides the others.

Which files are attached is decided by ``patterns.KeyFilter`` (gitignore rules).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from natsort import natsorted

from .errors import ConfigError
from .patterns import KeyFilter, one_line

METADATA_FILE = "record_metadata.json"
STATE_NAMES = frozenset({".upload_state", "records_links.json"})  # the tool's own state


@dataclass(frozen=True)
class Problem:
    """One finding about a record folder; ``key`` is a file key or a metadata field path."""

    folder: str
    message: str
    key: str | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"folder {self.folder}"
        if self.key is not None:
            where += f", {self.key}"
        text = f"{where}: {self.message}"
        if self.severity == "warning":
            text = "warning: " + text
        return one_line(text)


@dataclass(frozen=True)
class LocalFile:
    key: str  # relative POSIX path inside the record folder, e.g. "raw/run1.dat"
    path: Path  # absolute path to read (through in-folder symlinks, not resolved)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RecordFolder:
    name: str
    path: Path
    metadata_path: Path
    files: tuple[LocalFile, ...]  # sorted by key; never includes the top record_metadata.json
    problems: tuple[Problem, ...] = ()
    metadata_stamp: tuple[int, int] = (0, 0)  # size and mtime_ns of record_metadata.json


_Item = tuple[Path, str, tuple[str, ...]]  # directory, key prefix, directories on the way down


class _Walker:
    """Walks one record folder iteratively (no recursion limit on deep trees).

    Hot path for 10,000s of folders: one scandir per directory, one stat per file, Paths built
    by joining one name onto the parent's Path. Real paths are computed only for symlinks.
    """

    def __init__(self, name: str, path: Path, keep: KeyFilter) -> None:
        self.name = name
        self.path = path
        self.keep = keep
        self._top_real: str | None = None
        self.files: list[LocalFile] = []
        self.problems: list[Problem] = []
        self.stack: list[_Item] = [(path, "", ())]

    @property
    def top_real(self) -> str:
        if self._top_real is None:
            self._top_real = os.path.realpath(self.path)
        return self._top_real

    def problem(
        self, message: str, key: str | None, severity: Literal["error", "warning"] = "error"
    ) -> None:
        self.problems.append(Problem(self.name, message, key, severity))

    def run(self) -> RecordFolder:
        while self.stack:
            self._scan_dir(*self.stack.pop())
        self.files.sort(key=lambda f: f.key)
        return RecordFolder(
            name=self.name,
            path=self.path,
            metadata_path=self.path / METADATA_FILE,
            files=tuple(self.files),
            problems=tuple(sorted(self.problems, key=lambda p: p.key or "")),
        )

    def _scan_dir(self, directory: Path, prefix: str, chain: tuple[str, ...]) -> None:
        dir_s = str(directory)
        chain = (*chain, dir_s)
        try:
            scan = os.scandir(dir_s)
        except OSError as exc:
            self.problem(
                f"cannot read directory: {exc.strerror}; fix its permissions or exclude it",
                prefix.rstrip("/") or None,
            )
            return
        with scan:
            for entry in scan:
                name = entry.name
                if name.startswith(".") or name in STATE_NAMES:
                    continue
                if not prefix and name == METADATA_FILE:
                    continue
                key = prefix + name
                try:
                    if entry.is_symlink():
                        self._follow(entry, directory / name, key, chain)
                    elif entry.is_dir(follow_symlinks=False):
                        if not self.keep.prunes_dir(key):
                            self.stack.append((directory / name, key + "/", chain))
                    elif self.keep.wants_file(key):
                        st = entry.stat(follow_symlinks=False)
                        self._add_file(directory / name, key, st)
                except OSError as exc:  # vanished or unreadable while we looked at it
                    self.problem(f"cannot read: {exc.strerror}", key)

    def _add_file(self, path: Path, key: str, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode):
            self.files.append(LocalFile(key, path, st.st_size, st.st_mtime_ns))
        else:
            self.problem("skipped: not a regular file (FIFO, socket or device)", key, "warning")

    def _follow(
        self, entry: os.DirEntry[str], path: Path, key: str, chain: tuple[str, ...]
    ) -> None:
        """Follow a symlink only when it stays inside the record folder and does not loop."""
        try:
            st = os.stat(entry.path)  # follows the link
        except OSError as exc:
            if not self.keep.wants_file(key):
                return
            if exc.errno == errno.ELOOP:
                self.problem("symlink loop: the link never resolves to a file; remove it", key)
            elif exc.errno in (errno.ENOENT, errno.ENOTDIR):
                self.problem("broken symlink: its target does not exist; fix or remove it", key)
            else:
                self.problem(f"cannot follow symlink: {exc.strerror}", key)
            return
        is_dir = stat.S_ISDIR(st.st_mode)
        if self.keep.prunes_dir(key) if is_dir else not self.keep.wants_file(key):
            return
        target = os.path.realpath(entry.path)
        top = self.top_real
        if not (target == top or target.startswith(top + os.sep)):
            self.problem(
                "symlink leads outside the record folder; copy the data in or exclude the link",
                key,
            )
        elif not is_dir:
            self._add_file(path, key, st)
        elif target in {os.path.realpath(d) for d in chain}:
            # A folder already on the way down: following it would never end.
            self.problem("symlink loop: the link points to a folder that contains it", key)
        else:
            self.stack.append((path, key + "/", chain))


def discover(
    root: Path, *, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[RecordFolder]:
    """Every direct sub-folder of ``root`` holding ``record_metadata.json``, in natural order."""
    root_s = os.path.abspath(os.fspath(root))
    if not os.path.exists(root_s):
        raise ConfigError(f"records folder {root_s} does not exist")
    if not os.path.isdir(root_s):
        raise ConfigError(f"records folder {root_s} is not a directory")
    keep = KeyFilter(include, exclude)
    root_p = Path(root_s)
    try:
        with os.scandir(root_s) as scan:
            candidates = [e for e in scan if not e.name.startswith(".")]
    except OSError as exc:
        raise ConfigError(f"cannot read records folder {root_s}: {exc.strerror}") from exc

    records: list[RecordFolder] = []
    for entry in natsorted(sorted(candidates, key=lambda e: e.name), key=lambda e: e.name):
        try:
            if not entry.is_dir():  # follows a symlinked record folder on purpose
                continue
            meta = os.lstat(os.path.join(entry.path, METADATA_FILE))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            # Cannot even tell whether it is a record: say so rather than skip it silently.
            records.append(
                RecordFolder(
                    name=entry.name,
                    path=Path(entry.path),
                    metadata_path=Path(entry.path, METADATA_FILE),
                    files=(),
                    problems=(
                        Problem(
                            entry.name,
                            f"cannot look inside the folder: {exc.strerror}; fix its "
                            "permissions or move it out of the records folder",
                        ),
                    ),
                )
            )
            continue
        folder = _Walker(entry.name, root_p / entry.name, keep).run()
        records.append(replace(folder, metadata_stamp=(meta.st_size, meta.st_mtime_ns)))
    return records
