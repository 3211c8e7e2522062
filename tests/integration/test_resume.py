"""Crash-safe resume: kill the CLI at random moments, rerun, and check the server's state."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RecordFactory, run_cli, start_cli

pytestmark = pytest.mark.slow


def journal_phases(state_dir: Path) -> list[str]:
    phases = []
    for p in state_dir.rglob("*.json"):
        with contextlib.suppress(OSError, ValueError, KeyError):
            phases.append(json.loads(p.read_text())["phase"])
    return phases


def assert_exactly_once(sb: Any, root: Path, n: int) -> None:
    records = sb.records()
    by_title: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        by_title.setdefault(rec["title"], []).append(rec)
    leftovers = [r["id"] for r in records if r["has_draft"]]
    assert leftovers == [], f"leftover drafts: {leftovers}"
    assert sorted(by_title) == sorted(f"Simulation run {i}" for i in range(n))
    for title, recs in by_title.items():
        assert len(recs) == 1, f"{title}: {len(recs)} records"
        assert recs[0]["is_published"]
        i = title.rsplit(" ", 1)[1]
        for f in recs[0]["files"]:
            local = (root / i / f["key"]).read_bytes()
            assert f["md5"] == hashlib.md5(local).hexdigest()
    links = json.loads((root / "records_links.json").read_text())
    ids = {r["title"].rsplit(" ", 1)[1]: r["id"] for r in records}
    assert [link["record_html"].rsplit("/", 1)[-1] for link in links] == [
        ids[str(i)] for i in range(n)
    ]


def test_kill_and_rerun_until_done(make_records: RecordFactory) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    n = 50
    root = make_records(n, files={"data.csv": 20_000, "raw/trace.bin": 60_000})
    rng = random.Random(20261126)
    args = ["upload", str(root), "--records-in-flight", "2", "-q"]
    phases_at_kill: set[str] = set()
    kills = 0
    with Sandbox.in_thread(SandboxConfig(latency_ms=50, jitter_ms=50, seed=7)) as sb:
        args += ["--url", sb.url]
        wanted = {"creating", "draft", "sharing"}  # kills during create, uploads, publish
        while kills < 20 or (not wanted <= phases_at_kill and kills < 60):
            proc = start_cli(args, sb.token)
            time.sleep(rng.uniform(0.5, 1.2))
            if proc.poll() is not None:
                break  # finished before we could kill it
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
            phases_at_kill.update(journal_phases(root / ".upload_state"))
        final = run_cli(args, token=sb.token)
        assert final.returncode == 0, final.stdout + final.stderr
        assert kills >= 20
        # The kills landed while records were being created, uploaded and published.
        assert wanted | {"published"} <= phases_at_kill
        assert_exactly_once(sb, root, n)
        # A second run of the completed batch sends zero write requests.
        sb.reset_stats()
        again = run_cli(args, token=sb.token)
        assert again.returncode == 0
        assert sb.stats()["write_requests"] == 0
        assert "skipped" in again.stdout


def test_lost_responses_on_create_and_publish(make_records: RecordFactory) -> None:
    """The server does the work but the answer never arrives: no duplicates, no false errors."""
    from async_uploader.sandbox import Sandbox, SandboxConfig

    n = 12
    root = make_records(n)
    plan = {
        "seed": 3,
        "rules": [
            {"route": "create_draft", "kind": "lose_response", "probability": 0.4},
            {"route": "publish", "kind": "lose_response", "probability": 0.4},
        ],
    }
    # A realistic index refresh (1 s): the lost draft shows up only to the patient search.
    with Sandbox.in_thread(SandboxConfig(faults=plan, index_delay_s=1.0)) as sb:
        proc = run_cli(["upload", str(root), "--url", sb.url, "-v"], token=sb.token)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        fired = sb.stats()["faults_per_kind"]
        assert fired.get("lose_response", 0) >= 3
        assert_exactly_once(sb, root, n)


def test_sigterm_during_large_upload_exits_75_then_resumes(make_records: RecordFactory) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    root = make_records(3, files={"small.txt": b"x"})
    for i in range(3):  # large sparse files: no disk, but every byte is read and hashed
        with open(root / str(i) / "big.bin", "wb") as fh:
            fh.truncate(768 * 1024 * 1024)
    with Sandbox.in_thread(SandboxConfig(discard_bytes=True)) as sb:
        args = ["upload", str(root), "--url", sb.url, "--grace", "1"]
        proc = start_cli(args, sb.token)
        # Wait until an upload is under way, then send what Slurm sends at the wall-time limit.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sb.stats()["requests_per_route"].get(
            "content_put"
        ):
            time.sleep(0.02)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 75, out + err
        assert "rerun" in out.lower()
        # It stopped mid-upload instead of finishing the batch first.
        assert len([r for r in sb.records() if r["is_published"]]) < 3
        final = run_cli(args, token=sb.token)
        assert final.returncode == 0, final.stdout + final.stderr
        pubs = [r for r in sb.records() if r["is_published"]]
        assert len(pubs) == 3 and not [r for r in sb.records() if r["has_draft"]]


def test_same_titled_folders_never_share_a_draft(make_records: RecordFactory) -> None:
    """Lost creates for folders with one title: each folder still gets its own record."""
    from async_uploader.sandbox import Sandbox, SandboxConfig
    from tests.conftest import metadata

    n = 8
    root = make_records(n, files={"data.bin": 5000})
    for i in range(n):  # one title for all; the files differ per folder
        (root / str(i) / "record_metadata.json").write_text(json.dumps(metadata("Same title")))
    plan = {
        "seed": 5,
        "rules": [{"route": "create_draft", "kind": "lose_response", "probability": 0.5}],
    }
    # Slow enough that siblings are still drafts when a lost create searches for its own.
    config = SandboxConfig(faults=plan, latency_ms=50, jitter_ms=50, index_delay_s=1.0)
    with Sandbox.in_thread(config) as sb:
        proc = run_cli(["upload", str(root), "--url", sb.url, "-v"], token=sb.token)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        records = sb.records()
        assert sb.stats()["faults_per_kind"].get("lose_response", 0) >= 2
    assert len(records) == n and all(r["is_published"] for r in records)
    links = json.loads((root / "records_links.json").read_text())
    by_id = {r["id"]: r for r in records}
    for i, link in enumerate(links):  # folder i's record holds folder i's bytes
        rec = by_id[link["record_html"].rsplit("/", 1)[-1]]
        local = (root / str(i) / "data.bin").read_bytes()
        assert rec["files"][0]["md5"] == hashlib.md5(local).hexdigest()
