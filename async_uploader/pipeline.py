"""The batch: discover -> validate -> plan -> one task per record -> links file and report.

Structured concurrency: one task group for the batch, one child task per record, as many
alive at once and as many uploads at once as the controller allows (two capacity limiters
whose sizes ``concurrency.Flow`` keeps at its learned limit, capped by
``--records-in-flight`` / ``--file-streams``), all requests under one rate limiter. A
record's failure becomes its ``RecordResult``; only ``BatchFatal`` errors (token refused,
server unreachable, journal not writable) cancel the others. A stop request (SIGINT/SIGTERM
in the CLI) starts no new records and gives in-flight ones ``grace_seconds`` before they are
cancelled.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import anyio

from .config import ShareMode, UploadConfig
from .errors import (
    BatchFatal,
    JournalWriteFailed,
    StateLocked,
    UploaderError,
)
from .events import (
    BatchDone,
    BatchStarted,
    Notice,
    RecordDone,
    RecordStarted,
    Reporter,
    no_reporter,
)
from .journal import Journal, RecordState
from .links import write_links, write_report
from .match import Hit
from .preflight import open_journal, preflight
from .prepare import Prepared, Todo, prepare
from .record import execute
from .results import BatchResult, Counters, Outcome, RecordResult
from .session import open_client
from .state import remember_owner
from .statelock import StateLock
from .steps.job import Claims, RecordContext, RecordJob, StepSettings
from .steps.share import Community


@dataclass
class Batch:
    """The batch's own bookkeeping: its journal and the latest state of every folder."""

    journal: Journal
    states: dict[str, RecordState]  # for the links file

    async def save(self, state: RecordState) -> None:
        # Hazard: cancellation. The server already changed; the journal must say so even
        # if the batch is being cancelled, so the write is shielded.
        data = self.journal.encode(state)  # on the loop: the thread then only makes syscalls
        durable = self.journal.needs_sync(state)
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(
                lambda: self.journal.write(state.folder, data, durable=durable)
            )
        self.states[state.folder] = state


@dataclass(frozen=True)
class Records:
    """What running the records needs: their context, the batch's books, the look-up."""

    ctx: RecordContext
    batch: Batch
    found: dict[str, tuple[Hit, ...]]
    grace_seconds: float


async def upload_records(
    config: UploadConfig,
    *,
    reporter: Reporter = no_reporter,
    stop: anyio.Event | None = None,
    abort: anyio.Event | None = None,
) -> BatchResult:
    """Upload every record folder under ``config.records_dir``; rerunning resumes.

    1. discover, read the journal and validate (no network);
    2. run one task per record that is not done: draft, files, share;
    3. write the links file (and the report) from the journal states, also when interrupted.
    """
    config.check()
    began = time.monotonic()
    root = config.state_path
    lock = StateLock(root, purpose=f"upload to {config.base_url}")
    lock.acquire()  # raises StateLocked (exit 2) before anything is sent
    try:
        return await _upload_locked(config, root, lock, reporter, stop, abort, began)
    finally:
        lock.release()


async def _upload_locked(
    config: UploadConfig,
    root: Path,
    lock: StateLock,
    reporter: Reporter,
    stop: anyio.Event | None,
    abort: anyio.Event | None,
    began: float,
) -> BatchResult:
    journal = await anyio.to_thread.run_sync(open_journal, config, root, reporter)
    prep = await anyio.to_thread.run_sync(prepare, config, journal)
    counters = Counters()
    results = dict(prep.settled)
    fatal: BatchFatal | None = None
    async with open_client(config, counters, reporter) as client:
        found: dict[str, tuple[Hit, ...]] = {}
        if prep.todo and not config.ephemeral_server:
            try:
                journal, prep, found = await preflight(client, config, journal, prep, reporter)
            except BatchFatal as exc:  # token refused, server unreachable: nothing starts
                fatal = exc
            results = dict(prep.settled)
        reporter(
            BatchStarted(
                records=len(prep.folders),
                to_upload=len(prep.todo),
                total_bytes=sum(t.record.total_bytes for t in prep.todo),
                already_done=sum(1 for r in prep.settled.values() if r.outcome is Outcome.SKIPPED),
            )
        )
        batch = Batch(journal, prep.states)
        flow = client.flow
        assert flow is not None  # open_client gives every batch one
        ctx = RecordContext(
            client,
            batch.save,
            reporter,
            flow.streams,
            StepSettings(config.share, config.chunk_size, config.stall_timeout, config.retry),
            Community(client, config.community or ""),
            Claims({s.draft_id for s in prep.states.values() if s.draft_id}),
        )
        records = Records(ctx, batch, found, config.grace_seconds)
        if fatal is None:
            fatal = await run_all(
                records, prep, results, stop or anyio.Event(), abort or anyio.Event(), lock
            )
        if ctx.owner is not None and not config.ephemeral_server:
            with contextlib.suppress(JournalWriteFailed):  # a hint for the next run only
                remember_owner(journal.dir, config.base_url, ctx.owner)
    for todo in prep.todo:  # whatever did not finish is resumable
        results.setdefault(
            todo.name,
            RecordResult(
                todo.name,
                Outcome.INTERRUPTED if fatal is None else Outcome.FAILED,
                error=None if fatal is None else f"stopped with the batch: {fatal.message}",
            ),
        )
    interrupted = any(r.outcome is Outcome.INTERRUPTED for r in results.values())
    ordered = tuple(results[f.name] for f in prep.folders)
    batch_result = BatchResult(
        ordered, counters, time.monotonic() - began, interrupted, str(fatal) if fatal else None
    )
    final_states = [batch.states[f.name] for f in prep.folders if f.name in batch.states]
    try:
        with anyio.CancelScope(shield=True):
            # A closure, not arguments: the worker task's repr would format 10,000 states.
            await anyio.to_thread.run_sync(lambda: finish(config, final_states, batch_result))
    except OSError as exc:  # the uploads happened; say so, and why the outputs are missing
        err = JournalWriteFailed(f"cannot write the links file or report: {exc}")
        batch_result = replace(batch_result, fatal=batch_result.fatal or str(err))
    reporter(BatchDone(batch_result))
    return batch_result


