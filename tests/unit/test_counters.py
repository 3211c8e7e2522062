"""The batch counters are fed from the event stream: the report and an event log agree."""

from __future__ import annotations

import pytest

from async_uploader.events import (
    BytesSent,
    Event,
    FileDone,
    Notice,
    Paused,
    RecordStarted,
    Retrying,
    count,
)
from async_uploader.results import Counters


@pytest.mark.parametrize(
    ("event", "changes"),
    [
        (Retrying("PUT", "u", "body cut", 1, 0.5), {"retries": 1, "by_reason": {"body cut": 1}}),
        (Retrying("GET", "u", "HTTP 503", 3, 2.0), {"retries": 1, "by_reason": {"HTTP 503": 1}}),
        (Paused(2.5, "HTTP 429 on GET u"), {"pauses": 1, "paused_seconds": 2.5}),
        (BytesSent("0", "a.dat", 1000), {"bytes_sent": 1000}),
        # an attempt taken back (it is about to be sent again): those bytes are a repeat
        (BytesSent("0", "a.dat", -700), {"bytes_resent": 700}),
        (BytesSent("0", "a.dat", 0), {}),
        (Notice(None, "x"), {}),
        (RecordStarted("0"), {}),
        (FileDone("0", "a.dat", 1, "m"), {}),
    ],
)
def test_observe_one_event(event: Event, changes: dict[str, object]) -> None:
    counters = Counters()
    count(counters, event)
    got = counters.to_json()
    expected = Counters().to_json()
    expected.update({"retries_by_reason": {}})
    for name, value in changes.items():
        expected["retries_by_reason" if name == "by_reason" else name] = value
    assert got == expected


def test_two_dropped_uploads_count_every_byte_on_the_wire() -> None:
    """A 300 MiB file cut off twice (after 100 and 250 MiB), then sent whole."""
    mib = 1024 * 1024
    counters = Counters()
    for n in (100 * mib, -100 * mib, 250 * mib, -250 * mib, 300 * mib):
        count(counters, BytesSent("0", "big.bin", n))
    assert counters.bytes_sent == 650 * mib  # what went over the wire
    assert counters.bytes_resent == 350 * mib  # of which repeats
    report = counters.to_json()
    assert (report["bytes_sent"], report["bytes_resent"]) == (650 * mib, 350 * mib)
