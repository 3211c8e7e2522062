"""How the search index sees a record: analysers, text fields and default fields.

InvenioRDM (v13/v14, invenio-rdm-records 19.x/32.x) keeps two indices behind the
``rdmrecords`` alias. The drafts index (``draft-v6.0.0``) maps free text as ``text`` with
the ``standard`` analyser (Unicode word segmentation, UAX #29, then lower-case; no stop
words) and has no ``index.query.default_field``, so a bare word searches every field. The
records index (``record-v7.0.0``) analyses titles, creator and affiliation names and the
description with ``accent_analyzer`` (ASCII punctuation and all symbols deleted first, then
the standard tokenizer, lower-case, ASCII folding) and searches a fixed field list for bare
words. ``/api/user/records`` sees drafts in the first and published records without a
draft in the second; ``/api/records`` only the second. Ids are ``keyword`` (the whole value).
InvenioRDM v12 (the BIG-MAP Archive, profile ``bigmap``) has ``record-v6.0.0``: the standard
analyser everywhere and a shorter default field list.
A word matches a token and a phrase consecutive tokens, so ``"run 1"`` misses ``"run 10"``.
"""

from __future__ import annotations

import fnmatch
import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

DRAFTS, RECORDS, RECORDS_V6 = "drafts", "records", "records-v6"  # RECORDS_V6: v12's index
STANDARD, ACCENT = "standard", "accent"

# Approximation of UAX #29 word boundaries as Lucene's StandardTokenizer applies them:
# * letters, digits and the underscore (ExtendNumLet) form a token ("run_1", "v2" stay whole);
# * between two letters ``.``, ``:``, ``'``, ``’`` and ``·`` do not break ("don't", "e.g");
# * between two digits ``.``, ``,``, ``;``, ``'`` and ``’`` do not break ("1.5", "1,000");
# * every other character (space, punctuation, quotes, ``-``, ``/``) separates tokens;
# * each CJK ideograph or hiragana character is a token of its own;
# * combining marks stay in their token; tokens longer than 255 characters are split.
# Not modelled: emoji and the finer points of other scripts.
_IDEO = "\u3040-\u309f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_CHAR = rf"(?:[^\W{_IDEO}]|[{_MARKS}])"
_LETTER = rf"[^\W\d_{_IDEO}]"
_JOIN = rf"(?:(?<={_LETTER})[.:'’·](?={_LETTER})|(?<=\d)[.,;'’](?=\d))"
_WORD = re.compile(rf"[{_IDEO}]|{_CHAR}+(?:{_JOIN}{_CHAR}+)*")
MAX_TOKEN = 255  # the standard tokenizer's max_token_length
_SEP = "\0"
_ASCII_PUNCT = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")  # Java's \p{Punct}
# Letters ASCIIFoldingFilter maps that Unicode decomposition does not.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d"})
_FOLD.update(str.maketrans({"ł": "l", "þ": "th", "ı": "i", "ħ": "h", "ŧ": "t"}))

# Text fields of both indices; every other string is a keyword (exact, case-sensitive).
# ``metadata.identifiers.identifier`` is ``text`` in the mappings but is kept exact here on
# purpose: the uploader's idempotency marker look-up relies on it naming one record, and a
# phrase over the "bulk:<uuid>" tokens finds the same one.
_PERSON = ("person_or_org.name", "person_or_org.given_name", "person_or_org.family_name")
TEXT_FIELDS = frozenset(
    {
        "metadata.title",
        "metadata.additional_titles.title",
        "metadata.description",
        "metadata.additional_descriptions.description",
        "metadata.copyright",
        "metadata.publisher",
        "metadata.subjects.subject",
        "metadata.dates.description",
        "metadata.references.reference",
        "metadata.locations.features.place",
        "metadata.locations.features.description",
        "metadata.funding.funder.name",
        "metadata.funding.award.number",
        "metadata.funding.award.identifiers.identifier",
        "access.embargo.reason",
        *(f"metadata.{who}.{sub}" for who in ("creators", "contributors") for sub in _PERSON),
        "metadata.creators.affiliations.name",
        "metadata.contributors.affiliations.name",
    }
)
RECORD_ACCENT_FIELDS = frozenset(
    {
        "metadata.title",
        "metadata.additional_titles.title",
        "metadata.description",
        "metadata.creators.person_or_org.name",
        "metadata.creators.affiliations.name",
        "metadata.contributors.affiliations.name",
    }
)
# record-v6.0.0 and record-v7.0.0 ``index.query.default_field``.
_V6_DEFAULT_FIELDS = (
    "id",
    "metadata.title",
    "metadata.contact",
    *(f"metadata.{who}.{sub}" for who in ("creators", "contributors") for sub in _PERSON),
    "metadata.creators.affiliations.name",
    "metadata.contributors.affiliations.name",
    "metadata.description",
    "metadata.formats",
    "metadata.funding.award.identifiers.identifier",
    "metadata.funding.award.number",
    "metadata.funding.funder.name",
    "metadata.identifiers.identifier",
    "metadata.locations.features.place",
    "metadata.locations.features.description",
    "metadata.publication_date",
    "metadata.publisher",
    "metadata.subjects.subject",
    "metadata.version",
)
DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    RECORDS_V6: _V6_DEFAULT_FIELDS,
    RECORDS: (
        *_V6_DEFAULT_FIELDS,
        "metadata.title.original",
        "metadata.dates.description",
        "metadata.additional_descriptions.description",
        "metadata.references.reference",
        "metadata.additional_titles.title",
    ),
}


