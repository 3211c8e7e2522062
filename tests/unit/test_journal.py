"""Journal entries: round trip, atomic replacement, tolerant reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from async_uploader.errors import JournalWriteFailed
from async_uploader.journal import FileState, Journal, RecordState


def test_round_trip(tmp_path: Path) -> None:
    j = Journal(tmp_path / "state")
    state = RecordState(
        "run/1 ü",
        phase="draft",
        draft_id="abc-123",
        links={"self": "x"},
        files={"a": FileState("a", 3, 7, "md5")},
    )
    j.save(state)
    loaded, warning = j.load("run/1 ü")
    assert warning is None
    assert loaded == state
    assert j.load("other") == (None, None)


def test_replace_leaves_no_temp_files(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    for i in range(5):
        j.save(RecordState("0", attempts=i))
    assert [p.name for p in tmp_path.iterdir()] == ["0.json"]
    assert j.load("0")[0].attempts == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"version": "2", "folder": "0"}',
        b'{"version": 1}',
        b"[]",
        b'{"version": 1, "folder": "0", "bogus": 1}',
    ],
)
def test_corrupt_entry_is_a_warning_not_a_crash(tmp_path: Path, content: bytes) -> None:
    j = Journal(tmp_path)
    j.path_for("0").write_bytes(content)
    state, warning = j.load("0")
    assert state is None
    assert warning is not None and "checking the server" in warning


def test_entry_of_another_folder_is_ignored(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.save(RecordState("1"))
    os.replace(j.path_for("1"), j.path_for("2"))
    state, warning = j.load("2")
    assert state is None and warning is not None and "belongs to" in warning


def test_unwritable_state_dir_is_fatal(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(JournalWriteFailed) as info:
        Journal(blocker / "state").save(RecordState("0"))
    assert info.value.folder == "0"
