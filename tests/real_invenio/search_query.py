"""Query evaluation for the search stand-in (stdlib only).

InvenioRDM's list endpoints read from the search engine, and the uploader finds drafts whose
create answer was lost by searching titles, so the stand-in must match like the engine where
that matters: fields the index maps as ``text`` are analysed (search_analysis.py) and matched
by token and phrase, ``keyword`` fields exactly (after a normalizer), other types by value.
Fields the index does not map (or an index created before mappings were kept) fall back to
case-insensitive substrings, which finds more than the engine, never less. Ranking is not
modelled: tests must not assert on order from list endpoints.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from search_analysis import Analyzer, Positions, ascii_fold, build_analyzer, phrase_in

Doc = dict[str, Any]
# Sub-field suffixes that a mapping may declare (multi-fields); found under the parent's value.
_SUBFIELDS = (".keyword", ".sort", ".original", ".text", ".suggest")


@dataclass
class FieldInfo:
    """What the mapping says about one field path (multi-fields have their own path)."""

    kind: str  # "text", "keyword" or another mapping type ("date", "boolean", ...)
    analyzer: str = "standard"
    search_analyzer: str = "standard"
    normalizer: str | None = None


@dataclass
class Mapping:
    """An index's mappings and analysis settings, as its ``PUT /{index}`` body declared them."""

    fields: dict[str, FieldInfo] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)
    default_fields: list[str] = field(default_factory=list)
    _analyzers: dict[str, Analyzer] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[str, str], Positions] = field(default_factory=dict, repr=False)

    @classmethod
    def from_body(cls, body: dict[str, Any] | None) -> Mapping:
        body = body or {}
        settings = _flat_settings(body.get("settings") or {})
        mapping = cls(
            analysis=settings.get("index.analysis") or settings.get("analysis") or {},
            default_fields=list(settings.get("index.query.default_field") or []),
        )
        mappings = body.get("mappings") or {}
        _flatten(mappings.get("properties") or {}, "", mapping.fields)
        return mapping

    def info(self, path: str) -> FieldInfo | None:
        return self.fields.get(path)

    def analyzer(self, name: str) -> Analyzer:
        if name not in self._analyzers:
            self._analyzers[name] = build_analyzer(name, self.analysis)
        return self._analyzers[name]

    def analysed(self, name: str, text: str) -> Positions:
        """Index-time analysis of a stored value (cached: documents rarely change)."""
        key = (name, text)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 200_000:
                self._cache.clear()
            hit = self._cache[key] = self.analyzer(name)(text)
        return hit

    def query_tokens(self, name: str, text: str) -> list[str]:
        """Search-time analysis of query text: one token per position (cached per query)."""
        key = ("<query>" + name, text)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = [{max(a, key=len)} for a in self.analysed(name, text) if a]
        return [next(iter(alts)) for alts in hit]

    def normalise(self, info: FieldInfo, value: str) -> str:
        """A keyword value through the field's normalizer (lowercase, asciifolding, ...)."""
        if not info.normalizer:
            return value
        spec = (self.analysis.get("normalizer") or {}).get(info.normalizer) or {}
        for name in spec.get("filter", []):
            kind = ((self.analysis.get("filter") or {}).get(name) or {}).get("type", name)
            if kind == "lowercase":
                value = value.lower()
            elif kind in ("asciifolding", "icu_folding"):
                value = ascii_fold(value)
        return value

    def expand(self, pattern: str) -> list[str]:
        """Field names in a query (``metadata.title^3``, ``metadata.*``) -> mapped paths."""
        name = pattern.split("^")[0]
        if "*" not in name:
            return [name]
        return [f for f in self.fields if fnmatch.fnmatchcase(f, name)]


def _flat_settings(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"index": {"query": {"default_field": x}}}`` and ``{"index.query...": x}`` alike."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path not in ("analysis", "index.analysis"):
            out.update(_flat_settings(value, f"{path}."))
        else:
            out[path] = value
    if "query.default_field" in out:
        out.setdefault("index.query.default_field", out["query.default_field"])
    return out


