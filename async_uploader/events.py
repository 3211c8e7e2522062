"""Progress events: the library emits them, only the CLI renders them.

A reporter is any callable taking one event. It runs on the event loop, so it must be quick
(the CLI's renderers only update counters and redraw at most a few times a second).
``BytesSent.n`` may be negative: a retried upload takes back the bytes it re-sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .results import BatchResult, Counters, RecordResult


@dataclass(frozen=True)
class BatchStarted:
    records: int  # record folders found
    to_upload: int  # of those, the ones with work left (not done, not invalid)
    total_bytes: int  # in the records with work left
    already_done: int


@dataclass(frozen=True)
class RecordStarted:
    folder: str


@dataclass(frozen=True)
class BytesSent:
    folder: str
    key: str
    n: int


@dataclass(frozen=True)
class FileDone:
    folder: str
    key: str
    size: int
    md5: str


@dataclass(frozen=True)
class Retrying:
    """One HTTP call failed transiently and will be sent again after ``delay`` seconds."""

    method: str
    url: str
    reason: str
    attempt: int
    delay: float


@dataclass(frozen=True)
class Paused:
    """The whole batch waits: the server said it is over its rate limit."""

    seconds: float
    reason: str


@dataclass(frozen=True)
class Notice:
    """Something a person should know that is not an error (e.g. a reused draft).

    ``folder`` is None for the batch as a whole (where the state is, whose it is)."""

    folder: str | None
    message: str


@dataclass(frozen=True)
class RecordDone:
    result: RecordResult


@dataclass(frozen=True)
class BatchDone:
    result: BatchResult


Event = (
    BatchStarted
    | RecordStarted
    | BytesSent
    | FileDone
    | Retrying
    | Paused
    | Notice
    | RecordDone
    | BatchDone
)
Reporter = Callable[[Event], None]


def no_reporter(event: Event) -> None:
    """The default: events go nowhere."""


def tee(*reporters: Reporter) -> Reporter:
    """One reporter that hands every event to each of ``reporters`` in order.

    The CLI renders events for people and writes them to an event log at the same time; the
    library takes a single reporter, so the two are combined here rather than in the library.
    """

    def report(event: Event) -> None:
        for reporter in reporters:
            reporter(event)

    return report


def count(counters: Counters, event: Event) -> None:
    """Feed the run's counters from one event (kinds without a tally are ignored), so a log
    of the events gives the same numbers as the report (see ``results.Counters``)."""
    if isinstance(event, Retrying):
        counters.retries += 1
        counters.by_reason[event.reason] += 1
    elif isinstance(event, Paused):
        counters.pauses += 1
        counters.paused_seconds += event.seconds
    elif isinstance(event, BytesSent):
        if event.n >= 0:
            counters.bytes_sent += event.n
        else:
            counters.bytes_resent -= event.n