def records_index(profile: str) -> str:
    """The published records' index of a sandbox profile (``bigmap`` runs v12)."""
    return RECORDS_V6 if profile == "bigmap" else RECORDS


@lru_cache(maxsize=65536)
def tokens(text: str) -> tuple[str, ...]:
    """The standard analyser's tokens of ``text`` (lower-cased)."""
    out: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group().lower()
        if any(ch.isalnum() for ch in word):  # a lone "_" or mark is no token
            out.extend(word[i : i + MAX_TOKEN] for i in range(0, len(word), MAX_TOKEN))
    return tuple(out)


def fold(token: str) -> str:
    """ASCIIFoldingFilter, approximated: decompose, drop the marks, map a few letters."""
    if token.isascii():
        return token
    plain = unicodedata.normalize("NFKD", token.translate(_FOLD))
    return "".join(ch for ch in plain if not unicodedata.combining(ch))


@lru_cache(maxsize=65536)
def accent_tokens(text: str) -> tuple[str, ...]:
    """``accent_analyzer``: delete ASCII punctuation and symbols, tokenise, lower, fold."""
    kept = "".join(
        ch for ch in text if ch not in _ASCII_PUNCT and unicodedata.category(ch)[0] != "S"
    )
    return tuple(fold(tok) for tok in tokens(kept))


def analyse(analyzer: str, text: str) -> tuple[str, ...]:
    return accent_tokens(text) if analyzer == ACCENT else tokens(text)


def normalise(analyzer: str, pattern: str) -> str:
    """A wildcard pattern as query_string normalises it for the field (lower-case, fold)."""
    return fold(pattern.lower()) if analyzer == ACCENT else pattern.lower()


@lru_cache(maxsize=4096)
def resolve(index: str, path: str) -> tuple[str, str | None]:
    """(stored path, analyser or None for a keyword) of a query field in ``index``."""
    if path.endswith(".keyword"):
        return path.removesuffix(".keyword"), None
    if index == RECORDS and path in (
        "metadata.title.original",
        "metadata.additional_titles.title.original",
    ):
        return path.removesuffix(".original"), STANDARD
    if index == RECORDS and path in RECORD_ACCENT_FIELDS:
        return path, ACCENT
    parts = path.split(".")
    if path in TEXT_FIELDS or (parts[0] == "pids" and parts[-1] == "identifier"):
        return path, STANDARD  # (the pids.* dynamic template is text)
    if "title" in parts[:-1]:  # dynamic template "*.title.*": vocabulary i18n titles
        return path, STANDARD
    return path, None


def phrase_key(toks: tuple[str, ...]) -> str:
    """Tokens joined so that ``phrase_key(phrase) in phrase_key(text)`` is a phrase match.

    NUL never occurs inside a token, so a match cannot start or end mid-token.
    """
    return _SEP + _SEP.join(toks) + _SEP if toks else _SEP


def wildcard_match(haystack: tuple[str, ...], pattern: str) -> bool:
    """A ``*``/``?`` pattern (already normalised) against single tokens."""
    if pattern.endswith("*") and not any(c in pattern[:-1] for c in "*?"):
        return any(tok.startswith(pattern[:-1]) for tok in haystack)
    return any(fnmatch.fnmatchcase(tok, pattern) for tok in haystack)


def leaves(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every scalar below ``node``, lists flattened like the index."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaves(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for item in node:
            yield from leaves(item, path)
    elif node is not None:
        yield path, node


def as_keyword(value: Any) -> str:
    """A scalar as the index stores it in a keyword field."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
