"""The NDJSON event log, fed synthetic events with a fake clock (no network, no sleeping)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from async_uploader.errors import ConfigError
from async_uploader.eventlog import EventLog
from async_uploader.events import (
    BatchDone,
    BatchStarted,
    BytesSent,
    FileDone,
    Notice,
    Paused,
    RecordDone,
    RecordStarted,
    Retrying,
    tee,
)
from async_uploader.results import BatchResult, Counters, FileResult, Outcome, RecordResult


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def make_log() -> tuple[EventLog, io.StringIO, Clock]:
    out, clock = io.StringIO(), Clock()
    return EventLog(out, "test", owned=False, clock=clock, now=lambda: "T"), out, clock


def test_bytes_are_coalesced_per_file_per_second_and_add_up() -> None:
    log, out, clock = make_log()
    for _ in range(10):  # ten chunks within one second: the first is written, the rest wait
        log(BytesSent("1", "a.bin", 100))
        clock.t += 0.05
    log(BytesSent("1", "b.bin", 7))  # another file has its own second
    clock.t += 1.0
    log(BytesSent("1", "a.bin", -300))  # a resend takes bytes back
    log(BytesSent("1", "a.bin", 50))
    log(FileDone("1", "a.bin", 750, "abc"))
    fields = ("event", "key", "bytes", "taken_back", "sent")
    kinds = [tuple(e.get(f) for f in fields) for e in lines(out)]
    assert kinds == [
        ("progress", "a.bin", 100, 0, 100),
        ("progress", "b.bin", 7, 0, 7),
        ("progress", "a.bin", 900, 300, 700),  # 900 waiting; 300 taken back by a resend
        ("progress", "a.bin", 50, 0, 750),  # the rest, just before file_done
        ("file_done", "a.bin", None, None, None),
    ]


def test_record_and_batch_end_flush_what_is_pending() -> None:
    log, out, _ = make_log()
    log(BytesSent("1", "a", 10))
    log(BytesSent("1", "a", 5))  # pending: the record fails before the file is done
    log(BytesSent("2", "b", 3))
    log(BytesSent("2", "b", 4))
    log(RecordDone(RecordResult("1", Outcome.FAILED, error="refused")))
    log(BatchDone(BatchResult((), Counters(bytes_sent=22), 1.0)))
    events = lines(out)
    assert sum(e["bytes"] for e in events if e["event"] == "progress") == 22
    assert [e["event"] for e in events][-3:] == ["record_done", "progress", "batch_done"]


def test_every_folder_gets_one_record_done_and_batch_done_has_the_summary() -> None:
    log, out, _ = make_log()
    published = RecordResult("2", Outcome.PUBLISHED, "id-2", files=(FileResult("a", 1, "m"),))
    log(BatchStarted(records=4, to_upload=2, total_bytes=1, already_done=1))
    log(RecordStarted("2"))
    log(Retrying("PUT", "http://x/api", "HTTP 503", 1, 0.5))
    log(Paused(2.0, "HTTP 429 on GET http://x/api"))
    log(Notice(None, "state in /tmp"))
    log(RecordDone(published))
    counters = Counters(retries=1, pauses=1, responses_429=1, paused_seconds=2.0)
    records = (
        RecordResult("0", Outcome.SKIPPED, "id-0"),  # done in an earlier run: no RecordDone
        RecordResult("1", Outcome.INVALID, error="bad JSON"),
        published,
        RecordResult("3", Outcome.CHANGED, "id-3", error="changed"),  # settled in the task
    )
    log(BatchDone(BatchResult(records, counters, 3.0)))
    events = lines(out)
    assert all(e["time"] == "T" for e in events)
    assert [e["event"] for e in events] == [
        "plan",
        "record_start",
        "retry",
        "pause",
        "notice",
        "record_done",
        "record_done",
        "record_done",
        "record_done",
        "batch_done",
    ]
    assert events[0] == {
        "event": "plan",
        "time": "T",
        "records": 4,
        "to_upload": 2,
        "total_bytes": 1,
        "already_done": 1,
    }
    assert events[4]["folder"] is None
    done = [e for e in events if e["event"] == "record_done"]
    assert [(e["folder"], e["state"], e["late"]) for e in done] == [
        ("2", "published", False),
        ("0", "skipped", True),
        ("1", "invalid", True),
        ("3", "changed", True),
    ]
    assert {k: v for k, v in done[0].items() if k not in ("event", "time", "late")} == (
        published.to_json()
    )
    batch = events[-1]
    assert "records" not in batch and batch["exit_code"] == 1
    assert batch["summary"]["skipped"] == 1 and batch["counters"] == counters.to_json()


class Broken(io.StringIO):
    def write(self, s: str) -> int:
        raise OSError(28, "No space left on device")


def test_a_write_error_is_reported_once_and_the_log_stops() -> None:
    errors = io.StringIO()
    log = EventLog(Broken(), "full.ndjson", owned=True, errors=errors)
    log(RecordStarted("1"))
    log(RecordStarted("2"))
    log(BatchDone(BatchResult((RecordResult("1", Outcome.PUBLISHED),), Counters(), 1.0)))
    log.close()
    assert log.broken
    assert errors.getvalue().count("cannot write the event log (full.ndjson)") == 1
    assert "No space left on device" in errors.getvalue()


def test_open_appends_marks_the_run_and_refuses_an_unwritable_path(tmp_path: Path) -> None:
    path = tmp_path / "events.ndjson"
    path.write_text('{"event": "batch_done"}\n')  # an earlier run's log is kept
    log = EventLog.open(str(path), tmp_path)
    log(RecordStarted("1"))
    log.close()
    kinds = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert kinds == ["batch_done", "batch_start", "record_start"]
    with pytest.raises(ConfigError, match="cannot open the event log"):
        EventLog.open(str(tmp_path / "no" / "such" / "dir.ndjson"))


def test_tee_hands_each_event_to_every_reporter_in_order() -> None:
    seen: list[tuple[str, object]] = []
    both = tee(lambda e: seen.append(("a", e)), lambda e: seen.append(("b", e)))
    event = RecordStarted("7")
    both(event)
    assert seen == [("a", event), ("b", event)]