def _flatten(props: dict[str, Any], prefix: str, out: dict[str, FieldInfo]) -> None:
    for name, spec in props.items():
        if not isinstance(spec, dict):
            continue
        path = f"{prefix}{name}"
        if "properties" in spec:
            _flatten(spec["properties"], f"{path}.", out)
        kind = spec.get("type", "object" if "properties" in spec else "")
        if kind and kind not in ("object", "nested"):
            out[path] = _info(kind, spec)
        for sub, sub_spec in (spec.get("fields") or {}).items():
            if isinstance(sub_spec, dict):
                out[f"{path}.{sub}"] = _info(sub_spec.get("type", "keyword"), sub_spec)


def _info(kind: str, spec: dict[str, Any]) -> FieldInfo:
    if kind in ("text", "search_as_you_type", "match_only_text"):
        analyzer = spec.get("analyzer", "standard")
        return FieldInfo("text", analyzer, spec.get("search_analyzer", analyzer))
    return FieldInfo(kind, normalizer=spec.get("normalizer"))


NO_MAPPING = Mapping()


@dataclass
class Target:
    """One document being evaluated, with its index's mapping."""

    doc_id: str
    src: Doc
    mapping: Mapping


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
    """The fallback for unmapped fields: case-insensitive substring (or glob)."""
    needle = text.lower()
    if "*" in needle or "?" in needle:
        return any(fnmatch.fnmatchcase(_norm(v).lower(), needle) for v in haystack)
    return any(needle in _norm(v).lower() for v in haystack)


def _values(t: Target, path: str) -> list[Any]:
    return [t.doc_id] if path == "_id" else field_values(t.src, path)


def text_match(t: Target, path: str, text: str, how: str = "phrase", operator: str = "or") -> bool:
    """Does field ``path`` of the document match ``text``, the way the engine would?

    ``how``: "phrase" (consecutive tokens), "phrase_prefix" (last token a prefix), "terms"
    (tokens anywhere, combined by ``operator``), "prefix_terms" (the same, last one a prefix),
    "glob" (wildcards against each token, or the whole keyword), "exact" (term query: the
    text is not analysed).
    """
    values = _values(t, path)
    if not values:
        return False
    info = t.mapping.info(path)
    if info is None:  # unmapped: be generous
        return _contains(values, text)
    if info.kind == "text":
        return any(
            _text_value_match(t.mapping, info, _norm(v), text, how, operator) for v in values
        )
    if info.kind == "keyword":
        want = text if how == "exact" else t.mapping.normalise(info, text)
        have = [t.mapping.normalise(info, _norm(v)) for v in values]
        if how == "glob":
            return any(fnmatch.fnmatchcase(h, want) for h in have)
        if how in ("phrase_prefix", "prefix_terms"):
            return any(h.startswith(want) for h in have)
        return want in have
    if how == "glob":
        return any(fnmatch.fnmatchcase(_norm(v).lower(), text.lower()) for v in values)
    return any(_same_value(v, text) for v in values)


def _same_value(value: Any, text: str) -> bool:
    if isinstance(value, bool):
        return _norm(value) == text.lower()
    if isinstance(value, int | float):
        try:
            return float(value) == float(text)
        except ValueError:
            return False
    return _norm(value) == text or _norm(value).lower() == text.lower()


def _text_value_match(
    mapping: Mapping, info: FieldInfo, value: str, text: str, how: str, operator: str
) -> bool:
    doc = mapping.analysed(info.analyzer, value)
    if how == "exact":
        return any(text in alts for alts in doc)
    if how == "glob":
        pattern = ascii_fold(text.lower()) if "fold" in info.search_analyzer else text.lower()
        return any(fnmatch.fnmatchcase(a, pattern) for alts in doc for a in alts)
    query = mapping.query_tokens(info.search_analyzer, text)
    if not query:
        return False  # nothing left after analysis matches nothing
    if how in ("phrase", "phrase_prefix"):
        return phrase_in(doc, query, prefix_last=how == "phrase_prefix")
    tokens = {a for alts in doc for a in alts}
    found = [q in tokens for q in query]
    if how == "prefix_terms":
        found[-1] = any(a.startswith(query[-1]) for a in tokens)
    return all(found) if operator.lower() == "and" else any(found)


