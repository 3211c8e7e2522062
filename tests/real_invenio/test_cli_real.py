"""The CLI end to end against a real InvenioRDM, v14 or v12 (tests/real_invenio/up.sh).

The same commands a user runs, checked through the server's API and its PostgreSQL rather
than the uploader's own output. Titles carry a per-run tag: the server keeps every record.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, SEED_RECORDS, RecordFactory, metadata, run_cli
from tests.integration.test_resume import journal_phases, start_cli
from tests.real_invenio.helpers import (
    api_get,
    assert_files_match,
    db_titles,
    record_id,
    upload,
    user_records,
)
from tests.real_invenio.real_invenio_env import RealServer

pytestmark = pytest.mark.real_invenio

UP_SH = ROOT / "tests" / "real_invenio" / "up.sh"
ORIGINAL_LINKS = SEED_RECORDS / "_reference" / "records_links.example-2022-04.json"


@pytest.fixture
def tag() -> str:
    return f"AU{uuid.uuid4().hex[:12]}"


def links_of(path: Path) -> list[dict[str, str]]:
    links = json.loads(path.read_text())
    assert isinstance(links, list)
    return links


def report_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def retitle(records: Path, tag: str) -> list[str]:
    """Make a copied records/ tree unique to this run; the new titles in folder order."""
    titles = []
    for meta_file in sorted(
        records.glob("*/record_metadata.json"), key=lambda p: int(p.parent.name)
    ):
        body = json.loads(meta_file.read_text())
        body["metadata"]["title"] = f"{body['metadata']['title']} {tag}"
        meta_file.write_text(json.dumps(body))
        titles.append(body["metadata"]["title"])
    return titles


def test_project_and_seed_records_published_byte_identical(
    real_server: RealServer, tmp_path: Path, tag: str
) -> None:
    records = tmp_path / "records"
    shutil.copytree(ROOT / "records", records)
    titles = retitle(records, tag)
    proc = upload(real_server, records, "--report", str(tmp_path / "report.json"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    original_keys = set(json.loads(ORIGINAL_LINKS.read_text())[0])
    links = links_of(records / "records_links.json")
    assert len(links) == len(titles) >= 4
    for i, (link, title) in enumerate(zip(links, titles, strict=True)):
        assert original_keys <= set(link), original_keys - set(link)
        assert link["record_html"] == f"{real_server.url}/records/{record_id(link)}"
        rec = api_get(real_server, f"/records/{record_id(link)}")
        assert rec["is_published"] and rec["metadata"]["title"] == title
        assert assert_files_match(real_server, rec["id"], records / str(i)) >= 1

    seed_links = tmp_path / "seed-out" / "records_links.json"
    seed = upload(
        real_server,
        SEED_RECORDS,
        "--links-file",
        str(seed_links),
        "--state-dir",
        str(tmp_path / "seed-state"),
        "--exclude",
        "_reference/*",
        # The seed titles cannot carry a run tag and the server keeps earlier runs' records:
        # without this the look-up would (rightly) adopt them, with the published record's
        # links instead of the draft-creation links this test checks.
        "--new-batch",
    )
    assert seed.returncode == 0, seed.stdout + seed.stderr
    links = links_of(seed_links)
    assert len(links) == 2
    for i, link in enumerate(links):
        assert original_keys <= set(link), original_keys - set(link)
        assert all(v.startswith(f"{real_server.url}/") for v in link.values())
        assert link["record_html"] == f"{real_server.url}/records/{record_id(link)}"
        rec = api_get(real_server, f"/records/{record_id(link)}")
        assert rec["is_published"]
        assert assert_files_match(real_server, rec["id"], SEED_RECORDS / str(i)) >= 1


def test_community_share_through_review(
    real_server: RealServer, make_records: RecordFactory, tag: str
) -> None:
    """A 30-record batch shared into a community: every record published in it, every file's
    bytes verified through the API, one record per folder and no draft left behind."""
    n = 30
    files = {"data.csv": 3_000, "raw/trace.bin": 40_000}
    root = make_records(n, files=files, title=f"Shared {tag}")
    proc = upload(real_server, root, "--community", real_server.community)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    community = api_get(real_server, f"/communities/{real_server.community}")
    links = links_of(root / "records_links.json")
    assert len(links) == n
    for i, link in enumerate(links):
        rec = api_get(real_server, f"/records/{record_id(link)}")
        assert rec["is_published"] and rec["metadata"]["title"] == f"Shared {tag} {i}"
        assert community["id"] in rec["parent"]["communities"]["ids"]
        assert assert_files_match(real_server, rec["id"], root / str(i)) == len(files)
    # The server's own view agrees: no draft left behind, one record per folder.
    published, drafts = db_titles(tag)
    assert published == {f"Shared {tag} {i}": 1 for i in range(n)} and drafts == {}


def test_server_refusals_reported_per_folder(
    real_server: RealServer, make_records: RecordFactory, tmp_path: Path, tag: str
) -> None:
    """Metadata our validator lets through but the server refuses: its words, per folder."""
    root = make_records(6, title=f"Refusals {tag}")

    def rewrite(i: int, change: Any) -> None:
        body = metadata(f"Refusals {tag} {i}")
        change(body["metadata"])
        (root / str(i) / "record_metadata.json").write_text(json.dumps(body))

    rewrite(1, lambda m: m.update(resource_type={"id": "no-such-type"}))
    rewrite(3, lambda m: m["creators"][0].update(role={"id": "no-such-role"}))
    orcid = [{"scheme": "orcid", "identifier": "0000-0000-0000-0000"}]
    rewrite(4, lambda m: m["creators"][0]["person_or_org"].update(identifiers=orcid))
    validate = run_cli(["validate", str(root)])
    assert validate.returncode == 0, validate.stdout + validate.stderr  # locally all valid
    report = tmp_path / "report.json"
    proc = upload(real_server, root, "--report", str(report))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    rep = {r["folder"]: r for r in report_of(report)["records"]}
    assert {f for f, r in rep.items() if r["state"] == "published"} == {"0", "2", "5"}
    assert {f for f, r in rep.items() if r["state"] == "failed"} == {"1", "3", "4"}
    assert rep["1"]["server_message"] == "Invalid value no-such-type."
    assert rep["3"]["server_message"] == "Invalid value no-such-role."
    orcid_field = "metadata.creators.0.person_or_org.identifiers.0.identifier"
    assert "Invalid ORCID identifier." in rep["4"]["error"] + str(rep["4"]["server_message"])
    for folder, text in (
        ("1", "Invalid value no-such-type."),
        ("3", "Invalid value no-such-role."),
        ("4", "Invalid ORCID identifier."),
    ):  # the server's words, on the line of the folder it refused
        assert any(f"folder {folder}:" in ln and text in ln for ln in out.splitlines()), out
    assert orcid_field in out
    assert len(links_of(root / "records_links.json")) == 3
    published, _ = db_titles(tag)
    assert set(published) == {f"Refusals {tag} {i}" for i in (0, 2, 5)}


def test_kill_and_rerun_exactly_once(
    real_server: RealServer, make_records: RecordFactory, tag: str
) -> None:
    n = 15
    title = f"Killed {tag}"
    root = make_records(n, files={"data.csv": 30_000, "raw/trace.bin": 200_000}, title=title)
    for i in (2, 8, 13):  # large files, so some kills land mid-upload
        (root / str(i) / "big.bin").write_bytes(random.Random(i).randbytes(20 * 1024 * 1024))
    args = ["upload", str(root), "--url", real_server.url, "--records-in-flight", "3", "-q"]
    rng = random.Random(20261126)
    kills, finished, phases_at_kill = 0, False, set[str]()
    for _ in range(12):
        proc = start_cli(args, real_server.token)
        time.sleep(rng.uniform(1.0, 3.0))
        if proc.poll() is not None:
            out, err = proc.communicate()
            assert proc.returncode == 0, out + err
            finished = True
            break
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        kills += 1
        phases_at_kill.update(journal_phases(root / ".upload_state"))
    print(f"{kills} kills; journal phases seen at a kill: {sorted(phases_at_kill)}")
    assert kills >= 3, "the batch finished before it could be killed three times"
    assert phases_at_kill - {"published"}, "no kill landed mid-record"
    if not finished:
        final = upload(real_server, root, "--records-in-flight", "3", "-q")
        assert final.returncode == 0, final.stdout + final.stderr

    titles = [f"{title} {i}" for i in range(n)]
    hits = user_records(real_server, tag, want=n)
    assert sorted(h["metadata"]["title"] for h in hits) == sorted(titles)  # one each
    assert all(h["is_published"] and not h["is_draft"] for h in hits)
    published, drafts = db_titles(tag)
    assert published == dict.fromkeys(titles, 1), published
    assert drafts == {}, f"leftover drafts: {drafts}"
    by_title = {h["metadata"]["title"]: h["id"] for h in hits}
    links = links_of(root / "records_links.json")
    assert [record_id(link) for link in links] == [by_title[t] for t in titles]
    for i, rec_id in enumerate(by_title[t] for t in titles):
        listing = api_get(real_server, f"/records/{rec_id}/files")
        server_md5 = {e["key"]: e["checksum"] for e in listing["entries"]}
        folder = root / str(i)
        local = {
            p.relative_to(folder).as_posix(): f"md5:{hashlib.md5(p.read_bytes()).hexdigest()}"
            for p in folder.rglob("*")
            if p.is_file() and p.name != "record_metadata.json"
        }
        assert server_md5 == local, i


@pytest.fixture(scope="module")
def rate_limited(real_server: RealServer) -> Iterator[str]:
    """gunicorn restarted with a small limit; restarted without one afterwards, always."""
    limit = "10 per second"
    subprocess.run(
        ["bash", str(UP_SH), "--restart-server", "--ratelimit", limit],
        check=True,
        capture_output=True,
        timeout=180,
    )
    try:
        yield limit
    finally:
        subprocess.run(
            ["bash", str(UP_SH), "--restart-server"], check=True, capture_output=True, timeout=180
        )


def test_rate_limited_batch_stays_under_5_percent_429(
    real_server: RealServer,
    rate_limited: str,
    make_records: RecordFactory,
    tmp_path: Path,
    tag: str,
) -> None:
    n = 20
    root = make_records(n, files={"data.csv": 2_000}, title=f"Limited {tag}")
    report = tmp_path / "report.json"
    proc = upload(real_server, root, "--report", str(report), "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    counters = report_of(report)["counters"]
    share = counters["responses_429"] / counters["requests"]
    print(f"{rate_limited}: {counters['requests']} requests, {counters['responses_429']} 429s")
    assert share < 0.05, counters
    published, drafts = db_titles(tag)
    assert len(published) == n and drafts == {}
