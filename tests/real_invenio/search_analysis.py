"""Text analysis for the search stand-in, as OpenSearch does it (stdlib only).

A search on a ``text`` field matches analysed tokens, not substrings: the phrase "run 1" must
not find "run 10", and a title stored as ``"Curly" quotes run 3`` must be found by the phrase
``\\"curly\\" QUOTES run 3``. The uploader relies on exactly that when it looks for a draft
whose create answer was lost, so the stand-in analyses text like the engine:

- analysers come from the index's own settings (``PUT /{index}`` body) when it defines them
  (InvenioRDM's records index has ``accent_analyzer``: a ``pattern_replace`` char filter that
  deletes ``[\\p{Punct}\\p{S}]``, the standard tokenizer, ``lowercase``, ``asciifolding``);
  otherwise the built-in ``standard`` analyser (standard tokenizer + lowercase);
- the standard tokenizer follows Unicode word boundaries (UAX #29) closely enough: runs of
  letters and digits, joined across ``_``; letters joined across ``' . :`` and digits across
  ``, . ;`` when the same kind follows; ideographs are one token each;
- a phrase matches consecutive positions; ``edge_ngram`` filters add prefixes at a position.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

Positions = list[set[str]]  # token alternatives per position
Analyzer = Callable[[str], Positions]

MID_LETTER = set("'.:\u00b7\u0387\u05f4\u2019\u2018\u2027\ufe13\ufe55\uff1a\uff07\uff0e")
MID_NUM = set(",.;'\u037e\u0589\u060c\u066c\u2019\u2044\ufe10\ufe14\ufe50\ufe54\uff0c\uff1b")


def _is_ideograph(ch: str) -> bool:
    cp = ord(ch)
    return (
        0x3040 <= cp <= 0x30FF  # hiragana, katakana
        or 0x3400 <= cp <= 0x9FFF
        or 0xF900 <= cp <= 0xFAFF
        or 0x20000 <= cp <= 0x3FFFF
    )


def _kind(ch: str) -> str:
    """ "L" letter, "N" digit, "E" joiner (underscore, marks), "I" ideograph, "" other."""
    if ch == "_":
        return "E"
    if _is_ideograph(ch):
        return "I"
    cat = unicodedata.category(ch)
    if cat[0] == "L":
        return "L"
    if cat == "Nd":
        return "N"
    if cat[0] == "M" or cat == "Pc":
        return "E"
    return ""


def standard_tokens(text: str, max_len: int = 255) -> list[str]:
    """The standard tokenizer's tokens (not lower-cased)."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        kind = _kind(text[i])
        if kind == "I":
            tokens.append(text[i])
            i += 1
            continue
        if not kind:
            i += 1
            continue
        start = i
        i += 1
        while i < n:
            k = _kind(text[i])
            if k in ("L", "N", "E"):
                i += 1
                continue
            if i + 1 < n:
                before, after = _kind(text[i - 1]), _kind(text[i + 1])
                if text[i] in MID_LETTER and before == after == "L":
                    i += 2
                    continue
                if text[i] in MID_NUM and before == after == "N":
                    i += 2
                    continue
            break
        token = text[start:i]
        tokens.extend(token[j : j + max_len] for j in range(0, len(token), max_len))
    return tokens


_FOLD_EXTRA = str.maketrans(
    {"ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "ø": "o", "Ø": "O", "đ": "d"}
    | {"Đ": "D", "ł": "l", "Ł": "L", "þ": "th", "Þ": "TH", "ı": "i", "ð": "d", "Ð": "D"}
)


def ascii_fold(token: str) -> str:
    """Lucene's ASCIIFoldingFilter, approximately: accents off, a few ligatures spelled out."""
    decomposed = unicodedata.normalize("NFKD", token.translate(_FOLD_EXTRA))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@cache
def _category_class(prefix: str) -> str:
    """Every code point whose Unicode category starts with ``prefix``, as a regex class body."""
    chars = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)).startswith(prefix)]
    return "".join(re.escape(c) for c in chars)