async def run_all(
    run: Records,
    prep: Prepared,
    results: dict[str, RecordResult],
    stop: anyio.Event,
    abort: anyio.Event,
    lock: StateLock | None = None,
) -> BatchFatal | None:
    """One task per record, as many at a time as the controller allows (``client.flow``:
    learned, capped by ``--records-in-flight``); returns a batch-fatal error."""
    fatal: BatchFatal | None = None
    client = run.ctx.client
    assert client.flow is not None  # open_client gives every batch one
    slots = client.flow.records

    async def one(todo: Todo, slot: object) -> None:
        nonlocal fatal
        name = todo.name
        try:
            results[name] = await process(run, todo)
        except BatchFatal as exc:
            fatal = fatal or exc
            results[name] = failed(name, exc)
            batch.cancel_scope.cancel()
        except Exception as exc:  # a bug must not sink the other records either
            results[name] = RecordResult(
                name, Outcome.FAILED, error=f"internal error: {type(exc).__name__}: {exc}"
            )
            run.ctx.reporter(RecordDone(results[name]))
        finally:
            slots.release_on_behalf_of(slot)
            client.first_write.set()  # whatever happened, the probe record is over

    async def grace_watch() -> None:
        await stop.wait()
        with anyio.move_on_after(run.grace_seconds):
            await abort.wait()  # a second signal ends the grace period at once
        batch.cancel_scope.cancel()

    async def keep_lock() -> None:
        while lock is not None:  # a lock file on a file system without flock: stay fresh
            await anyio.sleep(lock.refresh_interval)
            try:
                await anyio.to_thread.run_sync(lock.refresh)
            except StateLocked as exc:  # taken over as stale: finish what runs, start nothing
                run.ctx.reporter(Notice(None, str(exc)))
                stop.set()
                return

    async with anyio.create_task_group() as outer:
        outer.start_soon(grace_watch)
        outer.start_soon(keep_lock)
        async with anyio.create_task_group() as batch:
            for todo in prep.todo:
                # Borrowed here, given back by the record's own task: a token per record.
                slot = object()
                await slots.acquire_on_behalf_of(slot)
                if stop.is_set() or fatal is not None:
                    slots.release_on_behalf_of(slot)
                    break
                batch.start_soon(one, todo, slot)
                # Until one write has worked, run a single record: a refused token then
                # stops the batch after one record instead of failing all of them.
                await client.first_write.wait()
        outer.cancel_scope.cancel()
    return fatal


async def process(run: Records, todo: Todo) -> RecordResult:
    """Run one record, turning its errors into its result (one bad folder never sinks the batch)."""
    name, emit = todo.name, run.ctx.reporter
    if todo.warning:
        emit(Notice(name, todo.warning))
    emit(RecordStarted(name))
    state = todo.state or RecordState(folder=name)
    job = RecordJob(run.ctx, todo.record, state, todo.plan, run.found.get(name, ()))
    try:
        result = await execute(job)
    except BatchFatal:
        raise
    except UploaderError as exc:
        if exc.folder is None:
            exc.folder = name
        result = failed(name, exc, job.state.draft_id)
        await run.batch.save(job.state.evolve(last_error=str(exc), attempts=job.state.attempts + 1))
    emit(RecordDone(result))
    return result


def failed(name: str, exc: UploaderError, record_id: str | None = None) -> RecordResult:
    return RecordResult(
        name,
        Outcome.FAILED,
        record_id,
        error=str(exc),
        server_message=getattr(exc, "server_message", None),
    )


def finish(config: UploadConfig, states: Sequence[RecordState], result: BatchResult) -> None:
    """Write the links file (from the journal states, in folder order) and the report."""
    write_links(config.links_path, states, draft_only=config.share is ShareMode.DRAFT_ONLY)
    if config.report_file is not None:
        write_report(config.report_file, result)