def _single(spec: dict[str, Any]) -> tuple[str, Any]:
    """Split ``{"field": value-or-options}`` (ignoring a top-level ``boost`` key)."""
    items = [(k, v) for k, v in spec.items() if k not in ("boost", "_name")]
    return items[0] if items else ("", None)


def matches(
    query: dict[str, Any] | None, doc_id: str, source: Doc, mapping: Mapping | None = None
) -> bool:
    """True if the document satisfies the (subset of the) OpenSearch query DSL."""
    return _matches(query, Target(doc_id, source, mapping or NO_MAPPING))


def _matches(query: dict[str, Any] | None, t: Target) -> bool:
    if not query:
        return True
    for kind, spec in query.items():
        handler = _HANDLERS.get(kind)
        # Hazard: unknown query kinds match everything so that list endpoints stay usable.
        if handler is not None and not handler(spec, t):
            return False
    return True


def _as_list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else ([v] if v else [])


def _bool(spec: dict[str, Any], t: Target) -> bool:
    must = _as_list(spec.get("filter")) + _as_list(spec.get("must"))  # cheap filters first
    if not all(_matches(q, t) for q in must):
        return False
    if any(_matches(q, t) for q in _as_list(spec.get("must_not"))):
        return False
    should = _as_list(spec.get("should"))
    if should:
        default = 0 if must else 1  # must or filter present: should clauses optional
        minimum = minimum_should_match(spec.get("minimum_should_match", default), len(should))
        return sum(1 for q in should if _matches(q, t)) >= minimum
    return True


def minimum_should_match(spec: Any, optional: int) -> int:
    """How many of ``optional`` should-clauses must match: ``2``, ``-1``, ``75%``, ``-25%``,
    or conditional ``"2<75%"`` / ``"0<1"`` (above the number, apply the rest; else all)."""
    text = str(spec).strip()
    for part in reversed(text.split()):
        if "<" in part:
            bound, _, rule = part.partition("<")
            if optional > int(bound):
                return minimum_should_match(rule, optional)
            text = ""
    if not text:
        return optional
    if "<" in text:
        return optional
    if text.endswith("%"):
        pct = float(text[:-1])
        n = int(optional * abs(pct) / 100)
        return max(0, optional - n if pct < 0 else n)
    n = int(text)
    return max(0, optional + n if n < 0 else n)


def _term(spec: dict[str, Any], t: Target) -> bool:
    path, value = _single(spec)
    if isinstance(value, dict):
        value = value.get("value")
    if path == "_id":
        return _norm(value) == t.doc_id
    info = t.mapping.info(path)
    if info is not None and info.kind == "text":
        return text_match(t, path, _norm(value), "exact")
    return _norm(value) in {_norm(v) for v in _values(t, path)}


def _terms(spec: dict[str, Any], t: Target) -> bool:
    path, wanted = _single(spec)
    if not isinstance(wanted, list):
        return True  # terms lookup: not supported, be lenient
    have = {_norm(v) for v in _values(t, path)}
    return any(_norm(w) in have for w in wanted)


def _ids(spec: dict[str, Any], t: Target) -> bool:
    return t.doc_id in {str(v) for v in spec.get("values", [])}


def _exists(spec: dict[str, Any], t: Target) -> bool:
    return bool(field_values(t.src, spec.get("field", "")))


def _nested(spec: dict[str, Any], t: Target) -> bool:
    # Approximation: inner queries use full paths, so evaluate them on the whole document.
    return _matches(spec.get("query"), t)


def _inner(spec: dict[str, Any], t: Target) -> bool:
    return _matches(spec.get("filter") or spec.get("query"), t)


