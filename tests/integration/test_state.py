"""State you can trust: the journal belongs to its records folder, server and user; one run
at a time; no blind creates; a lost answer never leaves a duplicate or an orphan draft.

Every test runs the real CLI against the sandbox over loopback, and counts on the server.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from async_uploader.match import clean_text
from async_uploader.sandbox import Sandbox, SandboxConfig
from async_uploader.statelock import StateLock
from tests.conftest import (
    SEED_RECORDS,
    RecordFactory,
    journal_dir,
    metadata,
    run_cli,
    start_cli,
)


def upload(sb: Any, root: Path, *extra: str) -> Any:
    return run_cli(["upload", str(root), "--url", sb.url, *extra], token=sb.token)


def creates(sb: Any) -> int:
    return int(sb.stats()["requests_per_route"].get("create_draft", 0))


def searches(sb: Any) -> int:
    return int(sb.stats()["requests_per_route"].get("search_user_records", 0))


def published_ids(root: Path) -> list[str]:
    links = json.loads((root / "records_links.json").read_text())
    return [link["record_html"].rsplit("/", 1)[-1] for link in links]


def test_rerun_with_another_or_no_links_file_creates_nothing(
    sandbox_thread: Any, make_records: RecordFactory, tmp_path: Path
) -> None:
    root = make_records(5)
    out = tmp_path / "out" / "links.json"
    first = upload(sandbox_thread, root, "--links-file", str(out))
    assert first.returncode == 0, first.stdout + first.stderr
    sandbox_thread.reset_stats()
    for extra in ((), ("--links-file", str(tmp_path / "elsewhere.json"))):
        proc = upload(sandbox_thread, root, *extra)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "skipped           5" in proc.stdout.replace("\t", " ") or "5 already" in proc.stderr
    assert sandbox_thread.stats()["requests_total"] == 0  # the journal knew: nothing asked
    assert len(sandbox_thread.records()) == 5
    ids = [link["record_html"].rsplit("/", 1)[-1] for link in json.loads(out.read_text())]
    assert published_ids(root) == ids  # the default links file lists the same records


def test_deleted_state_rerun_adopts_every_record_and_creates_nothing(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(6)
    assert upload(sandbox_thread, root).returncode == 0
    before = published_ids(root)
    shutil.rmtree(root / ".upload_state")
    (root / "records_links.json").unlink()
    sandbox_thread.reset_stats()
    proc = upload(sandbox_thread, root, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stats = sandbox_thread.stats()
    assert stats["write_requests"] == 0 and creates(sandbox_thread) == 0
    assert searches(sandbox_thread) <= 3  # one probe, one batched look-up (and its pages)
    assert proc.stderr.count("adopting it") == 6
    assert published_ids(root) == before
    assert len(sandbox_thread.records()) == 6


def test_read_only_records_keep_their_state_in_a_per_user_folder(
    sandbox_thread: Any, tmp_path: Path, private_state_home: Path
) -> None:
    args = ["upload", str(SEED_RECORDS), "--url", sandbox_thread.url, "--exclude", "_reference/*"]
    args += ["--links-file", str(tmp_path / "links.json")]
    first = run_cli(args, token=sandbox_thread.token)
    assert first.returncode == 0, first.stdout + first.stderr
    assert not (SEED_RECORDS / ".upload_state").exists()
    assert len(list((private_state_home / "async-uploader").iterdir())) == 1
    sandbox_thread.reset_stats()
    second = run_cli([*args[:-1], str(tmp_path / "other.json")], token=sandbox_thread.token)
    assert second.returncode == 0, second.stdout + second.stderr
    assert sandbox_thread.stats()["requests_total"] == 0


def test_new_batch_skips_the_look_up(sandbox_thread: Any, make_records: RecordFactory) -> None:
    root = make_records(3)
    assert upload(sandbox_thread, root).returncode == 0
    other = make_records(3, root=root.parent / "fresh", title="Fresh run")
    sandbox_thread.reset_stats()
    assert upload(sandbox_thread, other, "--new-batch").returncode == 0
    assert searches(sandbox_thread) == 1  # the probe that binds the state to the user
    assert creates(sandbox_thread) == 3


def test_a_second_run_is_refused_and_nothing_is_duplicated(make_records: RecordFactory) -> None:
    root = make_records(12)
    with Sandbox.in_thread(SandboxConfig(latency_ms=150)) as sb:
        first = start_cli(["upload", str(root), "--url", sb.url], sb.token)
        lock = root / ".upload_state" / "lock"
        deadline = time.monotonic() + 30
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = upload(sb, root)
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, out + err
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"pid {first.pid}" in second.stderr and "another run holds" in second.stderr
        records = sb.records()
    assert len(records) == 12 and all(r["is_published"] for r in records)


def test_a_held_lock_means_no_request_at_all(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(2)
    with StateLock(root / ".upload_state", purpose="a test holding the state"):
        proc = upload(sandbox_thread, root)
    assert proc.returncode == 2
    assert "a test holding the state" in proc.stderr
    assert sandbox_thread.stats()["requests_total"] == 0


def test_demo_then_production_keep_two_states(make_records: RecordFactory) -> None:
    root = make_records(3)
    with Sandbox.in_thread() as demo, Sandbox.in_thread() as production:
        assert upload(demo, root).returncode == 0
        proc = upload(production, root)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(production.records()) == 3  # not skipped as "done on the demo archive"
        demo.reset_stats()
        assert upload(demo, root).returncode == 0
        assert demo.stats()["requests_total"] == 0  # the demo state is intact
    assert journal_dir(root, demo.url).is_dir() and journal_dir(root, production.url).is_dir()


def test_sandbox_runs_start_fresh_and_never_touch_a_real_servers_state(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(2)
    assert upload(sandbox_thread, root).returncode == 0
    real_state = journal_dir(root, sandbox_thread.url)
    before = {p.name: p.read_bytes() for p in real_state.glob("*.json")}
    for _ in range(2):  # a second --sandbox run must not trust the first one's state
        proc = run_cli(["upload", str(root), "--sandbox"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "published         2" in proc.stdout
    assert {p.name: p.read_bytes() for p in real_state.glob("*.json")} == before


def test_a_reset_server_at_the_same_url_is_not_trusted(make_records: RecordFactory) -> None:
    root = make_records(2)
    with Sandbox.in_thread() as sb:
        assert upload(sb, root).returncode == 0
        port = int(sb.url.rsplit(":", 1)[1])
    extra = root / "2"  # one more folder: the rerun has work, so it asks the server
    extra.mkdir()
    (extra / "record_metadata.json").write_text(json.dumps(metadata("Simulation run 2")))
    (extra / "data.csv").write_bytes(b"x,y\n")
    with Sandbox.in_thread(port=port) as fresh:  # same URL, empty database
        proc = upload(fresh, root)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "reset server" in proc.stderr
        assert len(fresh.records()) == 3
    assert list((root / ".upload_state" / "servers").glob("*.retired-*"))


def test_previous_journal_format_is_migrated_not_reconciled(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    root = make_records(4)
    assert upload(sandbox_thread, root).returncode == 0
    state = root / ".upload_state"
    for entry in journal_dir(root, sandbox_thread.url).glob("*.json"):
        if entry.name == "server.json":
            continue
        data = json.loads(entry.read_text())  # back to the first format and layout
        data["version"] = 1
        for key in ("create_first", "clock", "sweep_from"):
            data.pop(key)
        (state / entry.name).write_text(json.dumps(data))
    shutil.rmtree(state / "servers")
    sandbox_thread.reset_stats()
    proc = upload(sandbox_thread, root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "moved 4 journal entries" in proc.stderr
    assert sandbox_thread.stats()["requests_total"] == 0  # no search, no create
    assert not list(state.glob("*.json"))


CURLY = ["“Curly” quotes run {i} ", "  Space-padded run {i}", "ﬁle ＡＢ run {i}\u200b"]


@pytest.mark.slow
@pytest.mark.parametrize(("index_delay", "lost"), [(1.0, 0.5), (4.5, 0.35)])
def test_cleaned_titles_with_lost_creates_leave_no_orphan_and_no_duplicate(
    make_records: RecordFactory, index_delay: float, lost: float
) -> None:
    """A realistic index delay (1 s: the patient search finds the draft) and a slow one
    (4.5 s: the create is resent, and the sweep deletes the lost attempt's draft)."""
    n = 9
    root = make_records(n, files={"data.bin": 3000})
    titles = [CURLY[i % 3].format(i=i) for i in range(n)]
    for i, title in enumerate(titles):
        (root / str(i) / "record_metadata.json").write_text(json.dumps(metadata(title)))
    plan = {
        "seed": 11,
        "rules": [{"route": "create_draft", "kind": "lose_response", "probability": lost}],
    }
    config = SandboxConfig(faults=plan, index_delay_s=index_delay)
    with Sandbox.in_thread(config) as sb:
        proc = upload(sb, root, "-v")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert sb.stats()["faults_per_kind"].get("lose_response", 0) >= 2
        records = sb.records()
    assert [r["id"] for r in records if r["has_draft"]] == []  # no orphan draft
    stored = sorted(r["title"] for r in records)
    assert stored == sorted(clean_text(t) for t in titles)  # each exactly once
    if index_delay > 4:
        assert "deleted draft" in proc.stderr  # the sweep really ran


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def _any(self) -> None:
        _Recorder.seen.append(dict(self.headers))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = _any

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def foreign_origin() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_link_to_another_origin_is_refused_without_sending_the_token(
    make_records: RecordFactory, foreign_origin: str
) -> None:
    root = make_records(2)
    with Sandbox.in_thread(SandboxConfig(links_origin=foreign_origin)) as sb:
        proc = upload(sb, root)
        records = sb.records()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert foreign_origin.split("//")[1] in proc.stdout + proc.stderr
    assert "not sending the token" in proc.stdout + proc.stderr
    assert _Recorder.seen == []  # nothing at all went there, least of all the token
    assert not any(r["is_published"] for r in records)  # the batch stopped at the links


def test_titles_with_apostrophes_and_dollars_are_looked_up(
    sandbox_thread: Any, make_records: RecordFactory
) -> None:
    """The real server refuses a raw ' or $ in a query string (the sandbox does too)."""
    root = make_records(2)
    for i, title in enumerate(["Impédance d'une cathode", "Cost in $ per kWh"]):
        (root / str(i) / "record_metadata.json").write_text(json.dumps(metadata(title)))
    assert upload(sandbox_thread, root).returncode == 0
    shutil.rmtree(root / ".upload_state")
    sandbox_thread.reset_stats()
    proc = upload(sandbox_thread, root, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr.count("adopting it") == 2
    assert creates(sandbox_thread) == 0


def test_a_redirect_to_another_origin_is_not_followed(
    make_records: RecordFactory, foreign_origin: str
) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", f"{foreign_origin}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        proc = run_cli(["upload", str(make_records(1)), "--url", url], token="secret-token")
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "redirected to" in proc.stdout and "not following it" in proc.stdout
    assert "secret-token" not in proc.stdout + proc.stderr
    assert _Recorder.seen == []
