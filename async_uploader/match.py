"""Which record on the server belongs to which folder, and which draft may be deleted.

Pure decisions (no I/O), each a row in ``tests/unit/test_match.py``. The record steps
(``reconcile.py``) do the searching and the reading, then ask here.

Three rules carry the weight:

* **Titles are compared the way the server stores them.** InvenioRDM loads titles through
  marshmallow-utils' ``SanitizedUnicode``: strip, ``ftfy.fix_text`` (curly quotes
  straightened, ligatures and full-width letters folded, NFC, HTML entities outside tags
  unescaped), characters invalid in XML dropped, U+200B removed. ``clean_text`` does the
  same with the same library, and both sides of a comparison are cleaned, so a difference
  in ftfy versions between client and server (v12 ships ftfy 4, v14 ftfy 6) only matters
  where the two versions disagree about one string, not about cleaning in general.
* **Time comes from the server's clock.** A draft's ``created`` is the server's time; the
  window of a create attempt is measured with ``ServerClock``, fed by the ``Date`` header
  of every answer, never with the local clock (a node with a skewed clock would otherwise
  miss its own draft, or claim someone else's).
* **Deleting needs proof.** A draft is deleted only when it is a never-published, untouched
  draft with our title, made inside the window of one of this run's own create attempts for
  this folder, and no folder has claimed it. Anything else is reported and left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import ftfy

# Slack on each side of a create attempt's window: the Date header has 1 s resolution, the
# server stamps `created` a little after it received the request, and answers lag.
WINDOW_SLACK = timedelta(seconds=5)
# Entries written before the server's clock was tracked used the local clock: wide slack.
LOCAL_CLOCK_SLACK = timedelta(minutes=2)
# A draft whose `updated` is this much later than its `created` was changed after creation.
UNTOUCHED = timedelta(seconds=5)
# Query strings stay well under common request-line limits (gunicorn: 4094 bytes for the
# whole request line), counted percent-encoded, as they travel.
MAX_QUERY_CHARS = 2500
_UNWANTED = "\u200b"


def clean_text(value: str) -> str:
    """The text as InvenioRDM stores it (marshmallow-utils ``sanitize_unicode``)."""
    fixed = ftfy.fix_text(value.strip())
    kept = "".join(ch for ch in fixed if _valid_xml_char(ord(ch)))
    return kept.replace(_UNWANTED, "")


def _valid_xml_char(cp: int) -> bool:
    return (
        0x20 <= cp <= 0xD7FF
        or cp in (0x9, 0xA, 0xD)
        or 0xE000 <= cp <= 0xFFFD
        or 0x10000 <= cp <= 0x10FFFF
    )


def same_title(local: str, stored: Any) -> bool:
    """Whether the server stores ``local`` as ``stored``. Cleaning is not quite idempotent
    (strip runs before U+200B goes, so "a \u200b" is stored as "a "), hence both forms."""
    if not isinstance(stored, str):
        return False
    mine = clean_text(local)
    return mine == stored or mine == clean_text(stored)


def title_queries(titles: Iterable[str], max_chars: int = MAX_QUERY_CHARS) -> list[str]:
    """Search queries that together find every record with one of ``titles``.

    One query ORs many title phrases (so a first run of 1,000 folders costs a few dozen
    searches, not 1,000); each stays under ``max_chars`` once percent-encoded, so neither
    the server (gunicorn refuses request lines over 4 KiB with 414) nor a proxy refuses it.
    """
    queries: list[str] = []
    current: list[str] = []
    size = 0
    for title in dict.fromkeys(clean_text(t) for t in titles):
        clause = f'metadata.title:"{_escape(title)}"'
        cost = len(quote(clause, safe="")) + len("%20OR%20")
        if current and size + cost > max_chars:
            queries.append(" OR ".join(current))
            current, size = [], 0
        current.append(clause)
        size += cost
    if current:
        queries.append(" OR ".join(current))
    return queries


def _escape(phrase: str) -> str:
    # Inside a query_string phrase only the backslash and the double quote are special.
    return phrase.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class Hit:
    """The facts of one search hit that the decisions below need."""

    id: str
    title: str
    created: datetime | None
    updated: datetime | None
    published: bool
    files: int | None  # entries on the record, when the hit says

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> Hit:
        files = data.get("files") if isinstance(data.get("files"), dict) else {}
        count = files.get("count") if isinstance(files, dict) else None
        entries = files.get("entries") if isinstance(files, dict) else None
        if count is None and isinstance(entries, dict | list):
            count = len(entries)
        return cls(
            id=str(data.get("id")),
            title=str(data.get("metadata", {}).get("title", "")),
            created=parse_time(data.get("created")),
            updated=parse_time(data.get("updated")),
            published=bool(data.get("is_published")),
            files=count if isinstance(count, int) else None,
        )


def candidates(
    titles: Mapping[str, str], hits: Iterable[Mapping[str, Any]]
) -> dict[str, tuple[Hit, ...]]:
    """Per folder (``folder -> title``), the hits whose stored title is its title, oldest
    first. Same-titled folders see the same hits: claims decide who gets which."""
    by_title: dict[str, list[Hit]] = {}
    seen: set[str] = set()
    for data in hits:
        hit = Hit.of(data)
        if hit.id in seen:
            continue
        seen.add(hit.id)
        for key in {hit.title, clean_text(hit.title)}:
            by_title.setdefault(key, []).append(hit)
    out: dict[str, tuple[Hit, ...]] = {}
    for folder, title in titles.items():
        found = by_title.get(clean_text(title))
        if found:
            out[folder] = tuple(sorted(found, key=_age))
    return out


def _age(hit: Hit) -> tuple[bool, datetime]:
    return (hit.created is None, hit.created or datetime.max.replace(tzinfo=UTC))


@dataclass(frozen=True)
class Window:
    """When this folder's create attempts were sent, on the server's clock."""

    start: datetime
    end: datetime | None = None  # None: still open (now)
    slack: timedelta = WINDOW_SLACK

    def contains(self, moment: datetime | None) -> bool:
        if moment is None:
            return False
        if moment < self.start - self.slack:
            return False
        return self.end is None or moment <= self.end + self.slack


def lost_draft_candidates(
    title: str, hits: Iterable[Hit], window: Window | None, claimed: Iterable[str]
) -> list[Hit]:
    """Drafts a lost create of this folder may have made, oldest first.

    With a window (the create's time is known): unpublished drafts with our title made in
    it. Without one (the journal entry was lost or unreadable): every hit with our title,
    published ones included; the caller confirms each by its files before claiming it.
    """
    taken = set(claimed)
    found = []
    for hit in hits:
        if hit.id in taken or not same_title(title, hit.title):
            continue
        if window is not None and (hit.published or not window.contains(hit.created)):
            continue
        found.append(hit)
    return sorted(found, key=_age)


def may_delete(hit: Hit, title: str, window: Window, claimed: Iterable[str]) -> str | None:
    """``None`` when this run's own create attempt provably made ``hit``; else why not.

    Only then may the sweep delete it: a wrong delete destroys someone's work, a wrong
    keep costs one orphan draft that the report names.
    """
    if hit.id in set(claimed):
        return "a folder of this batch owns it"
    if hit.published:
        return "it is published"
    if not same_title(title, hit.title):
        return "its title differs"
    if not window.contains(hit.created):
        return "it was not made during this folder's create attempts"
    if hit.files:
        return "it has files"
    if hit.created is None or hit.updated is None or hit.updated - hit.created > UNTOUCHED:
        return "it was changed after it was made"
    return None


def files_match(server: Mapping[str, Any], local_md5: Mapping[str, str]) -> bool:
    """A record is this folder's when it holds exactly its files, byte for byte (md5)."""
    return set(server) == set(local_md5) and all(
        server[key] == f"md5:{md5}" for key, md5 in local_md5.items()
    )


def draft_reusable(server: Mapping[str, tuple[str, Any]], local_md5: Mapping[str, str]) -> bool:
    """A found draft may serve this folder when it holds nothing the folder lacks.

    ``server`` maps key -> (status, checksum); ``local_md5`` has the local md5 of at least
    the keys completed on the server. Pending entries and missing keys are fine: the files
    step deletes and re-uploads what is not right.
    """
    for key, (status, checksum) in server.items():
        if key not in local_md5 and status == "completed":
            return False
        if status == "completed" and checksum != f"md5:{local_md5[key]}":
            return False
    return True


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class ServerClock:
    """The server's time, estimated from ``Date`` headers (1 s resolution, floor).

    ``offset`` keeps the largest (Date - local receive time) seen lately: each sample is a
    lower bound of the true offset, so the largest is the tightest. Without any sample the
    local clock is used, and ``known`` says so (callers then widen their windows).
    """

    def __init__(self) -> None:
        self.offset: timedelta | None = None
        self._samples: list[timedelta] = []

    @property
    def known(self) -> bool:
        return self.offset is not None

    def observe(self, date_header: str | None, local: datetime) -> None:
        if not date_header:
            return
        try:
            server = parsedate_to_datetime(date_header)
        except (TypeError, ValueError):
            return
        if server.tzinfo is None:
            return
        self._samples = [*self._samples[-31:], server - local]
        self.offset = max(self._samples)

    def now(self, local: datetime | None = None) -> datetime:
        local = local or datetime.now(UTC)
        return local + (self.offset or timedelta(0))


def window_for(started: str | None, clock: str, end: datetime | None = None) -> Window | None:
    """The window of a journaled attempt (``clock`` says whose clock wrote ``started``)."""
    start = parse_time(started)
    if start is None:
        return None
    return Window(start, end, WINDOW_SLACK if clock == "server" else LOCAL_CLOCK_SLACK)
