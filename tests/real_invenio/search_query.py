"""Query evaluation for the search stand-in (stdlib only).

InvenioRDM's list endpoints read from the search engine, so the stand-in must filter documents
well enough for owner/visibility filters and marker look-ups. Ranking is not modelled: tests must
not assert on order or exact counts from list endpoints.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from typing import Any

Doc = dict[str, Any]
# Sub-field suffixes that a mapping may declare (multi-fields); the stand-in stores none of them.
_SUBFIELDS = (".keyword", ".sort", ".original", ".text", ".suggest")


def field_values(source: Any, path: str) -> list[Any]:
    """Every leaf value at a dotted path, flattening lists on the way (as the engine does)."""
    values = list(_walk(source, path.split(".")))
    if not values:
        for suffix in _SUBFIELDS:
            if path.endswith(suffix):
                return field_values(source, path[: -len(suffix)])
    return values


def _walk(node: Any, parts: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, parts)
        return
    if not parts:
        if node is not None:
            yield node
        return
    if isinstance(node, dict) and parts[0] in node:
        yield from _walk(node[parts[0]], parts[1:])


def _norm(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _all_strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for v in node.values():
            yield from _all_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _all_strings(v)
    elif node is not None:
        yield _norm(node)


def _contains(haystack: list[Any] | Iterator[str], text: str) -> bool:
    needle = text.lower()
    if "*" in needle or "?" in needle:
        return any(fnmatch.fnmatchcase(_norm(v).lower(), needle) for v in haystack)
    return any(needle in _norm(v).lower() for v in haystack)


def _single(spec: dict[str, Any]) -> tuple[str, Any]:
    """Split ``{"field": value-or-options}`` (ignoring a top-level ``boost`` key)."""
    items = [(k, v) for k, v in spec.items() if k not in ("boost", "_name")]
    return items[0] if items else ("", None)


def matches(query: dict[str, Any] | None, doc_id: str, source: Doc) -> bool:
    """True if the document satisfies the (subset of the) OpenSearch query DSL."""
    if not query:
        return True
    for kind, spec in query.items():
        handler = _HANDLERS.get(kind)
        # Hazard: unknown query kinds match everything so that list endpoints stay usable.
        if handler is not None and not handler(spec, doc_id, source):
            return False
    return True


def _bool(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    def as_list(v: Any) -> list[Any]:
        return v if isinstance(v, list) else ([v] if v else [])

    must = as_list(spec.get("must")) + as_list(spec.get("filter"))
    if not all(matches(q, doc_id, src) for q in must):
        return False
    if any(matches(q, doc_id, src) for q in as_list(spec.get("must_not"))):
        return False
    should = as_list(spec.get("should"))
    if should:
        minimum = spec.get("minimum_should_match", 0 if must else 1)
        hits = sum(1 for q in should if matches(q, doc_id, src))
        return hits >= int(str(minimum).rstrip("%") or 0)
    return True


def _term(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    field, value = _single(spec)
    if isinstance(value, dict):
        value = value.get("value")
    return _norm(value) in {_norm(v) for v in _values(src, doc_id, field)}


def _terms(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    field, wanted = _single(spec)
    if not isinstance(wanted, list):
        return True  # terms lookup: not supported, be lenient
    have = {_norm(v) for v in _values(src, doc_id, field)}
    return any(_norm(w) in have for w in wanted)


def _values(src: Doc, doc_id: str, field: str) -> list[Any]:
    return [doc_id] if field == "_id" else field_values(src, field)


def _ids(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    return doc_id in {str(v) for v in spec.get("values", [])}


def _exists(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    return bool(field_values(src, spec.get("field", "")))


def _nested(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    # Approximation: inner queries use full paths, so evaluate them on the whole document.
    return matches(spec.get("query"), doc_id, src)


def _inner(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    return matches(spec.get("filter") or spec.get("query"), doc_id, src)


def _match(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    field, value = _single(spec)
    if isinstance(value, dict):
        value = value.get("query", "")
    return _contains(_values(src, doc_id, field), str(value))


def _multi_match(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    text = str(spec.get("query", ""))
    fields = [f.split("^")[0] for f in spec.get("fields", []) if "*" not in f]
    if not fields:
        return _contains(_all_strings(src), text) or text == doc_id
    return any(_contains(_values(src, doc_id, f), text) for f in fields)


def _range(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    field, bounds = _single(spec)
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for value in field_values(src, field):
        ok = True
        for op, bound in (bounds or {}).items():
            if op in ops and bound is not None:
                a, b = _comparable(value, bound)
                ok = ok and ops[op](a, b)
        if ok:
            return True
    return False


def _comparable(a: Any, b: Any) -> tuple[Any, Any]:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a, b
    if str(b).startswith("now"):
        return _norm(a), "9999"  # date math: treat "now" as the far future
    return _norm(a), _norm(b)


def _prefix(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    field, value = _single(spec)
    if isinstance(value, dict):
        value = value.get("value", "")
    return any(_norm(v).startswith(str(value)) for v in _values(src, doc_id, field))


def _wildcard(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    field, value = _single(spec)
    if isinstance(value, dict):
        value = value.get("value", value.get("wildcard", ""))
    return any(fnmatch.fnmatchcase(_norm(v), str(value)) for v in _values(src, doc_id, field))


def _query_string(spec: dict[str, Any], doc_id: str, src: Doc) -> bool:
    text = str(spec.get("query", "")).strip()
    if text in ("", "*"):
        return True
    return _QueryString(text).evaluate(doc_id, src)


def _never(spec: Any, doc_id: str, src: Doc) -> bool:
    return False


_HANDLERS: dict[str, Callable[[Any, str, Doc], bool]] = {
    "bool": _bool,
    "term": _term,
    "terms": _terms,
    "ids": _ids,
    "exists": _exists,
    "nested": _nested,
    "constant_score": _inner,
    "function_score": _inner,
    "match": _match,
    "match_phrase": _match,
    "match_phrase_prefix": _match,
    "match_bool_prefix": _match,
    "multi_match": _multi_match,
    "range": _range,
    "prefix": _prefix,
    "wildcard": _wildcard,
    "query_string": _query_string,
    "simple_query_string": _query_string,
    "match_none": _never,
}

_TOKEN = re.compile(r'\s*(\(|\)|"(?:\\.|[^"\\])*"|(?:\\.|[^\s()"])+(?:"(?:\\.|[^"\\])*")?)')


class _QueryString:
    """Tiny Lucene query-string evaluator: terms, field:value, field:"phrase", AND/OR/NOT, ().

    Bare terms match as case-insensitive substrings of any value; the default operator is AND.
    """

    def __init__(self, text: str) -> None:
        self.tokens: list[str] = []
        for m in _TOKEN.finditer(text):
            tok = m.group(1)
            if tok[0] in "+-" and len(tok) > 1:
                if tok[0] == "-":
                    self.tokens.append("NOT")
                tok = tok[1:]
            self.tokens.append(tok)
        self.pos = 0

    def evaluate(self, doc_id: str, src: Doc) -> bool:
        self.pos = 0
        self.doc_id, self.src = doc_id, src
        return self._or()

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _or(self) -> bool:
        result = self._and()
        while self._peek() in ("OR", "||"):
            self.pos += 1
            right = self._and()
            result = result or right
        return result

    def _and(self) -> bool:
        result = self._not()
        while (tok := self._peek()) is not None and tok not in ("OR", "||", ")"):
            if tok in ("AND", "&&"):
                self.pos += 1
            right = self._not()
            result = result and right
        return result

    def _not(self) -> bool:
        tok = self._peek()
        if tok in ("NOT", "!"):
            self.pos += 1
            return not self._not()
        return self._primary()

    def _primary(self) -> bool:
        tok = self._peek()
        if tok is None:
            return True
        self.pos += 1
        if tok == "(":
            result = self._or()
            if self._peek() == ")":
                self.pos += 1
            return result
        field, value = _split_field(tok)
        if field is not None and value == "" and self._peek() == "(":
            self.pos += 1
            values = []
            while (inner := self._peek()) not in (None, ")"):
                self.pos += 1
                if inner not in ("OR", "AND", "||", "&&"):
                    values.append(_unquote(inner))
            self.pos += 1
            return any(self._field_match(field, v) for v in values)
        if field is None:
            text = _unquote(value)
            return text == self.doc_id or _contains(_all_strings(self.src), text)
        return self._field_match(field, _unquote(value))

    def _field_match(self, field: str, text: str) -> bool:
        if text == "*":
            return bool(_values(self.src, self.doc_id, field))
        if field in ("id", "_id") and text == self.doc_id:
            return True
        return _contains(_values(self.src, self.doc_id, field), text)


def _split_field(token: str) -> tuple[str | None, str]:
    """``a.b:"x y"`` -> ("a.b", '"x y"'); a colon that is escaped or inside quotes is no field."""
    if token.startswith('"'):
        return None, token
    m = re.match(r"((?:\\.|[^:\\])+):(.*)$", token)
    if not m:
        return None, token
    return m.group(1).replace("\\", ""), m.group(2)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def sort_key_fn(spec: Any) -> list[tuple[str, bool]]:
    """Normalise an OpenSearch ``sort`` into [(field, descending)] (``_score`` is dropped)."""
    out: list[tuple[str, bool]] = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            field, order = item, "asc"
        elif isinstance(item, dict) and item:
            field, opts = next(iter(item.items()))
            order = opts.get("order", "asc") if isinstance(opts, dict) else str(opts)
        else:
            continue
        if field != "_score":
            out.append((field, order == "desc"))
    return out


def empty_aggregations(aggs: dict[str, Any] | None) -> dict[str, Any]:
    """Echo every aggregation name with empty buckets (the facet code reads each key)."""
    out: dict[str, Any] = {}
    for name, body in (aggs or {}).items():
        entry: dict[str, Any] = {
            "doc_count": 0,
            "doc_count_error_upper_bound": 0,
            "sum_other_doc_count": 0,
            "buckets": [],
        }
        if isinstance(body, dict):
            entry.update(empty_aggregations(body.get("aggs") or body.get("aggregations")))
        out[name] = entry
    return out
