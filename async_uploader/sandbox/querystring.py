"""Lucene query-string syntax, parsed into the tree OpenSearch's ``query_string`` builds.

Supported: words, ``"phrases"`` (``\\"`` and ``\\\\`` escaped inside), ``field:value``,
``field:"phrase"``, ``field:(group)``, ``AND``/``&&``, ``OR``/``||``, ``NOT``/``!``,
``+``/``-`` and parentheses, with Lucene's clause rules for the default operator OR
(``a AND b c`` requires a and b, c only scores). ``^boost`` and ``~slop`` are accepted and
dropped; escapes stay in terms so that ``\\*`` is no wildcard. What luqum (InvenioRDM's
parser) would refuse raises :class:`BadQuery`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

MUST, SHOULD, MUST_NOT = "must", "should", "must_not"
_LEX = re.compile(
    r"""\s*(?:
      (?P<open>\()|(?P<close>\))
    | (?P<mod>[+\-!])(?=[^\s+\-!])
    | (?P<phrase>"(?:[^"\\]|\\.)*")(?:[~^][\d.]*)*
    | (?P<field>(?:[^\s()"\\:+\-!]|\\.)(?:[^\s()"\\:]|\\.)*):
    | (?P<term>(?:[^\s()"\\]|\\.)+)
    | (?P<bad>\S)
    )""",
    re.VERBOSE,
)
_SUFFIX = re.compile(r"(?<!\\)[~^][\d.]*$")  # fuzziness or boost after a term


class BadQuery(ValueError):
    """What the server's query parser refuses (then a multi_match is run instead)."""


@dataclass(frozen=True)
class Leaf:
    """One term or phrase; ``field`` None means every field."""

    field: str | None
    text: str
    phrase: bool = False


@dataclass(frozen=True)
class Bool:
    """A Lucene BooleanQuery: (occur, node) clauses."""

    clauses: tuple[tuple[str, Node], ...]


Node = Leaf | Bool


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.DOTALL)


class _Parser:
    """Recursive descent over Lucene's classic grammar (the parts listed in the docstring)."""

    def __init__(self, q: str) -> None:
        self.toks: list[tuple[str, str]] = []
        for m in _LEX.finditer(q):
            kind = m.lastgroup
            if kind == "bad":
                raise BadQuery(q)  # a lone quote or backslash: luqum cannot lex it
            if kind is not None:
                self.toks.append((kind, m.group(kind)))
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise BadQuery("unexpected end of query")
        self.pos += 1
        return tok

    def query(self, field: str | None, depth: int = 0) -> Node | None:
        clauses: list[list[Any]] = []
        conj: str | None = None
        while (tok := self.peek()) is not None and tok[0] != "close":
            kind, text = tok
            if kind == "term" and text in ("AND", "&&", "OR", "||"):
                if conj is not None or not clauses:
                    raise BadQuery(text)
                conj = "AND" if text in ("AND", "&&") else "OR"
                self.pos += 1
                continue
            mod = None
            if (kind == "term" and text in ("NOT", "!")) or kind == "mod":
                mod, _ = (MUST if text == "+" else MUST_NOT), self.take()
            node = self.clause(field, depth)
            self._add(clauses, conj, mod, node)
            conj = None
        if conj is not None or (depth == 0 and self.peek() is not None):
            raise BadQuery("dangling operator or unbalanced parenthesis")
        if not clauses:
            return None
        if len(clauses) == 1 and clauses[0][0] != MUST_NOT:
            return clauses[0][1]
        return Bool(tuple((occ, node) for occ, node in clauses))

    @staticmethod
    def _add(clauses: list[list[Any]], conj: str | None, mod: str | None, node: Any) -> None:
        """Lucene's ``addClause`` with the OR default: AND makes its neighbours required."""
        if clauses and conj == "AND" and clauses[-1][0] != MUST_NOT:
            clauses[-1][0] = MUST
        if node is None:  # an empty group "()": no clause
            return
        occur = mod or (MUST if conj == "AND" else SHOULD)
        clauses.append([occur, node])

    def clause(self, field: str | None, depth: int) -> Node | None:
        kind, text = self.take()
        if kind == "field":
            if field is not None:
                raise BadQuery("nested field")
            return self.clause(unescape(text), depth)
        if kind == "open":
            node = self.query(field, depth + 1)
            if self.take()[0] != "close":
                raise BadQuery("unbalanced parenthesis")
            return node
        if kind == "phrase":
            return Leaf(field, unescape(text[1:-1]), phrase=True)
        if kind == "term":
            return Leaf(field, _SUFFIX.sub("", text))  # escapes kept: they hide wildcards
        raise BadQuery(text)


def parse(q: str) -> Node | None:
    """``q`` as a tree (None: nothing to match). Raises :class:`BadQuery`."""
    return _Parser(q).query(None)
