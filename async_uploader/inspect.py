"""What is done and what a run would do: ``status`` and ``upload --dry-run`` in the library.

Built on the very ``prepare()`` (discover, journal, validate, plan) that ``upload_records``
runs, so what this says is what an upload does. Nothing here writes to the server or to the
state: a journal of the previous layout is read where it lies, not moved.

``ask_server`` sends one read (the state's probe) to learn the user's record count (whether
the title look-ups will run) and the server's rate limit (the least time); ``check_server``
also reads each journaled record, concurrently under the shared rate limiter.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from .client import InvenioClient
from .config import ShareMode, UploadConfig
from .errors import UploaderError
from .estimate import Estimate, allowed_rate, batch_requests
from .journal import Journal
from .match import title_queries
from .plan import rerun_action
from .prepare import Prepared, prepare
from .results import Counters, Outcome
from .session import open_client
from .state import server_folder, server_folders


@dataclass(frozen=True)
class FolderView:
    """One folder: what the journal knows and what a run would do with it."""

    folder: str
    state: str  # the journal's phase ("new" when it has none), or "invalid"/"failed"
    action: str  # the plan (``plan.Action``), or "skip"/"changed"/"invalid"/"refuse"
    rerun: str  # the same, for people
    record_id: str | None = None
    files: int = 0
    bytes: int = 0
    note: str | None = None  # a warning, or why the folder is invalid
    server: str | None = None  # with check_server: what the server says

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass(frozen=True)
class Inspection:
    folders: tuple[FolderView, ...]
    estimate: Estimate
    journal: str | None  # where the entries were read from
    asked_server: bool = False
    counts: Mapping[str, int] = field(default_factory=dict)  # folders per action

    def to_json(self) -> dict[str, Any]:
        return {
            "journal": self.journal,
            "asked_server": self.asked_server,
            "actions": dict(self.counts),
            "estimate": self.estimate.to_json(),
            "folders": [f.to_json() for f in self.folders],
        }


def journal_for_view(config: UploadConfig) -> Journal | None:
    """The journal a read-only view shows (``status`` without ``--url`` takes the one
    server's in the state, and refuses to guess between several)."""
    from .errors import ConfigError

    root = config.state_path
    if config.base_url:
        folder = server_folder(root, config.base_url)
        if folder.is_dir():
            return Journal(folder)
    else:
        found = server_folders(root, None)
        if len(found) > 1:
            names = ", ".join(p.name for p in found)
            raise ConfigError(f"the state holds journals of several servers ({names}): --url")
        if found:
            return Journal(found[0])
    # The previous layout (entries directly in the state root) is read where it lies.
    for old in (root, config.links_path.parent / ".upload_state"):
        if any(p.name != "server.json" for p in old.glob("*.json")):
            return Journal(old)
    return None


async def inspect_records(
    config: UploadConfig, *, ask_server: bool = False, check_server: bool = False
) -> Inspection:
    """Per folder what is known and what a run would do, and what that run will cost."""
    found = journal_for_view(config)
    # No journal yet: an empty one (a folder that does not exist reads as "no entries").
    journal = found or Journal(config.state_path / "servers" / "none")
    prep = await anyio.to_thread.run_sync(prepare, config, journal)
    views = _views(prep)
    unknown = [t.record.title for t in prep.todo if t.warning or t.state is None]
    lookups = 0 if config.new_batch else len(title_queries(unknown))
    rate = config.rate
    asked = False
    if (ask_server or check_server) and config.base_url:
        config.check()
        async with open_client(config, Counters()) as client:
            probe = await client.probe_own_records()
            asked = True
            total = probe.obj.get("hits", {}).get("total")
            if total == 0:
                lookups = 0  # the user has no records: nothing to look up
            rate = rate or allowed_rate(probe.headers, time.time())
            if check_server:
                views = await _check(client, views)
    requests, exact = batch_requests(
        ((t.record, t.state, t.plan) for t in prep.todo),
        config.share,
        probe=bool(prep.todo) and not config.ephemeral_server,
        lookups=lookups if prep.todo else 0,
        community=config.share is ShareMode.COMMUNITY,
    )
    estimate = Estimate(
        records=len(prep.todo),
        files=sum(len(t.record.folder.files) for t in prep.todo),
        bytes=sum(t.record.total_bytes for t in prep.todo),
        requests=dict(requests),
        rate=rate,
        exact=exact and (asked or not unknown or config.new_batch),
    )
    counts: dict[str, int] = {}
    for view in views:
        counts[view.action] = counts.get(view.action, 0) + 1
    return Inspection(tuple(views), estimate, str(found.dir) if found else None, asked, counts)


def _views(prep: Prepared) -> list[FolderView]:
    todo = {t.name: t for t in prep.todo}
    views = []
    for folder in prep.folders:
        name = folder.name
        state = prep.states.get(name)
        phase = state.phase if state else "new"
        rid = state.draft_id if state else None
        if name in todo:
            t = todo[name]
            views.append(
                FolderView(
                    name,
                    phase if not t.warning else "unreadable",
                    t.plan.action.value,
                    rerun_action(t.plan),
                    rid,
                    len(t.record.folder.files),
                    t.record.total_bytes,
                    t.warning,
                )
            )
            continue
        result = prep.settled[name]
        action, rerun = {
            Outcome.SKIPPED: ("skip", "nothing (done)"),
            Outcome.CHANGED: ("changed", "nothing: report the change"),
            Outcome.INVALID: ("invalid", "nothing until the folder is fixed"),
        }.get(result.outcome, ("refuse", "nothing: see the note"))
        shown = phase if result.outcome in (Outcome.SKIPPED, Outcome.CHANGED) else result.outcome
        views.append(FolderView(name, str(shown), action, rerun, rid, note=result.error))
    return views


async def _check(client: InvenioClient, views: list[FolderView]) -> list[FolderView]:
    """Each journaled record as the server sees it, concurrently (the shared limiter paces)."""
    out = list(views)

    async def one(i: int, view: FolderView) -> None:
        assert view.record_id is not None
        out[i] = FolderView(**{**view.__dict__, "server": await server_view(client, view)})

    async with anyio.create_task_group() as tg:
        for i, view in enumerate(views):
            if view.record_id:
                tg.start_soon(one, i, view)
    return out


async def server_view(client: InvenioClient, view: FolderView) -> str:
    assert view.record_id is not None
    try:
        if (await client.get_record(view.record_id)).status == 200:
            return "published"
        draft = await client.get_draft(view.record_id)
    except UploaderError as exc:
        return f"unknown ({exc})"
    if draft.status != 200:
        return f"no such draft (HTTP {draft.status})"
    return f"draft ({draft.obj.get('status')}, {draft.obj.get('files', {}).get('count')} files)"
