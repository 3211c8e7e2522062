"""The original example script's workflow, as the reference the uploader is measured against.

One request at a time and a new TCP connection for every request (``requests`` without a
session, as the script did; here ``urllib``, which never reuses connections): for each
folder, create the draft -> for each file: init ``[{key}]``, PUT the content (streamed from
the open file), commit -> publish. No retries, no journal: the first error stops it.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from async_uploader.discover import METADATA_FILE


class BaselineError(RuntimeError):
    pass


def _call(
    method: str, url: str, token: str, *, body: Any = None, path: Path | None = None
) -> dict[str, Any]:
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
    data: Any = None
    if path is not None:
        headers["Content-Type"] = "application/octet-stream"
        headers["Content-Length"] = str(path.stat().st_size)
    elif body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    req = urllib.request.Request(url, method=method, headers=headers)
    try:
        if path is not None:
            with path.open("rb") as fh:  # streamed from the open file, as the script did
                resp = urllib.request.urlopen(req, data=fh, timeout=300)
        else:
            resp = urllib.request.urlopen(req, data=data, timeout=300)
    except urllib.error.HTTPError as exc:
        raise BaselineError(f"{method} {url}: HTTP {exc.code}") from None
    with resp:
        raw = resp.read()
    return json.loads(raw) if raw else {}


def upload_folder(folder: Path, base_url: str, token: str) -> dict[str, Any]:
    """Create, attach every file one by one, publish; returns the draft's ``links``."""
    metadata = json.loads((folder / METADATA_FILE).read_bytes())
    draft = _call("POST", f"{base_url}/api/records", token, body=metadata)
    links: dict[str, Any] = draft["links"]
    for path in sorted(folder.iterdir()):
        if path.name == METADATA_FILE or not path.is_file():
            continue
        listing = _call("POST", links["files"], token, body=[{"key": path.name}])
        entry = next(e for e in listing["entries"] if e["key"] == path.name)
        _call("PUT", entry["links"]["content"], token, path=path)
        _call("POST", entry["links"]["commit"], token)
    _call("POST", links["publish"], token)
    return links


def upload_all(folders: list[Path], base_url: str, token: str) -> list[dict[str, Any]]:
    return [upload_folder(f, base_url, token) for f in folders]


def requests_per_record(files: int) -> int:
    """create + (init, PUT, commit) per file + publish."""
    return 2 + 3 * files
