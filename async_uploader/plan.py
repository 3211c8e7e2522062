"""Deciding what is left to do: pure functions of (local folder, journal, server listing).

Nothing here does I/O, so every rule is a row in a table test (``tests/unit/test_plan.py``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .discover import LocalFile, RecordFolder
from .journal import (
    CREATING,
    DRAFT,
    IN_REVIEW,
    NEW,
    PUBLISHED,
    SHARING,
    UNKNOWN,
    FileState,
    RecordState,
)
from .validate import ValidRecord


def fingerprint(record: ValidRecord) -> str:
    """Identity of the folder as uploaded: size and mtime of the metadata and of every file.

    Like any size+mtime rule it trusts the file system's clock; it is what lets a rerun of a
    finished batch decide without reading a single file (see ``unchanged_since_done``).
    """
    return folder_fingerprint(record.folder)


def folder_fingerprint(folder: RecordFolder) -> str:
    h = hashlib.sha256(f"{folder.metadata_stamp}".encode())
    for f in folder.files:
        h.update(f"\0{f.key}\0{f.size}\0{f.mtime_ns}".encode())
    return h.hexdigest()


def unchanged_since_done(folder: RecordFolder, state: RecordState | None) -> bool:
    """True when a rerun has nothing to do for this folder: checked from stats alone, so
    the rerun of a finished 10,000-record batch reads no file but the journal.
    """
    if state is None or not state.done or folder.problems or state.sweep_from:
        return False
    return folder_fingerprint(folder) == state.fingerprint


class Action(StrEnum):
    SKIP = "skip"  # done in an earlier run, folder unchanged: no request at all
    CHANGED = "changed"  # done earlier, but the folder changed since: report, do not re-publish
    SWEEP = "sweep"  # done, but a resent create may have left a twin draft: look for it
    CONFIRM_SHARE = "confirm-share"  # a publish/submit was in flight: GET the record first
    RESUME_DRAFT = "resume-draft"  # a draft exists: check its files, upload the rest, share
    FIND_DRAFT = "find-draft"  # a create was in flight: look for the draft before creating
    RECONCILE = "reconcile"  # the journal entry was unreadable: look for the record by title
    CREATE = "create"  # nothing on the server yet


@dataclass(frozen=True)
class RecordPlan:
    action: Action
    reason: str
    draft_id: str | None = None
    metadata_changed: bool = False


def plan_record(record: ValidRecord, state: RecordState | None, fp: str) -> RecordPlan:
    if state is None or state.phase == NEW:
        return RecordPlan(Action.CREATE, "not uploaded yet")
    if state.phase in (PUBLISHED, IN_REVIEW):
        if state.fingerprint != fp:
            return RecordPlan(
                Action.CHANGED, f"folder changed after it was {state.phase}", state.draft_id
            )
        if state.sweep_from:
            return RecordPlan(Action.SWEEP, "a resent create's twin may exist", state.draft_id)
        return RecordPlan(Action.SKIP, f"already {state.phase}", state.draft_id)
    changed = state.metadata_sha != record.metadata_sha256
    if state.phase == SHARING and state.draft_id:
        return RecordPlan(Action.CONFIRM_SHARE, "share was in flight", state.draft_id, changed)
    if state.phase == DRAFT and state.draft_id:
        return RecordPlan(Action.RESUME_DRAFT, "draft exists", state.draft_id, changed)
    if state.phase == UNKNOWN:
        return RecordPlan(Action.RECONCILE, "journal entry unreadable", None, True)
    if state.phase == CREATING:
        return RecordPlan(Action.FIND_DRAFT, "create was in flight", None, True)
    return RecordPlan(Action.CREATE, f"journal phase {state.phase!r} without a draft id")


@dataclass(frozen=True)
class ServerFile:
    key: str
    status: str  # "pending" | "completed" | ...
    checksum: str | None


@dataclass(frozen=True)
class FilePlan:
    keep: tuple[str, ...]  # completed on the server and known to match the local file
    verify: tuple[str, ...]  # completed, but only a local md5 can tell whether it matches
    delete: tuple[str, ...]  # server entries to remove (pending, different, or not local)
    upload: tuple[str, ...]  # keys to init and upload, in local order


def plan_files(
    local: Sequence[LocalFile],
    journal: Mapping[str, FileState],
    server: Mapping[str, ServerFile],
    local_md5: Mapping[str, str] | None = None,
) -> FilePlan:
    """What to do with each file of a draft that already exists.

    A completed server file is kept when its checksum equals the local md5, known either
    from the journal (same size and mtime as now) or from ``local_md5`` (computed by the
    caller for the keys of an earlier ``verify``).
    """
    local_md5 = local_md5 or {}
    keep: list[str] = []
    verify: list[str] = []
    delete: list[str] = []
    upload: list[str] = []
    for f in local:
        remote = server.get(f.key)
        if remote is None:
            upload.append(f.key)
            continue
        if remote.status == "completed":
            known = journal.get(f.key)
            md5 = local_md5.get(f.key)
            if md5 is None and known and (known.size, known.mtime_ns) == (f.size, f.mtime_ns):
                md5 = known.md5
            if md5 is None:
                verify.append(f.key)
                continue
            if remote.checksum == f"md5:{md5}":
                keep.append(f.key)
                continue
        delete.append(f.key)  # pending (content unknown) or different content
        upload.append(f.key)
    local_keys = {f.key for f in local}
    delete.extend(k for k in server if k not in local_keys)
    return FilePlan(tuple(keep), tuple(verify), tuple(delete), tuple(upload))


def rerun_action(plan: RecordPlan) -> str:
    """One line for `status`: what a rerun would do."""
    return {
        Action.SKIP: "nothing (done)",
        Action.SWEEP: "look for a draft a lost create left behind, and delete it if provably ours",
        Action.CHANGED: "nothing: report the change (decide yourself: new version or revert)",
        Action.CONFIRM_SHARE: "check whether the share went through, then finish it",
        Action.RESUME_DRAFT: "reuse the draft, upload missing or changed files, share",
        Action.FIND_DRAFT: "look for the draft a lost create may have made, then continue",
        Action.RECONCILE: "look for the record on the server by title, then continue",
        Action.CREATE: "create the draft (after a title look-up if the journal never knew the "
        "folder), upload, share",
    }[plan.action]
