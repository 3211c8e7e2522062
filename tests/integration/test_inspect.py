"""``status`` / ``--dry-run`` (``inspect_records``) and ``upload`` follow one plan.

Every planner case is set up for real (uploads, kills simulated by journal phases, a corrupt
entry, a folder that changed, one that fails a newer validation rule); what inspection says
per folder must be what the upload then does, and a dry run's request count must be what the
upload then sends (the sandbox counts).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from async_uploader import Outcome, UploadConfig, ValidationLimits, upload_records_sync
from async_uploader.inspect import inspect_records
from async_uploader.sandbox import Sandbox, SandboxConfig
from tests.conftest import RecordFactory, journal_dir, run_cli


def config_for(sb: Any, root: Path, **extra: Any) -> UploadConfig:
    return UploadConfig(base_url=sb.url, token=sb.token, records_dir=root, **extra)


def edit_entry(root: Path, url: str, folder: str, **changes: Any) -> None:
    path = journal_dir(root, url) / f"{folder}.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


# folder -> (what inspection must plan, the upload's outcome for it)
EXPECTED = {
    "0": ("create", Outcome.PUBLISHED),  # never uploaded
    "1": ("resume-draft", Outcome.PUBLISHED),  # a draft from a --draft-only run
    "2": ("skip", Outcome.SKIPPED),  # published, unchanged
    "3": ("changed", Outcome.CHANGED),  # published, then a file changed
    "4": ("reconcile", Outcome.PUBLISHED),  # corrupt entry: look on the server first
    "5": ("find-draft", Outcome.PUBLISHED),  # killed while the create was in flight
    "6": ("confirm-share", Outcome.PUBLISHED),  # killed while the publish was in flight
    "7": ("skip", Outcome.SKIPPED),  # done, and would fail a newer (stricter) rule
}


def test_status_and_upload_agree_on_every_planner_case(make_records: RecordFactory) -> None:
    root = make_records(8, files={"data.bin": 2000})
    with Sandbox.in_thread(SandboxConfig()) as sb:
        base = config_for(sb, root)
        # 2, 3, 6, 7 published; 1, 4, 5 drafts; 0 untouched. 7 holds an empty file, which
        # a stricter rule (--empty-files error) refuses.
        (root / "7" / "empty.dat").write_bytes(b"")
        first = config_for(sb, root)
        (root / "0").rename(root.parent / "held")  # outside the records folder meanwhile
        assert upload_records_sync(first).exit_code == 0
        for name in ("1", "4", "5"):
            edit_entry(root, sb.url, name, phase="draft")
        (root.parent / "held").rename(root / "0")
        (root / "3" / "data.bin").write_bytes(b"changed after publishing")
        (journal_dir(root, sb.url) / "4.json").write_text("{ torn")
        edit_entry(root, sb.url, "5", phase="creating", draft_id=None, links=None)
        edit_entry(root, sb.url, "6", phase="sharing")
        strict = replace(base, limits=ValidationLimits(empty_files="error"))  # 7 fails now

        report = anyio.run(lambda: inspect_records(strict))
        planned = {v.folder: v.action for v in report.folders}
        assert planned == {k: v[0] for k, v in EXPECTED.items()}
        result = upload_records_sync(replace(strict, limits=ValidationLimits()))
        outcomes = {r.folder: r.outcome for r in result.records}
        assert outcomes["7"] is Outcome.SKIPPED
        for folder, (action, outcome) in EXPECTED.items():
            if folder != "7":
                assert outcomes[folder] is outcome, (folder, action, outcomes[folder])
        # The one stricter run upload would do agrees too: 7 is settled before validation.
        again = upload_records_sync(strict)
        assert {r.folder: r.outcome for r in again.records}["7"] is Outcome.SKIPPED


@pytest.mark.parametrize("share", ["publish", "draft-only"])
def test_dry_run_predicts_the_requests_the_upload_sends(
    make_records: RecordFactory, share: str
) -> None:
    root = make_records(12, files={"a.csv": b"x,y\n", "out/log.txt": 700, "b.bin": 3000})
    extra = ["--draft-only"] if share == "draft-only" else []
    with Sandbox.in_thread(SandboxConfig(rate_limit="50 per 1 second")) as sb:
        (root / "0").rename(root.parent / "held")  # others exist: the title look-up runs
        assert run_cli(["upload", str(root), "--url", sb.url, "-q"], token=sb.token).returncode == 0
        (root.parent / "held").rename(root / "0")
        dry = run_cli(
            ["upload", str(root), "--url", sb.url, "--dry-run", "--json", *extra], token=sb.token
        )
        assert dry.returncode == 0, dry.stdout + dry.stderr
        estimate = json.loads(dry.stdout)["estimate"]
        assert estimate["exact"] and estimate["records"] == 1
        sb.reset_stats()
        real = run_cli(["upload", str(root), "--url", sb.url, "-q", *extra], token=sb.token)
        assert real.returncode == 0, real.stdout + real.stderr
        sent = sb.stats()["requests_total"]
    assert estimate["total_requests"] == sent
    assert estimate["rate_per_second"] == pytest.approx(50, rel=0.05)
    assert estimate["min_seconds"] == pytest.approx(sent / 50, rel=0.05)
