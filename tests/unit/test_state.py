"""Where the state lives and what it belongs to: tables for the pure parts, real files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from async_uploader.config import default_state_root
from async_uploader.journal import CREATING, Journal, RecordState
from async_uploader.state import (
    Binding,
    bind,
    canonical_url,
    migrate_v1,
    owner_of,
    server_folders,
    server_key,
)
from tests.unit.conftest import run_unprivileged


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://Archive.example.org/", "https://archive.example.org"),
        ("https://archive.example.org:443", "https://archive.example.org"),
        ("http://127.0.0.1:80/x/", "http://127.0.0.1/x"),
    ],
)
def test_one_server_many_spellings(a: str, b: str) -> None:
    assert canonical_url(a) == canonical_url(b)
    assert server_key(a) == server_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://demo.archive.org", "https://archive.org"),  # demo first, then production
        ("http://127.0.0.1:5000", "http://127.0.0.1:5001"),
        ("https://a.org", "http://a.org"),
        ("https://a.org/one", "https://a.org/two"),
    ],
)
def test_other_servers_other_keys(a: str, b: str) -> None:
    assert server_key(a) != server_key(b)


def test_key_per_user_and_readable() -> None:
    key = server_key("https://archive.big-map.eu")
    assert key.startswith("archive.big-map.eu-")
    assert server_key("https://archive.big-map.eu", "7") == key + "@user-7"


@pytest.mark.parametrize(
    ("stored", "probed", "total", "ids", "decision"),
    [
        (None, None, 0, False, Binding.KEEP),  # a new state, a user without records
        (None, "3", 5, True, Binding.KEEP),  # the user is learned now
        ("3", "3", 5, True, Binding.KEEP),
        ("3", "4", 2, True, Binding.OTHER_USER),  # another account's token
        ("3", None, 0, True, Binding.CHECK),  # ours yet none visible: a reset server?
        (None, None, 0, True, Binding.CHECK),  # the same before the user was learned
        ("3", None, 0, False, Binding.KEEP),  # nothing journaled that could be stale
        ("3", None, 4, True, Binding.KEEP),  # records without an owner field: no evidence
    ],
)
def test_bind(stored: str | None, probed: str | None, total: int, ids: bool, decision: str) -> None:
    assert bind(stored, probed, total, ids) == decision


@pytest.mark.parametrize(
    ("hit", "owner"),
    [
        ({"parent": {"access": {"owned_by": {"user": 3}}}}, "3"),  # v12+
        ({"parent": {"access": {"owned_by": [{"user": 3}]}}}, "3"),  # before v11
        ({"parent": {"access": {"owned_by": None}}}, None),
        ({}, None),
    ],
)
def test_owner_of(hit: dict[str, object], owner: str | None) -> None:
    assert owner_of(hit) == owner


def test_state_root_follows_the_records_and_moves_when_read_only(open_tmp: Path) -> None:
    records = open_tmp / "records"
    records.mkdir()
    assert default_state_root(records) == records / ".upload_state"
    records.chmod(0o555)
    env = {"XDG_STATE_HOME": str(open_tmp / "xdg")}
    root = run_unprivileged(lambda: default_state_root(records, env))
    assert root.parent == open_tmp / "xdg" / "async-uploader"
    assert root.name.startswith("records-")


def test_per_user_state_is_keyed_by_the_real_path(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    a = tmp_path / "ro-a" / "records"
    b = tmp_path / "ro-b" / "records"
    for folder in (a, b):
        folder.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(a)
    # Only the fallback is keyed by path; exercise it through a missing parent's sibling.
    assert _fallback(a, env) != _fallback(b, env)
    assert _fallback(link, env) == _fallback(a, env)


def _fallback(records: Path, env: dict[str, str]) -> Path:
    from async_uploader import config

    original = config.writable_dir
    config.writable_dir = lambda folder: False  # type: ignore[assignment]
    try:
        return default_state_root(records, env)
    finally:
        config.writable_dir = original  # type: ignore[assignment]


def v1_entry(folder: str, links_self: str | None, phase: str = "published") -> bytes:
    data = {
        "version": 1,
        "folder": folder,
        "phase": phase,
        "fingerprint": "f",
        "metadata_sha": "m",
        "draft_id": "abcde-12345" if links_self else None,
        "links": {"self": links_self} if links_self else None,
        "record_url": None,
        "create_started": "2026-11-20T10:00:00+01:00",
        "title": "T",
        "files": [{"key": "a", "size": 1, "mtime_ns": 2, "md5": "x"}],
        "last_error": None,
        "attempts": 0,
        "updated": None,
    }
    return json.dumps(data).encode()


def test_v1_entries_move_to_their_server_and_are_read_migrated(tmp_path: Path) -> None:
    old = tmp_path / ".upload_state"
    old.mkdir()
    (old / "0.json").write_bytes(v1_entry("0", "http://127.0.0.1:5000/api/records/a/draft"))
    (old / "1.json").write_bytes(v1_entry("1", "https://other.org/api/records/b/draft"))
    (old / "2.json").write_bytes(v1_entry("2", None, phase=CREATING))
    target = old / "servers" / server_key("http://127.0.0.1:5000")
    moved = migrate_v1([old, old], target, "http://127.0.0.1:5000/api")
    assert sorted(moved) == ["0", "2"]
    assert (old / "1.json").exists()  # another server's entry stays where it was
    journal = Journal(target)
    state, warning = journal.load("0")
    assert warning is None and state is not None
    assert state.phase == "published" and state.files["a"].md5 == "x"
    lost, _ = journal.load("2")
    assert lost is not None
    assert lost.clock == "local"  # v1 timed attempts with the local clock
    assert lost.create_first == lost.create_started
    # Saved again, the entry is of the current format and reads back the same.
    journal.save(lost)
    assert json.loads((target / "2.json").read_text())["version"] == 2
    assert journal.load("2")[0] == lost


def test_entry_from_a_newer_tool_is_refused_not_guessed(tmp_path: Path) -> None:
    from async_uploader.journal import EntryTooNew

    (tmp_path / "0.json").write_text(json.dumps({"version": 99, "folder": "0"}))
    with pytest.raises(EntryTooNew, match="newer"):
        Journal(tmp_path).load("0")


def test_first_write_and_risky_steps_are_durable(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    state = RecordState(folder="0")
    assert journal.needs_sync(state)  # the entry's first write
    journal.save(state)
    assert not journal.needs_sync(state.evolve(phase="draft"))
    assert journal.needs_sync(state.evolve(phase="creating"))
    assert journal.needs_sync(state.evolve(phase="sharing"))
    assert Journal(tmp_path).load("0")[0] is not None


def test_server_folders_for_status(tmp_path: Path) -> None:
    servers = tmp_path / "servers"
    a = servers / server_key("https://a.org")
    for folder in (a, Path(f"{a}@user-2"), servers / server_key("https://b.org")):
        folder.mkdir(parents=True)
    (servers / "x.retired-1").mkdir()
    (servers / "sandbox").mkdir()
    assert len(server_folders(tmp_path, None)) == 3
    assert [p.name for p in server_folders(tmp_path, "https://a.org/")] == [
        a.name,
        a.name + "@user-2",
    ]
    assert server_folders(tmp_path / "none", None) == []
