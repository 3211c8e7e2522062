"""What a rerun does, decided from the journal and the server listing: tables, no I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from async_uploader.discover import LocalFile, RecordFolder
from async_uploader.journal import FileState, RecordState
from async_uploader.plan import Action, ServerFile, fingerprint, plan_files, plan_record
from async_uploader.validate import ValidRecord

A = LocalFile("a.dat", Path("/r/a.dat"), 10, 111)
B = LocalFile("raw/b.dat", Path("/r/raw/b.dat"), 20, 222)


def record(
    meta_sha: str = "m1", files: tuple[LocalFile, ...] = (A, B), stamp: tuple[int, int] = (300, 42)
) -> ValidRecord:
    folder = RecordFolder(
        "7", Path("/r"), Path("/r/record_metadata.json"), files, metadata_stamp=stamp
    )
    return ValidRecord(
        folder=folder, metadata={"metadata": {"title": "Run seven"}}, metadata_sha256=meta_sha
    )


FP = fingerprint(record())


@pytest.mark.parametrize(
    ("state", "action", "metadata_changed"),
    [
        (None, Action.CREATE, False),
        (RecordState("7"), Action.CREATE, False),
        (
            RecordState("7", phase="creating", create_started="2026-01-01T00:00:00+00:00"),
            Action.FIND_DRAFT,
            True,
        ),
        (
            RecordState("7", phase="draft", draft_id="d1", metadata_sha="m1"),
            Action.RESUME_DRAFT,
            False,
        ),
        (
            RecordState("7", phase="draft", draft_id="d1", metadata_sha="m0"),
            Action.RESUME_DRAFT,
            True,
        ),
        (
            RecordState("7", phase="sharing", draft_id="d1", metadata_sha="m1"),
            Action.CONFIRM_SHARE,
            False,
        ),
        (RecordState("7", phase="published", draft_id="d1", fingerprint=FP), Action.SKIP, False),
        (RecordState("7", phase="in-review", draft_id="d1", fingerprint=FP), Action.SKIP, False),
        (
            RecordState("7", phase="published", draft_id="d1", fingerprint="old"),
            Action.CHANGED,
            False,
        ),
        (RecordState("7", phase="draft"), Action.CREATE, False),  # no id: nothing to reuse
        (RecordState("7", phase="unknown"), Action.RECONCILE, True),  # unreadable journal
    ],
)
def test_plan_record(state: RecordState | None, action: Action, metadata_changed: bool) -> None:
    plan = plan_record(record(), state, FP)
    assert plan.action is action
    assert plan.metadata_changed is metadata_changed


def test_fingerprint_sees_metadata_and_file_changes() -> None:
    touched = LocalFile(A.key, A.path, A.size, A.mtime_ns + 1)
    assert fingerprint(record(stamp=(300, 43))) != FP  # metadata touched or edited
    assert fingerprint(record(stamp=(301, 42))) != FP
    assert fingerprint(record(files=(touched, B))) != FP
    assert fingerprint(record(files=(A,))) != FP
    assert fingerprint(record()) == FP


J_A = FileState("a.dat", 10, 111, "aaaa")
DONE_A = ServerFile("a.dat", "completed", "md5:aaaa")


@pytest.mark.parametrize(
    ("journal", "server", "local_md5", "keep", "verify", "delete", "upload"),
    [
        # fresh draft: everything to upload
        ({}, {}, {}, (), (), (), ("a.dat", "raw/b.dat")),
        # committed and journaled with the same size+mtime: keep
        ({"a.dat": J_A}, {"a.dat": DONE_A}, {}, ("a.dat",), (), (), ("raw/b.dat",)),
        # committed but the journal lost it: verify with a local md5
        ({}, {"a.dat": DONE_A}, {}, (), ("a.dat",), (), ("raw/b.dat",)),
        # ... and the local md5 decides
        ({}, {"a.dat": DONE_A}, {"a.dat": "aaaa"}, ("a.dat",), (), (), ("raw/b.dat",)),
        ({}, {"a.dat": DONE_A}, {"a.dat": "bbbb"}, (), (), ("a.dat",), ("a.dat", "raw/b.dat")),
        # the local file changed since it was uploaded (mtime differs): verify again
        (
            {"a.dat": FileState("a.dat", 10, 999, "aaaa")},
            {"a.dat": DONE_A},
            {},
            (),
            ("a.dat",),
            (),
            ("raw/b.dat",),
        ),
        # server checksum differs from the journal's md5: redo
        (
            {"a.dat": J_A},
            {"a.dat": ServerFile("a.dat", "completed", "md5:ffff")},
            {},
            (),
            (),
            ("a.dat",),
            ("a.dat", "raw/b.dat"),
        ),
        # pending on the server: content unknown, redo
        (
            {},
            {"a.dat": ServerFile("a.dat", "pending", None)},
            {},
            (),
            (),
            ("a.dat",),
            ("a.dat", "raw/b.dat"),
        ),
        # a server file that is no longer local: delete it
        (
            {"a.dat": J_A},
            {"a.dat": DONE_A, "old.txt": ServerFile("old.txt", "completed", "x")},
            {},
            ("a.dat",),
            (),
            ("old.txt",),
            ("raw/b.dat",),
        ),
    ],
)
def test_plan_files(
    journal: dict[str, FileState],
    server: dict[str, ServerFile],
    local_md5: dict[str, str],
    keep: tuple[str, ...],
    verify: tuple[str, ...],
    delete: tuple[str, ...],
    upload: tuple[str, ...],
) -> None:
    plan = plan_files((A, B), journal, server, local_md5)
    assert (plan.keep, plan.verify, plan.delete, plan.upload) == (keep, verify, delete, upload)