def _match_kind(how: str) -> Callable[[dict[str, Any], Target], bool]:
    def handler(spec: dict[str, Any], t: Target) -> bool:
        path, value = _single(spec)
        operator = "or"
        if isinstance(value, dict):
            operator = str(value.get("operator", "or"))
            value = value.get("query", "")
        return text_match(t, path, _norm(value), how, operator)

    return handler


_MULTI_MATCH_HOW = {
    "phrase": "phrase",
    "phrase_prefix": "phrase_prefix",
    "bool_prefix": "prefix_terms",
}


def _multi_match(spec: dict[str, Any], t: Target) -> bool:
    text = _norm(spec.get("query", ""))
    how = _MULTI_MATCH_HOW.get(str(spec.get("type", "best_fields")), "terms")
    operator = str(spec.get("operator", "or"))
    names = spec.get("fields") or t.mapping.default_fields or ["*"]
    paths = [p for name in names for p in t.mapping.expand(name)]
    if not paths or ("*" in names and not t.mapping.fields):
        return _contains(_all_strings(t.src), text) or text == t.doc_id
    return any(text_match(t, p, text, how, operator) for p in paths)


def _range(spec: dict[str, Any], t: Target) -> bool:
    path, bounds = _single(spec)
    ops: dict[str, Callable[[Any, Any], bool]] = {
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
    }
    for value in field_values(t.src, path):
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


def _prefix(spec: dict[str, Any], t: Target) -> bool:
    path, value = _single(spec)
    if isinstance(value, dict):
        value = value.get("value", "")
    return any(_norm(v).startswith(str(value)) for v in _values(t, path))


def _wildcard(spec: dict[str, Any], t: Target) -> bool:
    path, value = _single(spec)
    if isinstance(value, dict):
        value = value.get("value", value.get("wildcard", ""))
    return any(fnmatch.fnmatchcase(_norm(v), str(value)) for v in _values(t, path))


def _query_string(spec: dict[str, Any], t: Target) -> bool:
    text = str(spec.get("query", "")).strip()
    if text in ("", "*"):
        return True
    return QueryString(text, spec).evaluate(t)


def _never(spec: Any, t: Target) -> bool:
    return False


_HANDLERS: dict[str, Callable[[Any, Target], bool]] = {
    "bool": _bool,
    "term": _term,
    "terms": _terms,
    "ids": _ids,
    "exists": _exists,
    "nested": _nested,
    "constant_score": _inner,
    "function_score": _inner,
    "match": _match_kind("terms"),
    "match_phrase": _match_kind("phrase"),
    "match_phrase_prefix": _match_kind("phrase_prefix"),
    "match_bool_prefix": _match_kind("prefix_terms"),
    "multi_match": _multi_match,
    "range": _range,
    "prefix": _prefix,
    "wildcard": _wildcard,
    "query_string": _query_string,
    "simple_query_string": _query_string,
    "match_none": _never,
}

# A parenthesis, a quoted phrase, or a run of non-space characters (backslash escapes kept,
# a quoted phrase may follow a field name: a.b:"x \" y").
_TOKEN = re.compile(r'\s*(\(|\)|"(?:\\.|[^"\\])*"|(?:\\.|[^\s()"])+(?:"(?:\\.|[^"\\])*")?)')
_OPERATORS = ("OR", "||", "AND", "&&")


