"""Rendering progress events for people: tqdm bars on a terminal, one-line summaries in logs.

This is the only place (with ``cli.py``) that writes to the terminal; the library emits events.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

from .events import (
    BatchDone,
    BatchStarted,
    BytesSent,
    Event,
    FileDone,
    Notice,
    Paused,
    RecordDone,
    Retrying,
)
from .results import BatchResult, Outcome


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class _Base:
    def __init__(self, stream: TextIO, verbosity: int):
        self.stream = stream
        self.verbosity = verbosity  # 0 quiet, 1 normal, 2 verbose
        self.total_records = 0
        self.total_bytes = 0
        self.done = 0
        self.failed = 0
        self.bytes = 0
        self.retries = 0
        self.pauses = 0  # batch-wide pauses after a 429
        self.paused_seconds = 0.0
        self.started = time.monotonic()

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, BatchStarted):
            self.total_records = event.to_upload
            self.total_bytes = event.total_bytes
            self.started = time.monotonic()
            self.on_start(event)
        elif isinstance(event, BytesSent):
            self.bytes += event.n
            self.on_bytes(event.n)
        elif isinstance(event, RecordDone):
            self.done += 1
            if not event.result.outcome.ok:
                self.failed += 1
                self.say(f"FAILED folder {event.result.folder}: {event.result.error}", level=0)
            self.on_record()
        elif isinstance(event, Retrying):
            self.retries += 1
            self.on_trouble(pause=False)
            self.say(
                f"retry {event.attempt} in {event.delay:.1f} s: {event.method} {event.url}"
                f" ({event.reason})",
                level=2,
            )
        elif isinstance(event, Paused):
            self.pauses += 1
            self.paused_seconds += event.seconds
            self.on_trouble(pause=True)
            self.say(f"server rate limit: pausing all requests for {event.seconds:.1f} s", level=1)
        elif isinstance(event, Notice) and event.folder is None:
            self.say(f"note: {event.message}", level=1)
        elif isinstance(event, Notice):
            self.say(f"folder {event.folder}: {event.message}", level=2)
        elif isinstance(event, FileDone):
            self.say(f"folder {event.folder}: {event.key} verified md5:{event.md5}", level=2)
        elif isinstance(event, BatchDone):
            self.on_done(event.result)
            self.close()

    def say(self, text: str, level: int) -> None:
        if self.verbosity >= level:
            self.line(text)

    def on_start(self, event: BatchStarted) -> None: ...
    def on_bytes(self, n: int) -> None: ...
    def on_record(self) -> None: ...
    def on_trouble(self, pause: bool) -> None: ...
    def on_done(self, result: BatchResult) -> None: ...
    def close(self) -> None: ...


class BarRenderer(_Base):
    """Two tqdm bars (records, bytes) for an interactive terminal.

    The records bar counts the folders this run processes (``to_upload``): folders done in an
    earlier run are never processed, so counting them would leave the bar at 5/10,005 on a
    rerun that finishes its 5 new folders. Failures, retries and 429 pauses are its postfix.
    """

    def on_start(self, event: BatchStarted) -> None:
        off = self.verbosity == 0
        self.rec_bar = tqdm(
            total=event.to_upload,
            unit="rec",
            desc="records",
            file=self.stream,
            disable=off,
            position=0,
            dynamic_ncols=True,
        )
        self.byte_bar = tqdm(
            total=event.total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc="bytes  ",
            file=self.stream,
            disable=off,
            position=1,
            dynamic_ncols=True,
            mininterval=0.2,
        )

    def line(self, text: str) -> None:
        tqdm.write(text, file=self.stream)

    def on_bytes(self, n: int) -> None:
        self.byte_bar.update(n)

    def on_record(self) -> None:
        self.rec_bar.update(1)
        self._postfix(refresh=False)

    def on_trouble(self, pause: bool) -> None:
        # A pause stops every request, so nothing else would redraw the bar while it lasts.
        self._postfix(refresh=pause)

    def _postfix(self, refresh: bool) -> None:
        counts = {"failed": self.failed, "retries": self.retries, "429 pauses": self.pauses}
        shown = {name: n for name, n in counts.items() if n}
        if shown:
            self.rec_bar.set_postfix(shown, refresh=refresh)

    def on_done(self, result: BatchResult) -> None:
        # Folders settled without processing (a changed published folder) send no
        # RecordDone; a batch that ran to its end has nonetheless processed all of them.
        total = self.rec_bar.total or 0
        if not (result.interrupted or result.fatal) and self.rec_bar.n < total:
            self.rec_bar.update(total - self.rec_bar.n)

    def close(self) -> None:
        self.rec_bar.close()
        self.byte_bar.close()


class LogRenderer(_Base):
    """Periodic one-line summaries for batch logs (no carriage returns, no bars)."""

    def __init__(self, stream: TextIO, verbosity: int, interval: float = 30.0):
        super().__init__(stream, verbosity)
        self.interval = interval
        self.last = 0.0

    def on_start(self, event: BatchStarted) -> None:
        self.say(
            f"{stamp()} starting: {event.to_upload} of {event.records} record folders to "
            f"upload ({human_bytes(event.total_bytes)}); {event.already_done} already done",
            1,
        )
        self.last = time.monotonic()

    def on_bytes(self, n: int) -> None:
        self._maybe()

    def on_record(self) -> None:
        self._maybe()

    def _maybe(self) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.say(self.summary_line(), 1)

    def summary_line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        return (
            f"{stamp()} records {self.done}/{self.total_records} ({self.failed} failed), "
            f"{human_bytes(self.bytes)}/{human_bytes(self.total_bytes)} at "
            f"{human_bytes(self.bytes / elapsed)}/s, {self.retries} retries, "
            f"{self.pauses} pauses for 429 ({self.paused_seconds:.0f} s)"
        )


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def make_renderer(verbosity: int, interval: float, stream: TextIO = sys.stderr) -> _Base:
    if stream.isatty():
        return BarRenderer(stream, verbosity)
    return LogRenderer(stream, verbosity, interval)


def summary(result: BatchResult) -> str:
    """The final table: what happened to every record, and why for the failures."""
    rows = [(o.value, result.count(o)) for o in Outcome if result.count(o)]
    c = result.counters
    lines = ["", "Summary", "-------"]
    lines += [f"  {name:<12} {n:>6}" for name, n in rows]
    if result.count(Outcome.SKIPPED):
        lines.append("  (skipped: done in an earlier run, according to the journal)")
    lines.append(f"  {'bytes sent':<12} {human_bytes(c.bytes_sent):>10}")
    if c.bytes_resent:
        lines.append(f"  {'of it resent':<12} {human_bytes(c.bytes_resent):>10}")
    lines.append(f"  {'time':<12} {result.seconds:>9.1f} s")
    lines.append(
        f"  {'requests':<12} {c.requests:>6}  (retries {c.retries}, gave up {c.gave_up}, "
        f"429s {c.responses_429}, paused {c.paused_seconds:.1f} s in {c.pauses} pauses)"
    )
    bad = [r for r in result.records if not r.outcome.ok]
    if bad:
        lines += ["", "Needs attention:"]
        lines += [f"  {r.folder}: {r.outcome.value}: {r.error or 'rerun to resume'}" for r in bad]
    if result.fatal:
        lines += ["", f"Stopped early: {result.fatal}"]
    if result.interrupted:
        lines += ["", "Interrupted: rerun the same command to resume."]
    return "\n".join(lines)
