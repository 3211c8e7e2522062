"""The ``q`` of the search endpoints, evaluated the way InvenioRDM + OpenSearch answer it.

InvenioRDM hands ``q`` to OpenSearch as a ``query_string`` query, default operator OR (the
syntax: :mod:`.querystring`). Text fields match by analysed tokens and keyword fields
(``id``, ``parent.id``, ``access.record``...) by the whole value, per index (see
:mod:`.analysis`); ``field:*`` is an exists query, a trailing ``*`` a prefix and ``?``/``*``
wildcards match single tokens. Not modelled: ranges, regular expressions, fuzziness, scoring.

A query the server's parser (luqum) rejects, such as an unbalanced quote, is not an error
there: InvenioRDM falls back to a ``multi_match`` of the raw text over all fields, and so
does this module.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from .analysis import (
    DEFAULT_FIELDS,
    DRAFTS,
    RECORDS,
    analyse,
    as_keyword,
    leaves,
    normalise,
    phrase_key,
    resolve,
    wildcard_match,
)
from .querystring import MUST, MUST_NOT, SHOULD, BadQuery, Leaf, Node, parse, unescape
from .store import Record, Snapshot

SORTS = ("bestmatch", "newest", "oldest", "updated-desc", "updated-asc", "version")
# Kept as whole values although the mapping says ``text`` (see analysis.TEXT_FIELDS).
_EXACT_TEXT = frozenset({"metadata.identifiers.identifier"})


class _Doc:
    """A record as its index holds it; per-path values and tokens are computed once."""

    def __init__(self, rec: Record, snap: Snapshot, records_index: str) -> None:
        self.index = DRAFTS if snap is rec.draft else records_index
        self.source = {
            "id": rec.id,
            "parent": {"id": rec.parent.id, "communities": {"ids": rec.parent.communities}},
            "is_published": rec.published is not None,
            "metadata": snap.metadata,
            "access": snap.access,
            "pids": snap.pids,
        }
        self._values: dict[str, list[Any]] = {}
        self._keys: dict[tuple[str, str], list[str]] = {}
        self._paths: list[str] | None = None

    def default_fields(self) -> Sequence[str]:
        """What a bare word searches: the records index's list, or every field (drafts)."""
        if self.index in DEFAULT_FIELDS:
            return DEFAULT_FIELDS[self.index]
        if self._paths is None:
            self._paths = list(dict.fromkeys(path for path, _ in leaves(self.source)))
        return self._paths

    def values(self, path: str) -> list[Any]:
        if path not in self._values:
            node: list[Any] = [self.source]
            for part in path.split("."):
                nxt: list[Any] = []
                for item in node:
                    if isinstance(item, dict) and part in item:
                        value = item[part]
                        nxt.extend(value if isinstance(value, list) else [value])
                node = nxt
            self._values[path] = [v for v in node if v is not None and not isinstance(v, dict)]
        return self._values[path]

    def phrase_keys(self, path: str, analyzer: str) -> list[str]:
        """Each value at ``path``, analysed (see :func:`analysis.phrase_key`)."""
        if (path, analyzer) not in self._keys:
            keys = [phrase_key(analyse(analyzer, str(v))) for v in self.values(path)]
            self._keys[path, analyzer] = keys
        return self._keys[path, analyzer]


# A clause's outcome for one document; None: it analysed to no query and drops out.
Pred = Callable[[_Doc], bool | None]


def _wild(text: str) -> bool:
    return bool(re.search(r"(?<!\\)[*?]", text))


