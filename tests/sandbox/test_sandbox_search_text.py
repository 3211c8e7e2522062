"""Search like OpenSearch's standard analyser, pagination, and index freshness."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote, urlencode

import anyio
import pytest
from contract.scenarios import Target, body, call, create
from yarl import URL

from async_uploader.sandbox import search
from async_uploader.sandbox.analysis import accent_tokens, records_index, tokens
from async_uploader.sandbox.store import Parent, Record, Snapshot

pytestmark = pytest.mark.anyio


async def _search(s: Any, t: Target, path: str = "/user/records", **query: Any) -> Any:
    # Fully percent-encoded, as the uploader sends it: a raw ' is refused (as on the server).
    encoded = urlencode({k: str(v) for k, v in query.items()}, quote_via=quote, safe="")
    status, reply, _ = await call(s, "GET", URL(f"{t.api}{path}?{encoded}", encoded=True), t)
    assert status == 200, reply
    return reply


async def _ids(s: Any, t: Target, q: str, path: str = "/user/records") -> set[str]:
    reply = await _search(s, t, path, q=q, size=100)
    assert reply["hits"]["total"] == len(reply["hits"]["hits"])
    return {h["id"] for h in reply["hits"]["hits"]}


def _phrase(title: str) -> str:
    """What the uploader sends: the title in a phrase, with ``"`` and ``\\`` escaped."""
    return 'metadata.title:"' + title.replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Simulation run 10", ("simulation", "run", "10")),
        ('"Curly" title', ("curly", "title")),
        ("run_1 don't e.g. 1.5 1,000", ("run_1", "don't", "e.g", "1.5", "1,000")),
        ("a-b/c (d) [e] x.1", ("a", "b", "c", "d", "e", "x", "1")),
        ("Café 日本", ("café", "日", "本")),
        ("_ __ a_", ("a_",)),
        ("", ()),
    ],
)
def test_standard_analyser_tokens(text: str, expected: tuple[str, ...]) -> None:
    assert tokens(text) == expected


async def test_words_and_phrases_match_tokens_not_substrings(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        titles = {
            "run1": "Simulation run 1",
            "run10": "Simulation run 10",
            "curly": "“Curly” title",
            "apos": "Don’t panic",
            "back": 'Back\\slash "quoted" x',
            "other": "Gamma spectra",
        }
        ids = {k: (await create(t, s, body(v)))["id"] for k, v in titles.items()}
        rid = {v: k for k, v in ids.items()}

        async def find(q: str) -> set[str]:
            return {rid[i] for i in await _ids(s, t, q)}

        assert await find(_phrase("Simulation run 1")) == {"run1"}
        assert await find(_phrase("simulation RUN 10")) == {"run10"}
        assert await find(_phrase("run")) == {"run1", "run10"}
        assert await find(_phrase("Simulation 1")) == set()  # not consecutive
        assert await find("1") == {"run1"} and await find("10") == {"run10"}
        assert await find("simul") == set() and await find("simul*") == {"run1", "run10"}
        # stored cleaned ('"Curly" title'): the cleaned phrase finds it, quotes separate tokens
        assert await find(_phrase('"Curly" title')) == {"curly"}
        assert await find(_phrase("“Curly” title")) == {"curly"}
        assert await find(_phrase("Don't panic")) == {"apos"}
        assert await find(_phrase("Don’t panic")) == set()  # token "don’t" is not "don't"
        assert await find(_phrase(titles["back"])) == {"back"}
        uploader = (
            'metadata.title:"Simulation run 1" OR metadata.title:"\\"Curly\\" title" '
            'OR metadata.title:"x"'
        )
        assert await find(uploader) == {"run1", "curly", "back"}  # "x" is a token of "back"
        assert await find("gamma simulation") == {"run1", "run10", "other"}  # default OR
        assert await find("simulation AND 10") == {"run10"}
        assert await find("simulation AND NOT 10") == {"run1"}
        assert await find("simulation -10") == {"run1"}
        assert await find("+simulation 10") == {"run1", "run10"}
        assert await find("-simulation") == {"curly", "apos", "back", "other"}
        assert await find("(gamma OR curly) AND (spectra OR title)") == {"curly", "other"}
        assert await find("metadata.title:(gamma panic)") == {"other", "apos"}
        assert await find('title:"Gamma spectra"') == set()  # no such field in the index
        assert await find('gamma AND metadata.title:"--"') == {"other"}  # no tokens: no clause
        assert await find('metadata.title.keyword:"Gamma spectra"') == {"other"}
        assert await find(f"id:{ids['run10']}") == {"run10"}
        assert await find(ids["run10"]) == {"run10"}  # the all-fields default includes id
        assert await find(f"parent.id:{sb.records()[0]['parent_id']}") == {"run1"}
        assert await find("ada") == set(titles)  # creator names are searched too
        assert await find("!!!") == set()  # analyses to nothing: no hits, no error


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('Café "Curly" run-1', ("cafe", "curly", "run1")),
        ("Don't e.g. 1.5 x_y", ("dont", "eg", "15", "xy")),
        ("Don’t straße Ångström", ("don’t", "strasse", "angstrom")),
        ("a + b = c €", ("a", "b", "c")),
    ],
)
def test_accent_analyser_tokens(text: str, expected: tuple[str, ...]) -> None:
    assert accent_tokens(text) == expected