class QueryString:
    """A Lucene query-string evaluator: terms, field:term, field:"phrase", field:(a b),
    AND/OR/NOT/+/-, parentheses; ``default_operator`` and ``fields`` from the query's spec.

    A quoted phrase on a text field matches consecutive analysed tokens; an unquoted term
    matches a token (a term that analyses into several tokens needs them all, joined by the
    default operator); ``*`` and ``?`` match tokens by glob. Unfielded terms search
    ``fields`` (else the index's ``index.query.default_field``, else every value).
    """

    def __init__(self, text: str, spec: dict[str, Any] | None = None) -> None:
        spec = spec or {}
        self.default_and = str(spec.get("default_operator", "OR")).upper() == "AND"
        self.fields: list[str] = list(spec.get("fields") or [])
        default = spec.get("default_field")
        if not self.fields and default and default != "*":
            self.fields = [default]
        self.tokens = _lex(text)
        self.pos = 0

    def evaluate(self, t: Target) -> bool:
        self.pos = 0
        self.t = t
        return self._or()

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _or(self) -> bool:
        """Clauses joined by OR, or by nothing when the default operator is OR."""
        result = self._and()
        while (tok := self._peek()) is not None and tok != ")":
            if tok in ("OR", "||"):
                self.pos += 1
            elif self.default_and:
                break  # cannot happen: _and consumed it
            right = self._and()
            result = result or right
        return result

    def _and(self) -> bool:
        result = self._not()
        while (tok := self._peek()) is not None and tok not in ("OR", "||", ")"):
            if tok in ("AND", "&&"):
                self.pos += 1
            elif not self.default_and:
                break  # implicit operator is OR: the caller joins it
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
        field_name, value = _split_field(tok)
        if field_name is not None and value == "" and self._peek() == "(":
            self.pos += 1
            values = []
            while (inner := self._peek()) not in (None, ")"):
                self.pos += 1
                if inner not in _OPERATORS:
                    values.append(inner)
            self.pos += 1
            return any(self._field_match(field_name, v) for v in values)
        if field_name is None:
            return self._unfielded(value)
        return self._field_match(field_name, value)

    def _unfielded(self, raw: str) -> bool:
        t = self.t
        if _unquote(raw) == t.doc_id:
            return True
        names = self.fields or t.mapping.default_fields
        paths = [p for name in names for p in t.mapping.expand(name)]
        if not paths:
            return _contains(_all_strings(t.src), _unquote(raw))
        return any(self._field_match(p, raw) for p in paths)

    def _field_match(self, path: str, raw: str) -> bool:
        t = self.t
        quoted = raw.startswith('"') and raw.endswith('"') and len(raw) >= 2
        text = _unquote(raw)
        if not quoted and text == "*":
            return bool(_values(t, path))
        if path in ("id", "_id") and text == t.doc_id:
            return True
        if quoted:
            return text_match(t, path, text, "phrase")
        if "*" in text or "?" in text:
            return text_match(t, path, text, "glob")
        return text_match(t, path, text, "terms", "and" if self.default_and else "or")


@lru_cache(maxsize=1024)
def _lex(text: str) -> tuple[str, ...]:
    """Query-string tokens; ``+x`` is x, ``-x`` and ``!x`` are NOT x (cached: every document
    of a search evaluates the same query)."""
    tokens: list[str] = []
    for m in _TOKEN.finditer(text):
        tok = m.group(1)
        if tok[0] in "+-!" and len(tok) > 1:
            if tok[0] in "-!":
                tokens.append("NOT")
            tok = tok[1:]
        tokens.append(tok)
    return tuple(tokens)


@lru_cache(maxsize=4096)
def _split_field(token: str) -> tuple[str | None, str]:
    """``a.b:"x y"`` -> ("a.b", '"x y"'); a colon that is escaped or inside quotes is no field."""
    if token.startswith('"'):
        return None, token
    m = re.match(r"((?:\\.|[^:\\])+):(.*)$", token)
    if not m:
        return None, token
    return m.group(1).replace("\\", ""), m.group(2)


@lru_cache(maxsize=4096)
def _unquote(value: str) -> str:
    if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
        value = value[1:-1]
    return re.sub(r"\\(.)", r"\1", value)


def sort_key_fn(spec: Any) -> list[tuple[str, bool]]:
    """Normalise an OpenSearch ``sort`` into [(field, descending)] (``_score`` is dropped)."""
    out: list[tuple[str, bool]] = []
    for item in spec if isinstance(spec, list) else [spec]:
        if isinstance(item, str):
            field_name, order = item, "asc"
        elif isinstance(item, dict) and item:
            field_name, opts = next(iter(item.items()))
            order = opts.get("order", "asc") if isinstance(opts, dict) else str(opts)
        else:
            continue
        if field_name != "_score":
            out.append((field_name, order == "desc"))
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