def java_regex(pattern: str) -> re.Pattern[str]:
    r"""A Java regex as Python's ``re`` (only what analysis settings use: ``\p{..}`` classes).

    Java's ``\p{Punct}`` is ASCII punctuation only; ``\p{S}``, ``\p{L}``, ... are categories.
    """

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "Punct":
            return re.escape(string.punctuation)
        if name in ("Alpha", "Alnum", "Digit", "Space"):
            return {"Alpha": "a-zA-Z", "Alnum": "a-zA-Z0-9", "Digit": "0-9", "Space": r"\s"}[name]
        return _category_class(name.removeprefix("Is"))

    return re.compile(re.sub(r"\\p\{(\w+)\}", repl, pattern))


def _edge_ngrams(token: str, lo: int, hi: int) -> set[str]:
    return {token[:k] for k in range(lo, min(hi, len(token)) + 1)} or {token}


def build_analyzer(name: str, analysis: dict[str, Any]) -> Analyzer:
    """An analyser by name: built-in (standard, simple, whitespace, keyword) or custom."""
    if name == "keyword":
        return lambda text: [{text}]
    if name == "whitespace":
        return lambda text: [{t} for t in text.split()]
    if name == "simple":
        return lambda text: [{t.lower()} for t in re.findall(r"[^\W\d_]+", text)]
    spec = (analysis.get("analyzer") or {}).get(name)
    if not isinstance(spec, dict) or spec.get("type", "custom") != "custom":
        return lambda text: [{t.lower()} for t in standard_tokens(text)]
    char_filters = [_char_filter(analysis, f) for f in spec.get("char_filter", [])]
    tokenizer = spec.get("tokenizer", "standard")
    filters = [_token_filter(analysis, f) for f in spec.get("filter", [])]

    def analyse(text: str) -> Positions:
        for cf in char_filters:
            text = cf(text)
        if tokenizer == "keyword":
            tokens = [text]
        elif tokenizer == "whitespace":
            tokens = text.split()
        else:  # standard, and an approximation of any other
            tokens = standard_tokens(text)
        positions = [{t} for t in tokens]
        for tf in filters:
            positions = [{out for t in alts for out in tf(t)} for alts in positions]
        return positions

    return analyse


def _char_filter(analysis: dict[str, Any], name: str) -> Callable[[str], str]:
    spec = (analysis.get("char_filter") or {}).get(name) or {}
    if spec.get("type") == "pattern_replace":
        pattern = java_regex(spec.get("pattern", ""))
        replacement = re.sub(r"\$(\d)", r"\\\1", spec.get("replacement", ""))
        return lambda text: pattern.sub(replacement, text)
    if spec.get("type") == "mapping":
        pairs = [m.split("=>", 1) for m in spec.get("mappings", []) if "=>" in m]
        table = [(a.strip(), b.strip()) for a, b in pairs]

        def mapped(text: str) -> str:
            for a, b in table:
                text = text.replace(a, b)
            return text

        return mapped
    return lambda text: text  # html_strip and others: not modelled


def _token_filter(analysis: dict[str, Any], name: str) -> Callable[[str], Iterable[str]]:
    spec = (analysis.get("filter") or {}).get(name) or {"type": name}
    kind = spec.get("type", name)
    if kind == "lowercase":
        return lambda t: [t.lower()]
    if kind == "uppercase":
        return lambda t: [t.upper()]
    if kind in ("asciifolding", "icu_folding"):
        if spec.get("preserve_original"):
            return lambda t: {t, ascii_fold(t)}
        return lambda t: [ascii_fold(t)]
    if kind in ("edge_ngram", "edgeNGram"):
        lo, hi = int(spec.get("min_gram", 1)), int(spec.get("max_gram", 2))
        return lambda t: _edge_ngrams(t, lo, hi)
    return lambda t: [t]  # stop words, stemmers, ...: not modelled


def phrase_in(doc: Positions, query: list[str], prefix_last: bool = False) -> bool:
    """True if the query tokens occur at consecutive positions of the document."""
    if not query:
        return False
    span = len(query)
    for start in range(len(doc) - span + 1):
        ok = True
        for k, token in enumerate(query):
            alts = doc[start + k]
            if prefix_last and k == span - 1:
                ok = any(a.startswith(token) for a in alts)
            else:
                ok = token in alts
            if not ok:
                break
        if ok:
            return True
    return False


def query_tokens(analyse: Analyzer, text: str) -> list[str]:
    """Analyse query text: one token per position (a search analyser adds no alternatives)."""
    return [min(alts, key=len) for alts in analyse(text) if alts]
