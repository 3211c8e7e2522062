"""A tiny query-string search over stored records (what the uploader needs from OpenSearch).

Supported ``q``: ``field:value`` and ``field:"phrase"`` (``id``, ``parent.id``,
``metadata.title``, ``metadata.identifiers.identifier``, any dotted path as a fallback),
bare words and quoted phrases (substring of the title), ``AND`` (implicit) and ``OR``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .store import Record, Snapshot

SORTS = ("bestmatch", "newest", "oldest", "updated-desc", "updated-asc", "version")
_TOKEN = re.compile(r'([\w.\-]+):("(?:[^"\\]|\\.)*"|[^\s()]+)|"((?:[^"\\]|\\.)*)"|(\S+)')


class BadQuery(ValueError):
    """Invalid query string syntax."""


Term = tuple[str | None, str]  # (field or None for the title, lower-cased value)


def parse(q: str) -> list[list[Term]]:
    """``q`` -> OR-groups of AND-ed terms."""
    if q.count('"') % 2:
        raise BadQuery(q)
    groups: list[list[Term]] = [[]]
    for match in _TOKEN.finditer(q.replace("(", " ").replace(")", " ")):
        fld, fval, phrase, word = match.groups()
        if word in ("AND", "&&"):
            continue
        if word in ("OR", "||"):
            groups.append([])
            continue
        if fld is not None:
            value = fval[1:-1] if fval.startswith('"') else fval
            groups[-1].append((fld, value.replace('\\"', '"').lower()))
        elif phrase is not None:
            groups[-1].append((None, phrase.lower()))
        elif word:
            groups[-1].append((None, word.lower()))
    return [g for g in groups if g]


def _values(doc: Any, path: list[str]) -> list[Any]:
    if not path:
        return doc if isinstance(doc, list) else [doc]
    if isinstance(doc, list):
        return [v for item in doc for v in _values(item, path)]
    if isinstance(doc, dict) and path[0] in doc:
        return _values(doc[path[0]], path[1:])
    return []


def _term_ok(rec: Record, snap: Snapshot, term: Term) -> bool:
    fld, value = term
    title = str(snap.metadata.get("title", "")).lower()
    if fld is None:
        return value in title
    if fld == "id":
        return rec.id.lower() == value
    if fld == "parent.id":
        return rec.parent.id.lower() == value
    if fld in ("metadata.title", "title"):
        return value in title
    doc = {"metadata": snap.metadata, "access": snap.access, "pids": snap.pids}
    return any(str(v).lower() == value for v in _values(doc, fld.split(".")))


def matcher(q: str | None) -> Callable[[Record, Snapshot], bool]:
    if not q or not q.strip():
        return lambda rec, snap: True
    groups = parse(q)
    if not groups:
        return lambda rec, snap: True

    def match(rec: Record, snap: Snapshot) -> bool:
        return any(all(_term_ok(rec, snap, t) for t in group) for group in groups)

    return match


def sort_key(sort: str) -> tuple[Callable[[tuple[Record, Snapshot]], Any], bool]:
    """(key function, reverse) for a sort option; bestmatch falls back to newest."""
    if sort == "oldest":
        return (lambda rs: rs[0].created_ts), False
    if sort == "updated-desc":
        return (lambda rs: rs[1].updated), True
    if sort == "updated-asc":
        return (lambda rs: rs[1].updated), False
    if sort == "version":
        return (lambda rs: rs[0].index), True
    return (lambda rs: rs[0].created_ts), True