def _leaf(leaf: Leaf) -> Pred:
    """One term or phrase, on its field or on the default fields."""
    if leaf.text == "*" and not leaf.phrase:
        if leaf.field is None:
            return lambda doc: True
        field = leaf.field
        return lambda doc: bool(doc.values(resolve(doc.index, field)[0]))  # exists
    text = leaf.text if leaf.phrase else unescape(leaf.text)
    wild = not leaf.phrase and _wild(leaf.text)

    def on_field(doc: _Doc, field: str) -> bool | None:
        path, analyzer = resolve(doc.index, field)
        if analyzer is not None and not wild and not analyse(analyzer, text):
            return None
        values = doc.values(path)
        if not values:
            return False
        if field in _EXACT_TEXT:
            return any(as_keyword(v).lower() == text.lower() for v in values)
        if analyzer is None:
            if wild:
                return any(wildcard_match((as_keyword(v),), text) for v in values)
            return any(as_keyword(v) == text for v in values)
        if wild:
            pattern = normalise(analyzer, text)
            return any(wildcard_match(analyse(analyzer, str(v)), pattern) for v in values)
        wanted = analyse(analyzer, text)
        keys = doc.phrase_keys(path, analyzer)
        if leaf.phrase:
            needle = phrase_key(wanted)
            return any(needle in key for key in keys)
        # A word analysed to several tokens ("foo-bar") is their OR (the default operator).
        words = [phrase_key((tok,)) for tok in wanted]
        return any(word in key for key in keys for word in words)

    if leaf.field is not None:
        field = leaf.field
        return lambda doc: on_field(doc, field)

    def on_defaults(doc: _Doc) -> bool | None:
        found = [on_field(doc, f) for f in doc.default_fields()]
        return True if any(found) else (False if False in found else None)

    return on_defaults


def _merged_phrases(field: str, texts: list[str]) -> Pred:
    """OR-ed phrases on one field as one regex per analyser (the uploader ORs ~100 titles)."""
    regexes: dict[str, re.Pattern[str] | None] = {}
    exact = set(texts)

    def pred(doc: _Doc) -> bool | None:
        path, analyzer = resolve(doc.index, field)
        if analyzer is None:
            return any(as_keyword(v) in exact for v in doc.values(path))
        if analyzer not in regexes:
            keys = [phrase_key(toks) for t in texts if (toks := analyse(analyzer, t))]
            regexes[analyzer] = re.compile("|".join(map(re.escape, keys))) if keys else None
        rx = regexes[analyzer]
        return None if rx is None else any(map(rx.search, doc.phrase_keys(path, analyzer)))

    return pred


def _compile(node: Node, top: bool = False) -> Pred:
    if isinstance(node, Leaf):
        return _leaf(node)
    phrases: dict[str, list[str]] = {}
    should: list[Pred] = []
    for occ, child in node.clauses:
        if occ != SHOULD:
            continue
        if isinstance(child, Leaf) and child.phrase and child.field not in (None, *_EXACT_TEXT):
            phrases.setdefault(str(child.field), []).append(child.text)
        else:
            should.append(_compile(child))
    should += [_merged_phrases(field, texts) for field, texts in phrases.items()]
    must = [_compile(n) for occ, n in node.clauses if occ == MUST]
    must_not = [_compile(n) for occ, n in node.clauses if occ == MUST_NOT]

    def pred(doc: _Doc) -> bool | None:
        """Lucene's BooleanQuery, where clauses that analysed to nothing are absent."""
        seen = False
        for p in must:
            result = p(doc)
            if result is False:
                return False
            seen = seen or result is True
        negated = [r for p in must_not if (r := p(doc)) is not None]
        if any(negated):
            return False
        if seen:
            return True
        should_ran = False
        for p in should:
            result = p(doc)
            if result:
                return True
            should_ran = should_ran or result is False
        if should_ran:
            return False
        if negated:  # only negative clauses: OpenSearch adds match_all at the top level
            return top
        return None

    return pred


def matcher(q: str | None, records_index: str = RECORDS) -> Callable[[Record, Snapshot], bool]:
    """A predicate for ``q``: everything for an empty ``q``, nothing if it analyses away.

    A draft is judged as the drafts index holds it, a published record (a snapshot that is
    not the record's draft) as ``records_index`` does (:func:`analysis.records_index`).
    """
    if not q or not q.strip():
        return lambda rec, snap: True
    try:
        node = parse(q)
    except BadQuery:
        node = Leaf(None, q.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?"))
    if node is None:
        return lambda rec, snap: False
    pred = _compile(node, top=True)
    return lambda rec, snap: bool(pred(_Doc(rec, snap, records_index)))


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
