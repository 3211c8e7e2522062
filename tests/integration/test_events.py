"""``upload --events``: the NDJSON event log of the real CLI reconstructs the run's report."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RecordFactory, run_cli

pytestmark = pytest.mark.slow

# Retries of three kinds (503 answers, a connection dropped mid-body that takes bytes back)
# and a 429 storm that pauses the batch. Faults that the client counts without an event
# (stalled uploads, lost create/publish answers) are left out: see the README's event table.
PLAN = {
    "seed": 1,
    "rules": [
        {"route": "content_put", "kind": "status", "status": 503, "probability": 0.3},
        {"route": "content_put", "kind": "drop_mid_body", "on_calls": [4], "fraction": 0.5},
        {"route": "*", "kind": "rate_storm", "on_calls": [40], "duration_s": 1},
    ],
}


def parse(text: str) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in text.splitlines()]  # every line parses
    for event in events:
        assert isinstance(event["event"], str)
        stamp = datetime.fromisoformat(event["time"])
        assert stamp.utcoffset() == UTC.utcoffset(None)
    return events


def reconstruct(events: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's summary and counters, from the events alone (no batch_done)."""
    of = lambda kind: [e for e in events if e["event"] == kind]  # noqa: E731
    retries = of("retry")
    pauses = of("pause")
    return {
        "summary": dict(Counter(e["state"] for e in of("record_done"))),
        "retries": len(retries),
        "retries_by_reason": dict(Counter(e["reason"].split(" (")[0] for e in retries)),
        "pauses": len(pauses),
        "paused_seconds": round(sum(e["seconds"] for e in pauses), 3),
        "bytes_net": sum(e["bytes"] - e["taken_back"] for e in of("progress")),
        "files": sorted((e["folder"], e["key"], e["size"], e["md5"]) for e in of("file_done")),
    }


def expected(report: dict[str, Any], *, uploaded: bool) -> dict[str, Any]:
    c = report["counters"]
    files = [
        (r["folder"], f["key"], f["size"], f["md5"])
        for r in report["records"]
        if uploaded and r["state"] == "published"
        for f in r["files"]
    ]
    return {
        "summary": {state: n for state, n in report["summary"].items() if n},
        "retries": c["retries"],
        "retries_by_reason": c["retries_by_reason"],
        "pauses": c["pauses"],
        "paused_seconds": c["paused_seconds"],
        # The content delivered: bytes on the wire less those of attempts sent again
        # (counted apart as bytes_resent where the report has it).
        "bytes_net": c["bytes_sent"] - c.get("bytes_resent", 0),
        "files": sorted(files),
    }


def test_event_log_reconstructs_the_report(make_records: RecordFactory, tmp_path: Path) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    n = 12
    root = make_records(n, files={"a.bin": 300_000, "b.txt": b"small\n"})
    (root / "zz-bad").mkdir()
    (root / "zz-bad" / "record_metadata.json").write_text("{")  # invalid: settled, not run
    log, report_file = tmp_path / "events.ndjson", tmp_path / "report.json"
    args = ["upload", str(root), "--events", str(log), "--report", str(report_file)]
    with Sandbox.in_thread(SandboxConfig(faults=PLAN)) as sb:
        proc = run_cli([*args, "--url", sb.url, "--chunk-size", "64"], token=sb.token)
        stats = sb.stats()
        # The rerun, with the log on stdout: only JSON there, people's output on stderr.
        rerun = ["upload", str(root), "--events", "-", "--report", str(report_file)]
        first_report = report_file.read_text()
        again = run_cli([*rerun, "--url", sb.url], token=sb.token)
        assert sb.stats()["requests_total"] == stats["requests_total"]  # nothing sent
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    fired = stats["faults_per_kind"]
    assert fired.get("status") and fired.get("drop_mid_body") and fired.get("rate_storm")
    report = json.loads(first_report)
    events = parse(log.read_text())

    assert [e["event"] for e in events[:2]] == ["batch_start", "plan"]
    assert events[-1]["event"] == "batch_done"
    plan = events[1]
    assert (plan["records"], plan["to_upload"], plan["already_done"]) == (n + 1, n, 0)
    assert plan["total_bytes"] == n * 300_006
    rebuilt = reconstruct(events)
    assert rebuilt == expected(report, uploaded=True)
    assert rebuilt["summary"] == {"published": n, "invalid": 1}
    assert rebuilt["retries"] > rebuilt["pauses"] > 0  # the fault plan did its work
    assert len(rebuilt["retries_by_reason"]) >= 3  # 503, 429 and the dropped connection
    assert events[-1]["counters"] == report["counters"]
    progress = [e for e in events if e["event"] == "progress"]
    assert any(e["taken_back"] for e in progress)  # the dropped upload was sent again
    last_sent = {(e["folder"], e["key"]): e["sent"] for e in progress}
    assert all(
        last_sent[(e["folder"], e["key"])] == e["size"] for e in events if e["event"] == "file_done"
    )
    assert events[-1]["summary"] == report["summary"] and events[-1]["exit_code"] == 1
    # Each record_done carries the report's record, folder by folder.
    done = {e["folder"]: e for e in events if e["event"] == "record_done"}
    for record in report["records"]:
        line = done[record["folder"]]
        assert {k: v for k, v in line.items() if k not in ("event", "time", "late")} == record
    assert done["zz-bad"]["late"] and not done["0"]["late"]
    assert len([e for e in events if e["event"] == "record_start"]) == n

    assert again.returncode == 1, again.stderr[-3000:]
    events = parse(again.stdout)
    assert "Summary" in again.stderr and "links file:" in again.stderr
    assert events[1]["already_done"] == n and events[1]["to_upload"] == 0
    assert reconstruct(events) == expected(json.loads(report_file.read_text()), uploaded=False)


def test_an_unwritable_event_log_never_sinks_the_upload(make_records: RecordFactory) -> None:
    root = make_records(2)
    proc = run_cli(["upload", str(root), "--sandbox", "--events", "/dev/full"])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stderr.count("cannot write the event log (/dev/full)") == 1
    assert "published         2" in proc.stdout
    missing = run_cli(["upload", str(root), "--sandbox", "--events", str(root / "no" / "x")])
    assert missing.returncode == 2 and "cannot open the event log" in missing.stderr
