"""Text cleaning the way InvenioRDM stores it (marshmallow-utils ``SanitizedUnicode``).

The real server does not keep a title as sent: every ``SanitizedUnicode`` field goes through
``sanitize_unicode`` while the draft is loaded, so curly quotes come back straight, ligatures
and full-width letters are folded, text is NFC and trimmed. A client that compares what it
sent with what it reads back (or searches for it) must cope with that, so the sandbox does
the same, with the same library (``ftfy``), before it validates (marshmallow deserialises a
field first and validates the cleaned value).
"""

from __future__ import annotations

from typing import Any

import ftfy

_UNWANTED = ("\u200b",)  # SanitizedUnicode.UNWANTED_CHARACTERS: the zero-width space

# The metadata paths that invenio-rdm-records' MetadataSchema (and the invenio-vocabularies
# and marshmallow-utils schemas it nests) declare as SanitizedUnicode. ``*`` is every item
# of a list. SanitizedHTML fields (description, additional_descriptions, copyright) are
# cleaned differently (bleach) and are left alone here.
_PERSON = (
    "person_or_org.type",
    "person_or_org.name",
    "person_or_org.given_name",
    "person_or_org.family_name",
    "person_or_org.identifiers.*.identifier",
    "person_or_org.identifiers.*.scheme",
    "role.id",
    "affiliations.*.id",
    "affiliations.*.name",
)
_IDENTIFIER = ("identifier", "scheme")
SANITIZED_PATHS: tuple[str, ...] = (
    "title",
    "publisher",
    "version",
    "sizes.*",
    "formats.*",
    "resource_type.id",
    "languages.*.id",
    "additional_titles.*.title",
    "additional_titles.*.type.id",
    "additional_titles.*.lang.id",
    *(f"{who}.*.{sub}" for who in ("creators", "contributors") for sub in _PERSON),
    "subjects.*.id",
    "subjects.*.subject",
    "dates.*.description",
    "dates.*.type.id",
    *(f"identifiers.*.{sub}" for sub in _IDENTIFIER),
    *(f"related_identifiers.*.{sub}" for sub in _IDENTIFIER),
    "related_identifiers.*.relation_type.id",
    "related_identifiers.*.resource_type.id",
    "references.*.reference",
    *(f"references.*.{sub}" for sub in _IDENTIFIER),
    "rights.*.id",
    "rights.*.link",
    "rights.*.props.url",
    "rights.*.props.scheme",
    "locations.features.*.place",
    "locations.features.*.description",
    *(f"locations.features.*.identifiers.*.{sub}" for sub in _IDENTIFIER),
    "funding.*.funder.id",
    "funding.*.funder.name",
    "funding.*.award.id",
    "funding.*.award.number",
)


def is_valid_xml_char(char: str) -> bool:
    """marshmallow-utils' test: the characters XML 1.0 allows."""
    code = ord(char)
    return (
        0x20 <= code <= 0xD7FF
        or code in (0x9, 0xA, 0xD)
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    )


def sanitize_unicode(value: str) -> str:
    """``marshmallow_utils.html.sanitize_unicode``: strip, ftfy, XML-valid chars, no U+200B.

    The strip comes first, so whitespace uncovered by the removals stays ("abc \\u200b" ends
    as "abc ").
    """
    value = ftfy.fix_text(value.strip())
    value = "".join(filter(is_valid_xml_char, value))
    for char in _UNWANTED:
        value = value.replace(char, "")
    return value


def _clean_at(node: Any, parts: list[str]) -> None:
    """Sanitize, in place, the strings found at ``parts`` below ``node`` (other types stay)."""
    if not parts:
        return
    key, rest = parts[0], parts[1:]
    if key == "*":
        slots: list[tuple[Any, Any]] = list(enumerate(node)) if isinstance(node, list) else []
    elif isinstance(node, dict) and key in node:
        slots = [(key, node[key])]
    else:
        return
    for slot, value in slots:
        if rest:
            _clean_at(value, rest)
        elif isinstance(value, str):
            node[slot] = sanitize_unicode(value)


def sanitize_metadata(metadata: dict[str, Any]) -> None:
    """Clean every SanitizedUnicode field of a draft's ``metadata`` in place."""
    for path in SANITIZED_PATHS:
        _clean_at(metadata, path.split("."))
