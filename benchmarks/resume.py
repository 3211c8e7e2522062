"""Benchmark 4: a rerun over a finished 10,000-record batch must decide "nothing to do" fast.

The journal is built with the project's own ``RecordState`` / ``FileState`` /
``plan.fingerprint`` / ``Journal``, from the project's own ``discover`` + ``validate_all`` of
the folders on disk, so every entry matches its folder exactly as a real finished run's would.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from async_uploader import Outcome, UploadConfig, upload_records_sync
from async_uploader.discover import discover
from async_uploader.journal import PUBLISHED, FileState, Journal, RecordState
from async_uploader.plan import fingerprint
from async_uploader.state import server_folder
from async_uploader.validate import ValidationLimits, validate_all

from .harness import ROOT, SandboxProcess, Stopwatch, make_records, sandbox
from .report import BenchResult, figure

TARGET_S = 2.0


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def build_finished_batch(root: Path, n: int, state_dir: Path, url: str) -> int:
    """Folders of 3 tiny files plus a ``published`` journal entry for each; returns count."""
    make_records(root, n, 3, 64, prefix="resume")
    valid, invalid = validate_all(discover(root), ValidationLimits())
    if invalid:
        raise RuntimeError(f"{len(invalid)} generated folders are invalid: {invalid[0][1]}")
    journal = Journal(server_folder(state_dir, url))
    for i, record in enumerate(valid):
        rid = f"rec{i:05d}"
        files = {
            f.key: FileState(f.key, f.size, f.mtime_ns, md5_of(f.path)) for f in record.folder.files
        }
        journal.save(
            RecordState(
                folder=record.folder.name,
                phase=PUBLISHED,
                fingerprint=fingerprint(record),
                metadata_sha=record.metadata_sha256,
                draft_id=rid,
                links={"self_html": f"{url}/uploads/{rid}", "record_html": f"{url}/records/{rid}"},
                record_url=f"{url}/records/{rid}",
                title=record.title,
                files=files,
            )
        )
    return len(valid)


def cli_rerun(root: Path, sb: SandboxProcess, links: Path, state: Path) -> float:
    cmd = [sys.executable, "-m", "async_uploader", "upload", str(root), "--url", sb.url, "-q"]
    cmd += ["--links-file", str(links), "--state-dir", str(state)]
    with Stopwatch() as sw:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "INVENIO_TOKEN": sb.token},
            capture_output=True,
            check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"CLI rerun exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return sw.seconds


def run(work: Path, quick: bool, repeats: int) -> BenchResult:
    n = 2000 if quick else 10_000
    root, state, links = work / "records", work / "state", work / "links.json"
    lib_times, cli_times, writes, requests = [], [], [], []
    with sandbox() as sb:
        with Stopwatch() as build:
            built = build_finished_batch(root, n, state, sb.url)
        config = UploadConfig(
            base_url=sb.url, token=sb.token, records_dir=root, links_file=links, state_dir=state
        )
        for _ in range(repeats):
            sb.reset_stats()
            with Stopwatch() as sw:
                result = upload_records_sync(config)
            skipped = result.count(Outcome.SKIPPED)
            if skipped != built or result.exit_code != 0:
                raise RuntimeError(f"rerun did not skip everything: {result.to_json()['summary']}")
            lib_times.append(sw.seconds)
            cli_times.append(cli_rerun(root, sb, links, state))
            stats = sb.stats()
            writes.append(stats["write_requests"])
            requests.append(stats["requests_total"])
    return BenchResult(
        "resume",
        f"rerun over a finished batch of {n:,} records x 3 files",
        (
            figure(
                "rerun wall time (library upload_records)",
                "s",
                lib_times,
                f"< {TARGET_S:.0f} s",
                lambda v: v < TARGET_S,
            ),
            figure(
                "rerun wall time (CLI subprocess)",
                "s",
                cli_times,
                f"< {TARGET_S:.0f} s",
                lambda v: v < TARGET_S,
                note="includes interpreter start-up and imports",
            ),
            figure("write requests (library + CLI)", "requests", writes, "0", lambda v: v == 0),
            figure("requests sent (library + CLI)", "requests", requests),
        ),
        params={"records": n, "files_per_record": 3},
        notes=(
            f"Building the folders and {built:,} journal entries took {build.seconds:.1f} s "
            "(not measured).",
        ),
    )
