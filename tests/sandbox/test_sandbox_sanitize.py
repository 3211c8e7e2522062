"""Text fields come back cleaned like marshmallow-utils' SanitizedUnicode cleans them."""

from __future__ import annotations

from typing import Any

import pytest
from contract.scenarios import Target, body, call, create

from async_uploader.sandbox.sanitize import sanitize_metadata, sanitize_unicode

pytestmark = pytest.mark.anyio

CASES = [
    pytest.param("“Curly” title", '"Curly" title', id="curly-quotes"),
    pytest.param("Don’t panic", "Don't panic", id="curly-apostrophe"),
    pytest.param("  padded title \t\n", "padded title", id="outer-whitespace"),
    pytest.param("zero\u200bwidth", "zerowidth", id="zero-width-space"),
    pytest.param("abc \u200b", "abc ", id="strip-before-removal"),
    pytest.param("\ufb01le name", "file name", id="fi-ligature"),
    pytest.param("ＡＢＣ data", "ABC data", id="full-width"),
    pytest.param("Cafe\u0301 cre\u0300me", "Café crème", id="nfd-to-nfc"),
    pytest.param("bell\x07 char", "bell char", id="control-char"),
    pytest.param("non\ufffechar", "nonchar", id="not-an-xml-char"),
    pytest.param("line\r\nbreak", "line\nbreak", id="crlf"),
    pytest.param("Plain title 1.5", "Plain title 1.5", id="unchanged"),
]


@pytest.mark.parametrize(("raw", "clean"), CASES)
def test_sanitize_unicode_table(raw: str, clean: str) -> None:
    assert sanitize_unicode(raw) == clean


def test_sanitize_metadata_covers_the_schema_fields() -> None:
    person = {"type": "personal", "given_name": " Ａda ", "family_name": "Love\u200blace"}
    meta: dict[str, Any] = {
        "title": " “T” ",
        "additional_titles": [{"title": "ﬁne", "type": {"id": " subtitle "}}],
        "publisher": "Pub\x07",
        "version": " v1 ",
        "creators": [{"person_or_org": person, "affiliations": [{"name": " CERN "}]}],
        "contributors": [{"person_or_org": {"type": "organizational", "name": " Org "}}],
        "subjects": [{"subject": "“s”"}],
        "identifiers": [{"scheme": "other", "identifier": " bulk:1 "}],
        "locations": {"features": [{"place": " Geneva ", "description": "ﬁeld"}]},
        "description": " <p>“kept”</p> ",  # SanitizedHTML: not this function's business
        "sizes": [" 1 GB "],
    }
    sanitize_metadata(meta)
    assert meta["title"] == '"T"'
    assert meta["additional_titles"] == [{"title": "fine", "type": {"id": "subtitle"}}]
    assert (meta["publisher"], meta["version"], meta["sizes"]) == ("Pub", "v1", ["1 GB"])
    assert meta["creators"][0]["person_or_org"] == {
        "type": "personal",
        "given_name": "Ada",
        "family_name": "Lovelace",
    }
    assert meta["creators"][0]["affiliations"] == [{"name": "CERN"}]
    assert meta["contributors"][0]["person_or_org"]["name"] == "Org"
    assert meta["subjects"] == [{"subject": '"s"'}]
    assert meta["identifiers"] == [{"scheme": "other", "identifier": "bulk:1"}]
    assert meta["locations"] == {"features": [{"place": "Geneva", "description": "field"}]}
    assert meta["description"] == " <p>“kept”</p> "


async def test_drafts_store_and_return_cleaned_text(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        data = body("  “Curly” ﬁle ＡＢＣ\u200b ")
        data["metadata"]["creators"] = [
            {"person_or_org": {"type": "personal", "given_name": "Ａda", "family_name": " L\x07 "}}
        ]
        data["metadata"]["publisher"] = "Pub ’s"
        draft = await create(t, s, data)
        assert "errors" not in draft or all(e["field"] != "metadata.title" for e in draft["errors"])
        meta = draft["metadata"]
        assert meta["title"] == '"Curly" file ABC'
        assert meta["creators"][0]["person_or_org"]["name"] == "L, Ada"  # from cleaned parts
        assert meta["publisher"] == "Pub 's"
        status, again, _ = await call(s, "GET", draft["links"]["self"], t)
        assert status == 200 and again["metadata"]["title"] == '"Curly" file ABC'
        assert sb.records()[0]["title"] == '"Curly" file ABC'
        data["metadata"]["title"] = "Cafe\u0301 “updated”"
        status, put, _ = await call(s, "PUT", draft["links"]["self"], t, json=data)
        assert status == 200 and put["metadata"]["title"] == 'Café "updated"'


@pytest.mark.parametrize(
    ("title", "kept"),
    [
        pytest.param("  ab  ", None, id="short-after-strip"),
        pytest.param("ab\u200b", None, id="short-after-zwsp-removal"),
        pytest.param("\x07ab", None, id="short-after-control-removal"),
        pytest.param("\ufb01x", "fix", id="ligature-makes-it-long-enough"),
        pytest.param("ＡＢ", None, id="full-width-still-short"),
    ],
)
async def test_title_length_is_checked_on_the_cleaned_value(
    running: Any, title: str, kept: str | None
) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s, body(title))
        title_errors = [e for e in draft.get("errors", []) if e["field"] == "metadata.title"]
        if kept is None:
            assert title_errors == [
                {"field": "metadata.title", "messages": ["Shorter than minimum length 3."]}
            ]
            assert "title" not in draft["metadata"]
        else:
            assert title_errors == [] and draft["metadata"]["title"] == kept


async def test_vocabulary_ids_are_cleaned_before_the_lookup(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        data = body("Padded resource type")
        data["metadata"]["resource_type"] = {"id": " dataset "}
        draft = await create(t, s, data)
        assert draft["metadata"]["resource_type"]["id"] == "dataset"
