"""What a batch produced: per record outcomes and batch counters (the report and summary)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    PUBLISHED = "published"  # published now
    IN_REVIEW = "in-review"  # submitted to a community that reviews first
    DRAFT = "draft"  # --draft-only: files committed, not shared
    SKIPPED = "skipped"  # already done in an earlier run: no request sent
    CHANGED = "changed"  # done earlier, but the folder changed since (needs a decision)
    INVALID = "invalid"  # refused by local validation, nothing sent
    FAILED = "failed"  # the server refused, or retries ran out
    INTERRUPTED = "interrupted"  # stopped by a signal; a rerun resumes it

    @property
    def ok(self) -> bool:
        return self in (Outcome.PUBLISHED, Outcome.IN_REVIEW, Outcome.DRAFT, Outcome.SKIPPED)


@dataclass(frozen=True)
class FileResult:
    key: str
    size: int
    md5: str


@dataclass(frozen=True)
class RecordResult:
    folder: str
    outcome: Outcome
    record_id: str | None = None
    record_url: str | None = None
    files: tuple[FileResult, ...] = ()
    error: str | None = None
    server_message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "state": self.outcome.value,
            "record_id": self.record_id,
            "record_url": self.record_url,
            "files": [{"key": f.key, "size": f.size, "md5": f.md5} for f in self.files],
            "error": self.error,
            "server_message": self.server_message,
        }


@dataclass
class Counters:
    """Tallies of one run, shown in the summary and the report (only touched on the loop).

    The retry and byte tallies are fed from the event stream (``events.count``, called by
    ``InvenioClient.report`` for every event it hands on), so a log of the events gives the
    same numbers:

    * ``retries`` / ``by_reason``: one per ``Retrying`` event, that is one per resend of any
      call (the client's retry loop, a stalled or refused upload, a commit, a checksum
      re-upload), keyed by the event's stable reason ("connect", "HTTP 503", ...);
    * ``pauses`` / ``paused_seconds``: one per ``Paused`` event (a 429 pausing the batch);
    * ``bytes_sent``: every byte of file content put on the wire (handed to a connection),
      resends included: what the network carried;
    * ``bytes_resent``: the part of ``bytes_sent`` that was a repeat, the bytes of upload
      attempts that were later sent again from byte 0 (a ``BytesSent`` event with a negative
      ``n`` takes an attempt back). ``bytes_sent - bytes_resent`` is the content delivered
      (plus the part of a last, failed attempt).

    ``requests``, ``writes``, ``responses_429`` and ``gave_up`` have no event of their own and
    are counted by the client as it sends.
    """

    requests: int = 0
    writes: int = 0
    retries: int = 0
    responses_429: int = 0
    pauses: int = 0
    paused_seconds: float = 0.0
    gave_up: int = 0
    bytes_sent: int = 0
    bytes_resent: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "write_requests": self.writes,
            "retries": self.retries,
            "responses_429": self.responses_429,
            "pauses": self.pauses,
            "paused_seconds": round(self.paused_seconds, 3),
            "gave_up": self.gave_up,
            "bytes_sent": self.bytes_sent,
            "bytes_resent": self.bytes_resent,
            "retries_by_reason": dict(self.by_reason),
        }


@dataclass(frozen=True)
class BatchResult:
    records: tuple[RecordResult, ...]
    counters: Counters
    seconds: float
    interrupted: bool = False
    fatal: str | None = None

    def count(self, outcome: Outcome) -> int:
        return sum(1 for r in self.records if r.outcome is outcome)

    @property
    def exit_code(self) -> int:
        """0 all done; 1 some records failed; 3 fatal for the batch; 75 interrupted."""
        if self.fatal:
            return 3
        if self.interrupted:
            return 75
        return 0 if all(r.outcome.ok for r in self.records) else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "summary": {o.value: self.count(o) for o in Outcome},
            "seconds": round(self.seconds, 3),
            "interrupted": self.interrupted,
            "fatal": self.fatal,
            "counters": self.counters.to_json(),
            "records": [r.to_json() for r in self.records],
        }
