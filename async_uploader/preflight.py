"""Before the first record starts: whose state this is, and what the server already holds.

First the journal of this server is opened (``open_journal``: entries of the first layout
moved in). Then two checks, both read-only and skipped when nothing is left to do (a
finished rerun sends no request at all):

1. **Bind the state to the user** (``bind_user``): one ``GET /api/user/records?size=1`` gives
   the token's own record count and, from the newest record, the owner's id. Entries of
   another account go to that account's own folder; entries the server no longer knows at
   all (a reset server at the same URL) are retired, not trusted.
2. **No blind creates** (``look_up``): for every folder the journal does not know, the
   user's records are searched by title, many titles OR-ed per query. The record steps then
   confirm each hit by its files before adopting or reusing it (``reconcile.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import anyio

from .client import InvenioClient
from .config import UploadConfig
from .errors import BatchFatal, UploaderError, first_error
from .events import Notice, Reporter
from .journal import Journal, RecordState
from .match import Hit
from .prepare import Prepared, prepare
from .results import Outcome, RecordResult
from .state import (
    Binding,
    ServerInfo,
    bind,
    canonical_url,
    has_entries,
    journal_for,
    migrate_v1,
    owner_of,
    read_info,
    reset_sandbox,
    retire,
    server_folder,
    server_key,
    write_info,
)
from .steps.reconcile import lookup


async def bind_user(
    client: InvenioClient,
    config: UploadConfig,
    journal: Journal,
    known_ids: list[str],
    notice: Callable[[str], None],
) -> tuple[Journal, bool, int]:
    """The journal for the token's user on this server; (journal, changed, record count)."""
    probe = await client.probe_own_records()
    hits = probe.obj.get("hits", {})
    total = hits.get("total", 0) if isinstance(hits, dict) else 0
    total = total.get("value", 0) if isinstance(total, dict) else int(total or 0)
    newest = hits.get("hits", []) if isinstance(hits, dict) else []
    user = owner_of(newest[0]) if newest else None
    info = read_info(journal.dir) or ServerInfo(canonical_url(config.base_url))
    decision = bind(info.user, user, total, bool(known_ids))
    if decision == Binding.OTHER_USER:
        folder = journal.dir.parent / server_key(config.base_url, user)
        notice(
            f"the state in {journal.dir} belongs to user {info.user} on this server; "
            f"this token is user {user}'s: using {folder}"
        )
        journal = journal_for(folder)
        info = read_info(folder) or ServerInfo(info.url, user)
        write_info(folder, info)
        return journal, True, total
    if decision == Binding.CHECK and known_ids and await _all_gone(client, known_ids[:1]):
        kept = retire(
            journal.dir,
            f"retired: the server at {info.url} had none of these records (a reset server?)",
        )
        notice(
            f"the server has none of the records this state lists (a reset server at "
            f"{info.url}?); starting a new state, the old one is kept in {kept}"
        )
        journal = journal_for(journal.dir)
        write_info(journal.dir, ServerInfo(info.url, user))
        return journal, True, total
    if (info.user is None and user is not None) or read_info(journal.dir) is None:
        write_info(journal.dir, ServerInfo(info.url, info.user or user))
    return journal, False, total


async def _all_gone(client: InvenioClient, ids: list[str]) -> bool:
    for rec_id in ids:
        if (await client.get_record(rec_id)).status == 200:
            return False
        if (await client.get_draft(rec_id)).status != 404:
            return False
    return True


async def look_up(
    client: InvenioClient, titles: dict[str, str]
) -> tuple[dict[str, tuple[Hit, ...]], str | None]:
    """The batched title search; on failure, why (those folders are then not created)."""
    if not titles:
        return {}, None
    try:
        return await lookup(client, titles), None
    except BaseExceptionGroup as group:
        err = first_error(group)
        if isinstance(err, UploaderError) and not isinstance(err, BatchFatal):
            return {}, str(err)
        raise err from None


def known_ids(states: dict[str, RecordState]) -> list[str]:
    """One journaled record id to look up when the server shows none of ours."""
    newest = has_entries(states)
    return [newest.draft_id] if newest and newest.draft_id else []


def open_journal(config: UploadConfig, root: Path, reporter: Reporter) -> Journal:
    """This server's journal in the state root (first-layout entries moved in)."""
    if config.ephemeral_server:
        return journal_for(reset_sandbox(root))
    folder = server_folder(root, config.base_url)
    old = [root, config.links_path.parent / ".upload_state"]
    moved = migrate_v1(old, folder, config.api_url)
    if moved:
        reporter(
            Notice(
                None,
                f"moved {len(moved)} journal entries of the previous format into {folder}",
            )
        )
    return journal_for(folder)


async def preflight(
    client: InvenioClient,
    config: UploadConfig,
    journal: Journal,
    prep: Prepared,
    reporter: Reporter,
) -> tuple[Journal, Prepared, dict[str, tuple[Hit, ...]]]:
    """Bind the state to the token's user, then look up the folders the journal does not
    know. Read-only; runs only when there is something to do."""

    def notice(message: str) -> None:
        reporter(Notice(None, message))

    journal, rebound, total = await bind_user(
        client, config, journal, known_ids(prep.states), notice
    )
    if rebound:
        prep = await anyio.to_thread.run_sync(prepare, config, journal)
    unknown = {
        t.name: t.record.title
        for t in prep.todo
        if t.warning is not None or (t.state is None and not config.new_batch)
    }
    if total == 0 or not unknown:
        return journal, prep, {}
    found, error = await look_up(client, unknown)
    if error is None:
        return journal, prep, found
    settled = dict(prep.settled)
    for name in unknown:
        settled[name] = RecordResult(
            name,
            Outcome.FAILED,
            error=f"could not check the server for this folder's record, so none was "
            f"created (rerun; or --new-batch when none can exist): {error}",
        )
    todo = tuple(t for t in prep.todo if t.name not in unknown)
    return journal, replace(prep, settled=settled, todo=todo), {}
