"""Where a batch's state lives, and which server and user it belongs to.

Layout (the *state root*: ``RECORDS_DIR/.upload_state`` by default, see
``config.default_state_root``)::

    .upload_state/
      lock                         one run at a time (statelock.py)
      servers/<server key>/        one journal per server (and user), see ``server_key``
        server.json                {"format", "url", "user"}: what the entries belong to
        <folder>.json              the entries (journal.py)
      servers/sandbox/             the embedded sandbox's: emptied at every --sandbox run

The root follows the records folder, not the links file, so ``--links-file`` can change
between runs, and a folder copied to another node takes its state along. When the records
folder is read-only the root moves to a per-user folder keyed by the records folder's real
path (``$XDG_STATE_HOME/async-uploader/``).

Entries are keyed by server because "demo archive first, then production" (the BIG-MAP
guide's advice) must keep two independent states, and by user because another account's
records are not ours to skip or adopt. InvenioRDM has no "who am I" endpoint; the user's id
is read from ``parent.access.owned_by`` of the user's own records (``bind`` decides).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import JournalWriteFailed
from .journal import VERSION, Journal, RecordState, atomic_write

SANDBOX_KEY = "sandbox"
SERVER_FILE = "server.json"


def canonical_url(base_url: str) -> str:
    """``https://Host:443/x/`` and ``https://host/x`` are one server."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{scheme}://{host}{port}{parts.path.rstrip('/')}"


def server_key(base_url: str, user: str | None = None) -> str:
    """A folder name for a server (and user): readable, and unique by its hash."""
    url = canonical_url(base_url)
    readable = re.sub(r"[^A-Za-z0-9.-]+", "_", url.split("://", 1)[-1]).strip("_")[:60]
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    key = f"{readable}-{digest}"
    return key if user is None else f"{key}@user-{re.sub(r'[^A-Za-z0-9]', '_', user)}"


def server_folder(root: Path, base_url: str) -> Path:
    """The journal folder of ``base_url`` in the state root ``root``."""
    return root / "servers" / server_key(base_url)


@dataclass(frozen=True)
class ServerInfo:
    url: str
    user: str | None = None


def read_info(folder: Path) -> ServerInfo | None:
    try:
        data = json.loads((folder / SERVER_FILE).read_text(encoding="utf-8"))
        return ServerInfo(str(data["url"]), data.get("user"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_info(folder: Path, info: ServerInfo) -> None:
    body = {"format": VERSION, "url": info.url, "user": info.user}
    try:
        atomic_write(folder / SERVER_FILE, json.dumps(body).encode())
    except OSError as exc:
        raise JournalWriteFailed(
            f"cannot write the state in {folder}: {exc.strerror or exc}"
        ) from exc


def remember_owner(folder: Path, base_url: str, user: str) -> None:
    """Note the user once a created draft names it (a user without records at the start)."""
    info = read_info(folder)
    if info is None or info.user is None:
        write_info(folder, ServerInfo(canonical_url(base_url), user))


class Binding:
    """What ``bind`` decided about the stored state, given what the server says."""

    KEEP = "keep"  # the entries are this user's on this server
    OTHER_USER = "other-user"  # they belong to another account: use that user's own folder
    CHECK = "check"  # the server shows none of our records: look one journaled id up


def bind(
    stored_user: str | None, probed_user: str | None, probed_total: int, has_ids: bool = True
) -> str:
    """Decide whether the stored entries belong to the token's user.

    ``probed_*`` come from one ``GET /api/user/records?size=1``: the total of the token's
    own records and the owner of the newest. A differing owner is another account. No
    records at all while the state lists record ids (``has_ids``) means a reset server or
    another account without records; a direct look-up of one journaled id tells which.
    """
    if probed_user is not None and stored_user is not None and probed_user != stored_user:
        return Binding.OTHER_USER
    if probed_total == 0 and has_ids:
        return Binding.CHECK
    return Binding.KEEP


def owner_of(hit: dict[str, Any]) -> str | None:
    owned = hit.get("parent", {}).get("access", {}).get("owned_by")
    if isinstance(owned, list):  # InvenioRDM before v11: a list of owners
        owned = owned[0] if owned else None
    user = owned.get("user") if isinstance(owned, dict) else None
    return None if user is None else str(user)


def retire(folder: Path, why: str) -> Path:
    """Move a server folder whose entries no longer match the server out of the way
    (kept, not deleted: it is the only record of what was done)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    target = folder.with_name(f"{folder.name}.retired-{stamp}")
    folder.rename(target)
    (target / "RETIRED.txt").write_text(why + "\n", encoding="utf-8")
    return target


def reset_sandbox(root: Path) -> Path:
    """The embedded sandbox lives only as long as its run: its state starts empty."""
    folder = root / "servers" / SANDBOX_KEY
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def migrate_v1(sources: list[Path], target: Path, api_url: str) -> list[str]:
    """Move entries of the first journal layout (``<folder>.json`` directly in
    ``.upload_state``, beside the links file) into this server's folder.

    An entry belongs to this server when its links point into ``api_url``; entries without
    links (a create in flight) move too, because a look-up on this server is what a rerun
    needs anyway. Returns the folders moved. Entries already present in ``target`` win.
    """
    prefix = canonical_url(api_url) + "/"
    moved: list[str] = []
    for source in dict.fromkeys(s.resolve() for s in sources if s.is_dir()):
        for path in sorted(source.glob("*.json")):
            if path.name == SERVER_FILE:
                continue
            try:
                data = json.loads(path.read_bytes())
            except (OSError, ValueError):
                continue
            if not isinstance(data, dict) or data.get("version") != 1:
                continue
            links = data.get("links") or {}
            link = links.get("self") or links.get("files") if isinstance(links, dict) else None
            if link and not canonical_url(str(link)).startswith(prefix):
                continue  # another server's entry: left where it is
            dest = target / path.name
            target.mkdir(parents=True, exist_ok=True)
            if not dest.exists():
                os.replace(path, dest)
                moved.append(str(data.get("folder", path.stem)))
    return moved


def server_folders(root: Path, base_url: str | None) -> list[Path]:
    """The journals a read-only view (``status``) should show: the server's own (every user's
    on it) with ``--url``, else every real server's in the state root (the embedded
    sandbox's lives only as long as its run)."""
    servers = root / "servers"
    if not servers.is_dir():
        return []
    found = sorted(
        p
        for p in servers.iterdir()
        if p.is_dir() and ".retired-" not in p.name and p.name != SANDBOX_KEY
    )
    if base_url is None:
        return found
    key = server_key(base_url)
    return [p for p in found if p.name == key or p.name.startswith(key + "@")]


def journal_for(folder: Path) -> Journal:
    folder.mkdir(parents=True, exist_ok=True)
    return Journal(folder)


def has_entries(states: dict[str, RecordState]) -> RecordState | None:
    """The most recently updated entry with a record id (to look up), if any."""
    known = [s for s in states.values() if s.draft_id]
    return max(known, key=lambda s: s.updated or "") if known else None
