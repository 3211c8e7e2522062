"""The CLI end to end against the sandbox, as a user runs it (a real subprocess, real sockets)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SEED_RECORDS, RecordFactory, metadata, run_cli


def sandbox_records(sb: Any) -> list[dict[str, Any]]:
    return list(sb.records())


def published(sb: Any) -> list[dict[str, Any]]:
    return [r for r in sandbox_records(sb) if r.get("is_published")]


def test_readme_demo_publishes_the_example_records(tmp_path: Path) -> None:
    """The README's first command, on a copy of records/."""
    records = tmp_path / "records"
    shutil.copytree(ROOT / "records", records)
    proc = run_cli(["upload", str(records), "--sandbox"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    links = json.loads((records / "records_links.json").read_text())
    folders = sorted(p for p in records.iterdir() if (p / "record_metadata.json").exists())
    assert len(links) == len(folders) >= 4
    for link in links:
        assert link["record_html"].rsplit("/", 1)[-1] == link["self"].split("/")[-2]
    assert "published" in proc.stdout


def test_seed_records_read_only_folder_original_links_shape(
    sandbox_thread: Any, tmp_path: Path
) -> None:
    """The original example folders go through unchanged, from a read-only folder."""
    links_file = tmp_path / "out" / "records_links.json"
    proc = run_cli(
        [
            "upload",
            str(SEED_RECORDS),
            "--url",
            sandbox_thread.url,
            "--links-file",
            str(links_file),
            "--exclude",
            "_reference/*",
        ],
        token=sandbox_thread.token,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    links = json.loads(links_file.read_text())
    original = json.loads(
        (SEED_RECORDS / "_reference" / "records_links.example-2022-04.json").read_text()
    )
    assert len(links) == 2
    # The same keys the original script wrote (the server may add newer ones).
    assert set(original[0]) <= set(links[0])
    assert all(isinstance(v, str) and v.startswith("http://127.0.0.1") for v in links[0].values())
    records = {r["id"]: r for r in published(sandbox_thread)}
    for i, link in enumerate(links):
        rec = records[link["record_html"].rsplit("/", 1)[-1]]
        local = {p.name for p in (SEED_RECORDS / str(i)).iterdir()} - {"record_metadata.json"}
        assert {f["key"] for f in rec["files"]} == local


def test_bigmap_community_share_and_plain_publish_refused(make_records: RecordFactory) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    root = make_records(2)
    with Sandbox.in_thread(SandboxConfig(profile="bigmap", communities=("battery-lab",))) as sb:
        plain = run_cli(["upload", str(root), "--url", sb.url, "-q"], token=sb.token)
        assert plain.returncode == 1
        assert "Community not selected." in plain.stdout + plain.stderr
        shared = run_cli(
            ["upload", str(root), "--url", sb.url, "--community", "battery-lab"], token=sb.token
        )
        assert shared.returncode == 0, shared.stdout + shared.stderr
        pubs = published(sb)
        assert len(pubs) == 2
        assert all(r["access"]["record"] == "restricted" for r in pubs)
    links = json.loads((root / "records_links.json").read_text())
    assert len(links) == 2


def test_bad_folders_fail_alone(sandbox_thread: Any, make_records: RecordFactory) -> None:
    root = make_records(20)
    (root / "3" / "record_metadata.json").write_text('{"metadata": {"title": "x",}')
    meta = metadata("no title")
    del meta["metadata"]["title"]  # type: ignore[attr-defined]
    (root / "7" / "record_metadata.json").write_text(json.dumps(meta))
    meta = metadata("Unknown type")
    meta["metadata"]["resource_type"] = {"id": "no-such-type"}  # type: ignore[index]
    (root / "11" / "record_metadata.json").write_text(json.dumps(meta))
    bad_file = root / "15" / "data.csv"
    bad_file.unlink()
    bad_file.symlink_to(root / "does-not-exist")  # a dangling link: unreadable
    report = root.parent / "report.json"
    proc = run_cli(
        ["upload", str(root), "--url", sandbox_thread.url, "--report", str(report)],
        token=sandbox_thread.token,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(published(sandbox_thread)) == 16
    rep = json.loads(report.read_text())
    bad = {r["folder"]: r for r in rep["records"] if r["state"] not in ("published",)}
    assert set(bad) == {"3", "7", "11", "15"}
    assert "line 1" in bad["3"]["error"]
    assert "metadata.title" in bad["7"]["error"]
    assert bad["11"]["server_message"] == "Invalid value no-such-type."
    assert "data.csv" in bad["15"]["error"]
    out = proc.stdout + proc.stderr
    assert "Invalid value no-such-type." in out
    links = json.loads((root / "records_links.json").read_text())
    assert len(links) == 16


@pytest.mark.parametrize("scenario", ["success", "bad-token", "bad-folder"])
def test_token_never_printed(scenario: str, make_records: RecordFactory, tmp_path: Path) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig

    token = "S3CRET-token-" + "x" * 20
    root = make_records(3)
    if scenario == "bad-folder":
        (root / "1" / "record_metadata.json").write_text("{")
    report = tmp_path / "report.json"
    with Sandbox.in_thread(SandboxConfig(token=token)) as sb:
        given = "wrong-" + token if scenario == "bad-token" else token
        proc = run_cli(
            ["upload", str(root), "--url", sb.url, "--report", str(report), "-v"], token=given
        )
    expected = {"success": 0, "bad-token": 3, "bad-folder": 1}[scenario]
    assert proc.returncode == expected, proc.stdout + proc.stderr
    if scenario == "bad-token":
        assert "token" in proc.stdout + proc.stderr
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".txt")]
    texts = [proc.stdout, proc.stderr, *(p.read_text(errors="replace") for p in files)]
    for text in texts:
        assert token not in text
        assert "S3CRET" not in text


def test_batch_log_has_periodic_one_line_summaries(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    """Not a terminal: no bars or carriage returns, one summary line per interval."""
    root = make_records(6)
    proc = run_cli(
        ["upload", str(root), "--url", sandbox_thread.url, "--log-interval", "0"],
        token=sandbox_thread.token,
    )
    assert proc.returncode == 0
    assert "\r" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if " records " in line]
    assert len(lines) >= 6
    assert lines[-1].split(" records ")[1].startswith("6/6 (0 failed)")
    summary = proc.stdout
    assert "published         6" in summary and "requests" in summary


def test_zenodo_profile_integer_ids_and_empty_files(make_records: RecordFactory) -> None:
    """Zenodo rules through the uploader: integer ids, empty files refused by the server."""
    from async_uploader.sandbox import Sandbox, SandboxConfig

    root = make_records(2)  # Zenodo allows 100 requests/minute: keep the batch small
    (root / "1" / "empty.dat").write_bytes(b"")
    with Sandbox.in_thread(SandboxConfig(profile="zenodo")) as sb:
        proc = run_cli(["upload", str(root), "--url", sb.url], token=sb.token)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Empty files are not accepted." in proc.stdout
        published = [r for r in sb.records() if r["is_published"]]
        assert len(published) == 1 and published[0]["id"].isdigit()
        # Local validation can refuse them first, before anything is sent.
        check = run_cli(["validate", str(root), "--empty-files", "error"])
        assert check.returncode == 1 and "empty.dat" in check.stdout
