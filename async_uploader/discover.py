r"""Stage 1: find the record folders under a root and the data files each one attaches.

Pure file-system reading (no network, no file contents read). Anything odd found on the way
(an escaping or broken symlink, an unreadable sub-directory) becomes a :class:`Problem` on the
record instead of an exception, so one bad folder never hides the others.

Include / exclude patterns follow gitignore rules, as implemented by ``pathspec`` (its
``GitIgnoreSpec``), matched against the file key, case-sensitive:

* All ``--include`` patterns are read as the lines of one ``.gitignore`` file, in the order
  given, and all ``--exclude`` patterns as the lines of another. A key is *matched* by such a
  list exactly when Git would ignore a file at that path with that ``.gitignore``. So patterns
  without ``!`` are OR-ed, and a later ``!pattern`` takes back what earlier ones matched:
  ``*.tmp`` then ``!keep.tmp`` matches every ``.tmp`` file but ``keep.tmp``.
* ``*``, ``?`` and ``[...]`` never cross a ``/``; ``**`` matches any number of directories
  (``**/scratch/*``, ``raw/**``). ``\`` escapes the next character (``\#notes``, ``\!x``,
  ``\[1]``); a leading ``#`` would be a comment, which is refused here.
* A pattern without a ``/`` (a trailing one aside) matches a name at any depth: ``*.dat``
  matches ``a.dat`` and ``raw/run1.dat``. A pattern with a ``/`` is anchored at the record
  folder (``raw/*``, ``/top.csv``). A trailing ``/`` (``raw/``) matches directories only.
* A matched directory matches everything inside it (``raw`` and ``raw/*`` both cover
  ``raw/sub/x.dat``), and, as in Git, a ``!`` pattern cannot take back a file inside it:
  ``raw/`` then ``!raw/keep.dat`` still matches ``raw/keep.dat``; write ``raw/*`` then
  ``!raw/keep.dat`` for that.
* A file is attached if there is no include pattern or the include list matches it, and the
  exclude list does not (exclude wins). ``record_metadata.json`` at the top of a record is
  never attached and never subject to the patterns. Excluded directories are not walked.
* A pattern that is blank, a comment, invalid (a lone trailing ``\``, an unclosed ``[``) or
  matches nothing raises :class:`ConfigError` naming it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from natsort import natsorted
from pathspec import GitIgnoreSpec

from .errors import ConfigError

METADATA_FILE = "record_metadata.json"
STATE_NAMES = frozenset({".upload_state", "records_links.json"})  # the tool's own state


def _one_line(text: str) -> str:
    """Escape control characters so a hostile file name cannot forge report lines."""
    return "".join(
        c if (" " <= c < "\x7f" or c > "\x9f") else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


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
        return _one_line(text)


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


def _checked(option: str, pattern: object) -> str:
    """``pattern`` if it is one valid, effective gitignore line, else a :class:`ConfigError`."""
    if not isinstance(pattern, str):
        raise ConfigError(f"{option} pattern {pattern!r} is not text")
    shown = f"'{_one_line(pattern)}'"  # as typed: repr() would double every backslash
    try:
        spec = GitIgnoreSpec.from_lines([pattern])
    except ValueError as exc:  # pathspec's GitIgnorePatternError
        line = pattern if pattern.endswith("\\ ") else pattern.rstrip()
        if (len(line) - len(line.rstrip("\\"))) % 2:
            why = "it ends with a \\ that escapes nothing"
        elif not line.lstrip("!/"):
            why = "there is no pattern after the !"
        else:
            why = str(exc.__cause__ or exc)
        raise ConfigError(f"invalid {option} pattern {shown}: {why}") from exc
    if any(p.include is not None for p in spec.patterns):
        return pattern
    if not pattern.strip():
        why = "is empty"
    elif pattern.startswith("#"):
        why = "is a comment in gitignore syntax: write \\# to match a name starting with #"
    elif "[" in pattern:
        why = "has a [ without its closing ]: write \\[ to match a literal ["
    else:
        why = "matches nothing"
    raise ConfigError(f"{option} pattern {shown} {why}")


def _dir_line(pattern: str) -> str | None:
    """The same line for testing a directory's own path: without its trailing ``/``."""
    line = pattern if pattern.endswith("\\ ") else pattern.rstrip()  # as gitignore reads it
    body = line.rstrip("/")
    return body if body not in ("", "!") else None


class _PatternList:
    """One option's patterns, read as the lines of one ``.gitignore`` (see the module doc).

    ``pathspec`` matches one path at a time, so it would let a ``!`` line take back a file
    inside a matched directory, which Git does not. Here a key is matched when one of its
    directories is (tested by its own path, trailing-``/`` lines applying to it) or, failing
    that, when the key itself is: the two steps Git takes while it walks the tree.
    """

    def __init__(self, option: str, patterns: Sequence[str]) -> None:
        lines = [_checked(option, p) for p in patterns]
        self.empty = not lines
        self.files = GitIgnoreSpec.from_lines(lines)
        self.dirs = GitIgnoreSpec.from_lines([d for d in map(_dir_line, lines) if d])
        self._dir_itself = lru_cache(maxsize=1 << 14)(self.dirs.match_file)

    def _in_matched_dir(self, key: str) -> bool:
        slash = key.find("/")
        while slash != -1:
            if self._dir_itself(key[:slash]):
                return True
            slash = key.find("/", slash + 1)
        return False

    def matches_file(self, key: str) -> bool:
        return not self.empty and (self._in_matched_dir(key) or self.files.match_file(key))

    def matches_dir(self, key: str) -> bool:
        return not self.empty and (self._in_matched_dir(key) or self._dir_itself(key))


class _KeyFilter:
    def __init__(self, include: Sequence[str], exclude: Sequence[str]) -> None:
        if isinstance(include, str) or isinstance(exclude, str):
            raise ConfigError("include/exclude must be sequences of patterns, not one string")
        self.include = _PatternList("--include", include)
        self.exclude = _PatternList("--exclude", exclude)
        # Record folders tend to repeat the same names: memoise per filter (bounded).
        self.wants_file = lru_cache(maxsize=1 << 16)(self._wants_file)
        self.prunes_dir = lru_cache(maxsize=1 << 14)(self.exclude.matches_dir)

    def _wants_file(self, key: str) -> bool:
        if not self.include.empty and not self.include.matches_file(key):
            return False
        return not self.exclude.matches_file(key)


_Item = tuple[Path, str, tuple[str, ...]]  # directory, key prefix, directories on the way down


class _Walker:
    """Walks one record folder iteratively (no recursion limit on deep trees).

    Hot path for 10,000s of folders: one scandir per directory, one stat per file, Paths built
    by joining one name onto the parent's Path. Real paths are computed only for symlinks.
    """

    def __init__(self, name: str, path: Path, keep: _KeyFilter) -> None:
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
    keep = _KeyFilter(include, exclude)
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
