"""The opening shared by every route on a record, in the real server's order: find the
record (and its file) or answer 404, then check permission (:func:`resolve`)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web

from .state import ApiFailure, SandboxState
from .store import FileEntry, Record, Snapshot, Store
from .web_util import state


@dataclass(frozen=True)
class Lookup:
    """How a route finds its record ``{id}`` (``NotFound``: 404) and when it needs the
    token's user. A missing file ``{key}`` is a 404 before that check, or after it with
    ``user_before_file``."""

    find: Callable[[Store, str], tuple[Record, Snapshot]]
    private: Callable[[Snapshot], bool] = lambda snap: True
    user_before_file: bool = False


def _current(store: Store, rid: str) -> tuple[Record, Snapshot]:
    rec = store.record(rid)
    return rec, rec.current


def _publishable(store: Store, rid: str) -> tuple[Record, Snapshot]:
    published = store.records.get(rid)
    if published is not None and published.draft is None:
        raise ApiFailure(404, "Not found.")  # v14: the pid is registered, no draft row
    return store.draft(rid)


def _files_private(snap: Snapshot) -> bool:
    return snap.access.get("record") != "public" or snap.access.get("files") != "public"


DRAFT = Lookup(Store.draft)
PUBLISHED = Lookup(Store.published)
RECORD = Lookup(_current)  # draft or published
PUBLISHABLE = Lookup(_publishable)
PUBLIC_RECORD = Lookup(Store.published, private=lambda snap: snap.access.get("record") != "public")
PUBLIC_FILES = Lookup(Store.published, private=_files_private, user_before_file=True)


@dataclass(frozen=True)
class Ctx:
    """What a resolved route works on."""

    st: SandboxState
    rec: Record
    snap: Snapshot
    file: FileEntry | None = None

    @property
    def entry(self) -> FileEntry:
        assert self.file is not None, "only a path with a {key} resolves a file"
        return self.file


R = TypeVar("R", bound=web.StreamResponse)
CtxHandler = Callable[[web.Request, Ctx], Awaitable[R]]


def resolve(lookup: Lookup) -> Callable[[CtxHandler[R]], Callable[[web.Request], Awaitable[R]]]:
    """Open a route in the real server's order: find the record (and the file, if the path
    has a ``{key}``) or answer 404, check permission, then call ``fn(request, ctx)``."""

    def deco(fn: CtxHandler[R]) -> Callable[[web.Request], Awaitable[R]]:
        @functools.wraps(fn)
        async def handler(request: web.Request) -> R:
            st = state(request)
            rec, snap = lookup.find(st.store, request.match_info["id"])
            key = request.match_info.get("key")
            entry = None if key is None else snap.files.get(key)
            private = lookup.private(snap)
            if private and lookup.user_before_file:
                st.require_user(request)
            if key is not None and entry is None:
                raise ApiFailure(404, f"Record '{rec.id}' has no file '{key}'.")
            if private and not lookup.user_before_file:
                st.require_user(request)
            return await fn(request, Ctx(st, rec, snap, entry))

        return handler

    return deco
