r"""Which files of a record folder are attached: ``--include`` / ``--exclude`` patterns.

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

from collections.abc import Sequence
from functools import lru_cache

from pathspec import GitIgnoreSpec

from .errors import ConfigError


def one_line(text: str) -> str:
    """Escape control characters so a hostile file name cannot forge report lines."""
    return "".join(
        c if (" " <= c < "\x7f" or c > "\x9f") else c.encode("unicode_escape").decode("ascii")
        for c in text
    )


def _checked(option: str, pattern: object) -> str:
    """``pattern`` if it is one valid, effective gitignore line, else a :class:`ConfigError`."""
    if not isinstance(pattern, str):
        raise ConfigError(f"{option} pattern {pattern!r} is not text")
    shown = f"'{one_line(pattern)}'"  # as typed: repr() would double every backslash
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


class KeyFilter:
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
