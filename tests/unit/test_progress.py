"""The CLI's renderers, fed synthetic events (the renderer is CLI code, not the library)."""

from __future__ import annotations

import io

from async_uploader.events import (
    BatchDone,
    BatchStarted,
    BytesSent,
    Paused,
    RecordDone,
    RecordStarted,
    Retrying,
)
from async_uploader.progress import BarRenderer, LogRenderer
from async_uploader.results import BatchResult, Counters, Outcome, RecordResult

RERUN = BatchStarted(records=10_005, to_upload=5, total_bytes=500, already_done=10_000)


def feed_rerun(renderer: BarRenderer | LogRenderer, *, interrupted: bool = False) -> None:
    """A rerun of 10,000 finished folders plus 5 new ones; the 5th new one turns out to be
    settled in its task (no RecordDone), as a changed published folder is."""
    renderer(RERUN)
    for i in range(4):
        renderer(RecordStarted(str(i)))
        renderer(BytesSent(str(i), "a", 100))
        renderer(Retrying("PUT", "http://x/api/files", "HTTP 503", 1, 0.0))
        renderer(RecordDone(RecordResult(str(i), Outcome.PUBLISHED)))
    renderer(Paused(1.5, "HTTP 429 on GET http://x/api"))
    outcome = Outcome.INTERRUPTED if interrupted else Outcome.CHANGED
    records = tuple(RecordResult(str(i), Outcome.PUBLISHED) for i in range(4))
    records += (RecordResult("4", outcome),)
    renderer(BatchDone(BatchResult(records, Counters(), 1.0, interrupted=interrupted)))


def test_bar_counts_only_the_folders_this_run_processes() -> None:
    out = io.StringIO()
    bar = BarRenderer(out, verbosity=1)
    feed_rerun(bar)
    assert bar.rec_bar.total == 5 and bar.rec_bar.n == 5
    assert bar.byte_bar.total == 500
    assert "10005" not in out.getvalue() and "5/5" in out.getvalue()


def test_bar_of_an_interrupted_run_stays_where_it_stopped() -> None:
    bar = BarRenderer(io.StringIO(), verbosity=1)
    feed_rerun(bar, interrupted=True)
    assert (bar.rec_bar.n, bar.rec_bar.total) == (4, 5)


def test_bar_postfix_shows_failures_retries_and_pauses() -> None:
    bar = BarRenderer(io.StringIO(), verbosity=1)
    bar(RERUN)
    bar(Retrying("PUT", "http://x/api/files", "HTTP 503", 1, 0.0))
    bar(Paused(2.0, "HTTP 429 on GET http://x/api"))
    bar(RecordDone(RecordResult("0", Outcome.FAILED, error="refused")))
    assert bar.rec_bar.postfix == "failed=1, retries=1, 429 pauses=1"


def test_log_lines_show_retries_and_pauses() -> None:
    out = io.StringIO()
    log = LogRenderer(out, verbosity=1, interval=0.0)  # a progress line at every record
    feed_rerun(log)
    text = out.getvalue()
    assert "starting: 5 of 10005 record folders to upload" in text
    assert "records 4/5 (0 failed)" in text and "4 retries" in text
    assert log.summary_line().endswith("4 retries, 1 pauses for 429 (2 s)")
