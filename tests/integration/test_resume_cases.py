"""Resume details: local changes, a corrupt journal, `status`, signals, an unwritable journal."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, RecordFactory, journal_dir, run_cli, start_cli


def upload(sb: Any, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["upload", str(root), "--url", sb.url, *extra], token=sb.token)


def server_md5(sb: Any, title: str, key: str) -> str:
    rec = next(r for r in sb.records() if r["title"] == title)
    return next(f["md5"] for f in rec["files"] if f["key"] == key)


def test_file_changed_before_publish_is_uploaded_again(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(2)
    assert upload(sandbox_thread, root, "--draft-only").returncode == 0
    changed = root / "1" / "data.csv"
    changed.write_bytes(b"a,b\n3,4\n5,6\n")
    proc = upload(sandbox_thread, root, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "reusing draft" in proc.stderr
    assert (
        server_md5(sandbox_thread, "Simulation run 1", "data.csv")
        == hashlib.md5(changed.read_bytes()).hexdigest()
    )
    records = sandbox_thread.records()
    assert len(records) == 2 and all(r["is_published"] for r in records)


def test_folder_changed_after_publish_is_reported_not_republished(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(2)
    assert upload(sandbox_thread, root).returncode == 0
    (root / "0" / "data.csv").write_bytes(b"edited after publishing\n")
    sandbox_thread.reset_stats()
    proc = upload(sandbox_thread, root)
    assert proc.returncode == 1
    assert "changed" in proc.stdout and "0:" in proc.stdout
    assert sandbox_thread.stats()["write_requests"] == 0


def test_corrupt_journal_entries_are_reconciled_with_the_server(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(3)
    assert upload(sandbox_thread, root, "--draft-only").returncode == 0
    assert upload(sandbox_thread, root, "--draft-only").returncode == 0
    state = journal_dir(root, sandbox_thread.url)
    (state / "0.json").write_text("{ torn")  # a draft exists for it
    proc = upload(sandbox_thread, root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (state / "1.json").write_bytes(b"\x00\x01")  # published now: must not be published twice
    proc = upload(sandbox_thread, root, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "corrupt" in proc.stderr and "adopting it" in proc.stderr
    records = sandbox_thread.records()
    assert len(records) == 3 and all(r["is_published"] for r in records)
    links = json.loads((root / "records_links.json").read_text())
    assert len(links) == 3


def test_status_says_what_a_rerun_would_do(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(3)
    assert upload(sandbox_thread, root, "--draft-only").returncode == 0
    (root / "2" / "record_metadata.json").write_text("[")
    proc = run_cli(["status", str(root)])
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("0: draft (id ") and "reuse the draft" in lines[0]
    assert any(line.startswith("2: invalid") for line in lines)
    checked = run_cli(
        ["status", str(root), "--check-server", "--url", sandbox_thread.url],
        token=sandbox_thread.token,
    )
    assert "server: draft (draft, 2 files)" in checked.stdout


def test_second_sigint_stops_at_once_and_rerun_completes(make_records: RecordFactory) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    root = make_records(4, files={"small.txt": b"x"})
    for i in range(4):
        with open(root / str(i) / "big.bin", "wb") as fh:
            fh.truncate(512 * 1024 * 1024)
    with Sandbox.in_thread(SandboxConfig(discard_bytes=True)) as sb:
        args = [
            "upload",
            str(root),
            "--url",
            sb.url,
            "--grace",
            "600",
        ]
        proc = start_cli(args, sb.token)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sb.stats()["requests_per_route"].get(
            "content_put"
        ):
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # a grace of 600 s would otherwise let it finish
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 75, out + err
        assert len([r for r in sb.records() if r["is_published"]]) < 4
        final = upload(sb, root)
        assert final.returncode == 0, final.stdout + final.stderr
        assert len(sb.records()) == 4 and all(r["is_published"] for r in sb.records())


def test_unwritable_state_dir_is_a_usage_error(
    sandbox_thread: Any, make_records: RecordFactory, tmp_path: Path
) -> None:
    root = make_records(3)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = upload(sandbox_thread, root, "--state-dir", str(blocker / "state"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "--state-dir" in proc.stderr
    assert sandbox_thread.stats()["requests_total"] == 0  # nothing was sent


def test_journal_disk_full_mid_run_is_fatal(
    sandbox_thread: Any, make_records: RecordFactory, tmp_path: Path
) -> None:
    """The state dir on a tiny file system that fills up during the batch: exit 3, at once."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a mount namespace here: {probe.stderr.decode().strip()}")
    root = make_records(40)
    state = tmp_path / "state"
    state.mkdir()
    script = (
        f"mount -t tmpfs -o size=100k tmpfs {state} && exec {sys.executable} -m "
        f"async_uploader upload {root} --url {sandbox_thread.url} --state-dir {state}"
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"INVENIO_TOKEN": sandbox_thread.token, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot write the journal" in proc.stdout
    published = [r for r in sandbox_thread.records() if r["is_published"]]
    assert 0 < len(published) < 40  # it stopped part-way instead of failing every record


def test_lost_journal_entry_never_takes_a_siblings_draft(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    """Same-titled folders: the one whose journal entry is lost finds its own draft again."""
    from tests.conftest import metadata

    root = make_records(4, files={"data.bin": 3000})
    for i in range(4):
        (root / str(i) / "record_metadata.json").write_text(json.dumps(metadata("Twin")))
    assert upload(sandbox_thread, root, "--draft-only").returncode == 0
    (journal_dir(root, sandbox_thread.url) / "2.json").write_text("lost")
    proc = upload(sandbox_thread, root, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = sandbox_thread.records()
    assert len(records) == 4 and all(r["is_published"] for r in records)
    by_id = {r["id"]: r for r in records}
    links = json.loads((root / "records_links.json").read_text())
    for i, link in enumerate(links):
        rec = by_id[link["record_html"].rsplit("/", 1)[-1]]
        local = (root / str(i) / "data.bin").read_bytes()
        assert rec["files"][0]["md5"] == hashlib.md5(local).hexdigest(), f"folder {i}"
