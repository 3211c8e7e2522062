"""The local half of a batch: discover, read the journal, validate. No network.

``prepare`` decides what every folder's fate is before the first request: finished,
unchanged folders are settled from file stats and the journal alone (so the rerun of a
finished 10,000-record batch reads no data file), invalid ones are reported, the rest become
the batch's work.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .config import UploadConfig, ValidationLimits
from .discover import Problem, RecordFolder, discover
from .journal import UNKNOWN, EntryTooNew, Journal, RecordState
from .plan import Action, RecordPlan, fingerprint, plan_record, unchanged_since_done
from .results import FileResult, Outcome, RecordResult
from .validate import ValidRecord, validate_all


@dataclass(frozen=True)
class Todo:
    """A folder with work left: its record, what the journal says, and the plan."""

    record: ValidRecord
    state: RecordState | None  # None: the journal does not know the folder
    warning: str | None  # the entry was unreadable (then ``state`` is phase ``unknown``)
    plan: RecordPlan

    @property
    def name(self) -> str:
        return self.record.folder.name


@dataclass(frozen=True)
class Prepared:
    """What the batch knows before the first request: every folder's fate or its plan.

    ``upload`` and ``inspect_records`` (status, dry-run) both start from this one value, so
    what a dry run says is what the upload does.
    """

    folders: tuple[RecordFolder, ...]
    settled: dict[str, RecordResult]  # skipped, changed and invalid folders
    todo: tuple[Todo, ...]
    states: dict[str, RecordState]  # latest known journal state per folder


def prepare(config: UploadConfig, journal: Journal) -> Prepared:
    """Discover, read the journal, validate what is left: all local, no network.

    Finished, unchanged folders are settled first, without validation: that keeps the
    rerun of a finished 10,000-record batch to file-system reads.
    """
    folders = discover(config.records_dir, include=config.include, exclude=config.exclude)
    settled: dict[str, RecordResult] = {}
    states: dict[str, RecordState] = {}
    loaded: dict[str, tuple[RecordState | None, str | None]] = {}
    for folder in folders:
        try:
            loaded[folder.name] = journal.load(folder.name)
        except EntryTooNew as exc:
            settled[folder.name] = RecordResult(folder.name, Outcome.FAILED, error=str(exc))
            continue
        state = loaded[folder.name][0]
        if state is not None:
            states[folder.name] = state
            if unchanged_since_done(folder, state):
                settled[folder.name] = skipped(state)
    rest = [f for f in folders if f.name not in settled]
    valid, invalid = validate_all(rest, config.limits)
    for folder, problems in invalid:
        settled[folder.name] = RecordResult(
            folder.name, Outcome.INVALID, error="; ".join(str(p) for p in problems)
        )
    todo: list[Todo] = []
    for record in valid:
        name = record.folder.name
        state, warning = loaded[name]
        if warning:  # unreadable entry: the server is asked before anything is created
            state = RecordState(folder=name, phase=UNKNOWN)
        plan = plan_record(record, state, fingerprint(record))
        if plan.action is Action.SKIP and state is not None:
            settled[name] = skipped(state)
        elif plan.action is Action.CHANGED and state is not None:
            settled[name] = changed(state)
        else:
            todo.append(Todo(record, state, warning, plan))
    return Prepared(tuple(folders), settled, tuple(todo), states)


def changed(state: RecordState) -> RecordResult:
    return RecordResult(
        state.folder,
        Outcome.CHANGED,
        state.draft_id,
        state.record_url,
        error=f"the folder changed after its record was {state.phase}; not re-publishing "
        "(make a new version, or revert the folder)",
    )


def skipped(state: RecordState) -> RecordResult:
    files = tuple(FileResult(f.key, f.size, f.md5) for f in state.files.values())
    return RecordResult(state.folder, Outcome.SKIPPED, state.draft_id, state.record_url, files)


@dataclass(frozen=True)
class Validation:
    """``validate``'s answer for a whole records folder (no network)."""

    folders: int
    valid: tuple[ValidRecord, ...]
    invalid: tuple[tuple[RecordFolder, tuple[Problem, ...]], ...]


def validate_records(
    records_dir: str | os.PathLike[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    limits: ValidationLimits | None = None,
) -> Validation:
    """Discover and validate every record folder under ``records_dir``, as an upload would."""
    folders = discover(Path(records_dir), include=include, exclude=exclude)
    valid, invalid = validate_all(folders, limits)
    return Validation(len(folders), tuple(valid), tuple(invalid))