async def test_published_records_use_the_records_index_analyser(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        title = "Café “Curly” run-1 Don’t"
        pub = await create(t, s, body(title, enabled=False))
        status, _, _ = await call(s, "POST", pub["links"]["publish"], t)
        assert status == 202
        draft = await create(t, s, body(title))
        cleaned = draft["metadata"]["title"]
        assert cleaned == 'Café "Curly" run-1 Don\'t'
        both = {pub["id"], draft["id"]}
        assert await _ids(s, t, _phrase(cleaned)) == both  # the uploader's look-up
        assert await _ids(s, t, _phrase(cleaned), "/records") == {pub["id"]}
        for q, on_records, on_user in (
            ('metadata.title:"cafe"', {pub["id"]}, {pub["id"]}),  # folded in records only
            ('metadata.title:"café"', {pub["id"]}, both),
            ('metadata.title:"run1"', {pub["id"]}, {pub["id"]}),  # "-" deleted, not split
            ('metadata.title:"run 1"', set(), {draft["id"]}),
            ('metadata.title:"don\'t"', {pub["id"]}, both),  # "dont" on both sides
            ('metadata.title:"don’t"', set(), set()),  # "’" is kept: "don’t" is no "don't"
            ('metadata.title:"dont"', {pub["id"]}, {pub["id"]}),
            ('metadata.title.original:"run 1"', {pub["id"]}, {pub["id"]}),
            ("dataset", set(), {draft["id"]}),  # resource_type is no default field of records
            ("cafe", {pub["id"]}, {pub["id"]}),
        ):
            assert await _ids(s, t, q, "/records") == on_records, q
            assert await _ids(s, t, q) == on_user, q


def test_v12_records_index_uses_the_standard_analyser() -> None:
    """The bigmap profile (InvenioRDM v12, record-v6.0.0): no accent_analyzer yet."""
    meta = {"title": "Café run-1", "resource_type": {"id": "dataset"}}
    snap = Snapshot(meta, {"record": "public"}, True, None, [], {}, {}, 1, "2026-01-01")
    rec = Record("abcde-12345", Parent("fghjk-67890", "1"), 1, "2026-01-01", 0.0)
    rec.published = snap
    for q, v6, v7 in (
        ('metadata.title:"run 1"', True, False),
        ('metadata.title:"run1"', False, True),
        ('metadata.title:"cafe"', False, True),
        ("dataset", False, False),  # not a default field of either records index
    ):
        assert search.matcher(q, records_index("bigmap"))(rec, snap) is v6, q
        assert search.matcher(q, records_index("invenio"))(rec, snap) is v7, q


async def test_unparsable_queries_fall_back_to_multi_match(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        gamma = (await create(t, s, body("Gamma spectra")))["id"]
        await create(t, s, body("Beta decay"))
        for q in ('"gamma', "gamma AND", "(gamma", "gamma)", "OR gamma", "gamma title:"):
            assert await _ids(s, t, q) == {gamma}, q


async def test_identifier_marker_and_long_or_query(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        drafts = [await create(t, s, body(f"Batch record {n}")) for n in range(40)]
        marker = drafts[7]["metadata"]["identifiers"][0]["identifier"]
        q = f'metadata.identifiers.identifier:"{marker}"'
        assert await _ids(s, t, q) == {drafts[7]["id"]}
        assert await _ids(s, t, q.replace("bulk:", "bulk:0")) == set()
        wanted = [3, 17, 39]
        terms = [_phrase(f"Batch record {n}") for n in wanted]
        terms += [_phrase(f"Absent “quoted” title number {n}") for n in range(60)]
        q = " OR ".join(terms)
        assert len(q) > 3000
        started = time.monotonic()
        assert await _ids(s, t, q) == {drafts[n]["id"] for n in wanted}
        assert time.monotonic() - started < 5


async def test_pagination_totals_links_and_limits(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        ids = []
        for n in range(5):
            draft = await create(t, s, body(f"Paged record {n}", enabled=False))
            status, _, _ = await call(s, "POST", draft["links"]["publish"], t)
            assert status == 202
            ids.append(draft["id"])
        for path in ("/user/records", "/records"):
            seen: list[str] = []
            for page, has_next, has_prev in ((1, True, False), (2, True, True), (3, False, True)):
                r = await _search(s, t, path, sort="oldest", size=2, page=page)
                assert r["hits"]["total"] == 5 and r["page"] == page
                assert ("next" in r["links"], "prev" in r["links"]) == (has_next, has_prev)
                if has_next:
                    assert URL(r["links"]["next"]).query["page"] == str(page + 1)
                seen += [h["id"] for h in r["hits"]["hits"]]
            assert seen == ids
            r = await _search(s, t, path, size=2, page=4)
            assert r["hits"]["hits"] == [] and r["hits"]["total"] == 5
            assert "next" not in r["links"] and "prev" in r["links"]
            r = await _search(s, t, path, size=2, page=5)
            assert "prev" not in r["links"]  # page 4 would start past the total too
            r = await _search(s, t, path, q="paged", size=2)
            assert r["hits"]["total"] == 5 and len(r["hits"]["hits"]) == 2
            # valid while the page starts inside the first 10,000 (RR Pagination.valid)
            for size, page in ((10_000, 1), (3_000, 4), (100, 100)):
                await _search(s, t, path, size=size, page=page)
            for size, page in ((10_000, 2), (100, 101), (0, 1), (10, 0), (-1, 1)):
                url = URL(f"{t.api}{path}").with_query(size=size, page=page)
                status, reply, _ = await call(s, "GET", str(url), t)
                assert (status, reply["message"]) == (400, "Invalid pagination parameters.")


async def test_index_delay_hides_new_drafts_until_it_passes(running: Any) -> None:
    async with running(index_delay_s=0.4) as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s, body("Delayed draft"))
        assert await _ids(s, t, f"id:{draft['id']}") == set()
        assert await _ids(s, t, _phrase("Delayed draft")) == set()
        await anyio.sleep(0.5)
        assert await _ids(s, t, _phrase("Delayed draft")) == {draft["id"]}
        status, _, _ = await call(s, "DELETE", draft["links"]["self"], t)
        assert status == 204
        assert await _ids(s, t, _phrase("Delayed draft")) == set()  # deletes refresh at once


async def test_deleted_draft_leaves_search_at_once(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        keep = await create(t, s, body("Kept draft"))
        gone = await create(t, s, body("Gone draft"))
        assert await _ids(s, t, "draft") == {keep["id"], gone["id"]}
        status, _, _ = await call(s, "DELETE", gone["links"]["self"], t)
        assert status == 204
        assert await _ids(s, t, "draft") == {keep["id"]}


async def test_raw_apostrophe_or_dollar_in_a_query_is_refused_as_on_the_server(
    running: Any,
) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        for raw in ("q=d'une", "q=%24x$"):
            url = URL(f"{t.api}/user/records?{raw}", encoded=True)
            status, reply, _ = await call(s, "GET", url, t)
            assert status == 400 and reply["message"].startswith("Error trying to decode"), raw
        url = URL(f"{t.api}/user/records?q=d%27une%20%24x", encoded=True)
        assert (await call(s, "GET", url, t))[0] == 200
