"""Tables for the reconciliation policy: title cleaning, candidates, claims, windows, deletes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from async_uploader.match import (
    Hit,
    ServerClock,
    Window,
    candidates,
    clean_text,
    draft_reusable,
    files_match,
    lost_draft_candidates,
    may_delete,
    same_title,
    title_queries,
    window_for,
)

T0 = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("“Curly” quotes", '"Curly" quotes'),
        ("‘single’ quotes", "'single' quotes"),
        ("  padded title  ", "padded title"),
        ("trailing space ", "trailing space"),
        ("zero\u200bwidth", "zerowidth"),
        ("ﬁle ﬂow", "file flow"),  # Latin ligatures folded
        ("ＡＢＣ ｒｕｎ", "ABC run"),  # full-width letters folded
        ("e\u0301te\u0301", "été"),  # NFD -> NFC
        ("bell\x07char", "bellchar"),  # control characters dropped
        ("Ni &amp; Co", "Ni & Co"),  # HTML entities outside tags unescaped, as ftfy does
        ("plain title", "plain title"),
        # strip() runs before U+200B is removed: the server keeps this trailing space
        ("edge \u200b", "edge "),
    ],
)
def test_clean_text_is_what_the_server_stores(sent: str, stored: str) -> None:
    assert clean_text(sent) == stored
    assert same_title(sent, stored)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Run 1", "Run 1", True),
        ("Run 1", "Run 10", False),
        ("Run 1", "run 1", False),  # the server keeps case
        ("“A”", '"A"', True),
        ("A", None, False),
    ],
)
def test_same_title(a: str, b: Any, same: bool) -> None:
    assert same_title(a, b) is same


def test_title_queries_or_many_titles_escape_and_stay_short() -> None:
    titles = [f"Simulation run {i}" for i in range(200)] + ['A "quoted" \\ title', "“Curly”"]
    queries = title_queries(titles, max_chars=500)
    assert len(queries) > 1
    assert all(len(quote(q, safe="")) <= 500 for q in queries)  # as they travel
    joined = " OR ".join(queries)
    assert joined.count("metadata.title:") == 202  # every title once
    assert 'metadata.title:"A \\"quoted\\" \\\\ title"' in joined
    assert 'metadata.title:"\\"Curly\\""' in joined  # cleaned before quoting
    assert title_queries(["x", "x", " x "]) == ['metadata.title:"x"']  # deduplicated


def hit(
    hid: str,
    title: str = "Run 1",
    created: datetime | None = T0,
    *,
    published: bool = False,
    files: int | None = 0,
    updated: datetime | None = None,
) -> Hit:
    return Hit(hid, title, created, updated or created, published, files)


def raw(hid: str, title: str, created: datetime) -> dict[str, Any]:
    return {"id": hid, "metadata": {"title": title}, "created": created.isoformat()}


def test_candidates_group_by_stored_title_oldest_first() -> None:
    hits = [
        raw("b", '"Curly" run', T0 + timedelta(seconds=5)),
        raw("a", '"Curly" run', T0),
        raw("c", "Other", T0),
        raw("a", '"Curly" run', T0),  # a second page may repeat a hit
    ]
    found = candidates({"0": "“Curly” run ", "1": '"Curly" run', "2": "Missing"}, hits)
    assert [h.id for h in found["0"]] == ["a", "b"]
    assert [h.id for h in found["1"]] == ["a", "b"]  # same-titled folders see the same hits
    assert "2" not in found
    # Stored "edge " (the server stripped before dropping U+200B) is found for "edge \u200b".
    assert candidates({"0": "edge \u200b"}, [raw("e", "edge ", T0)])["0"][0].id == "e"


@pytest.mark.parametrize(
    ("the_hit", "window", "claimed", "expected"),
    [
        (hit("a"), Window(T0), set(), ["a"]),
        (hit("a"), Window(T0), {"a"}, []),  # claimed by a folder of this batch
        (hit("a", title="Run 10"), Window(T0), set(), []),  # another title
        (hit("a", published=True), Window(T0), set(), []),  # a lost create makes a draft
        (hit("a", published=True), None, set(), ["a"]),  # no window: confirm by files
        (hit("a", created=T0 - timedelta(minutes=1)), Window(T0), set(), []),  # before
        (hit("a", created=T0 - timedelta(seconds=3)), Window(T0), set(), ["a"]),  # slack
        (hit("a", created=T0 + timedelta(minutes=1)), Window(T0, T0), set(), []),  # after
        (hit("a", created=None), Window(T0), set(), []),
    ],
)
def test_lost_draft_candidates(
    the_hit: Hit, window: Window | None, claimed: set[str], expected: list[str]
) -> None:
    found = lost_draft_candidates("Run 1", [the_hit], window, claimed)
    assert [h.id for h in found] == expected


@pytest.mark.parametrize(
    ("the_hit", "claimed", "allowed"),
    [
        (hit("a"), set(), True),  # untouched same-titled draft made during our attempts
        (hit("a"), {"a"}, False),  # another folder owns it
        (hit("a", published=True), set(), False),
        (hit("a", title="Run 10"), set(), False),
        (hit("a", created=T0 - timedelta(minutes=5)), set(), False),  # before our attempts
        (hit("a", files=1), set(), False),  # someone put files on it
        (hit("a", updated=T0 + timedelta(minutes=3)), set(), False),  # edited since
        (hit("a", created=None), set(), False),
        (hit("a", files=None), set(), True),  # a hit without a file count: no files known
    ],
)
def test_may_delete_only_what_this_attempt_provably_made(
    the_hit: Hit, claimed: set[str], allowed: bool
) -> None:
    reason = may_delete(the_hit, "Run 1", Window(T0), claimed)
    assert (reason is None) is allowed


def test_files_match_and_draft_reusable() -> None:
    local = {"a.csv": "11", "b.bin": "22"}
    assert files_match({"a.csv": "md5:11", "b.bin": "md5:22"}, local)
    assert not files_match({"a.csv": "md5:11"}, local)  # a file missing
    assert not files_match({"a.csv": "md5:11", "b.bin": "md5:99"}, local)  # other bytes
    assert not files_match({**{"a.csv": "md5:11", "b.bin": "md5:22"}, "c": "md5:3"}, local)
    assert draft_reusable({}, local)  # an empty draft
    assert draft_reusable({"a.csv": ("pending", None)}, local)  # pending: re-uploaded
    assert draft_reusable({"a.csv": ("completed", "md5:11")}, local)
    assert not draft_reusable({"a.csv": ("completed", "md5:99")}, local)
    assert not draft_reusable({"other": ("completed", "md5:11")}, local)


def test_server_clock_from_date_headers() -> None:
    clock = ServerClock()
    assert not clock.known
    local = datetime(2026, 12, 3, 12, 0, 0, 400_000, tzinfo=UTC)
    # The server runs 90 s ahead; Date has whole seconds (floor).
    clock.observe("Thu, 03 Dec 2026 12:01:30 GMT", local)
    clock.observe("not a date", local)
    clock.observe(None, local)
    assert clock.known
    assert clock.now(local) - (local + timedelta(seconds=90)) < timedelta(seconds=1)
    # A later, tighter sample wins (each sample is a lower bound).
    clock.observe("Thu, 03 Dec 2026 12:01:31 GMT", local + timedelta(milliseconds=700))
    assert clock.offset == timedelta(seconds=89, milliseconds=900)


def test_window_slack_depends_on_the_clock() -> None:
    server = window_for(T0.isoformat(), "server")
    local = window_for(T0.isoformat(), "local")
    assert server is not None and local is not None
    early = T0 - timedelta(seconds=30)
    assert not server.contains(early)
    assert local.contains(early)  # v1 entries: local clock, wide slack
    assert window_for(None, "server") is None
