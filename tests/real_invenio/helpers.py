"""Helpers of the real-server tier: run the CLI against it, read its API and its database.

The CLI runs through tests.conftest.run_cli (a real subprocess, token only in its
environment). Reads go straight to the server with urllib and to PostgreSQL with psql, so a
check never trusts the uploader's own view of what it did.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.real_invenio.real_invenio_env import RealServer, pg_port

PG = {
    "host": "127.0.0.1",
    "port": pg_port(),  # the selected series' (REAL_INVENIO_SERIES)
    "user": "invenio",
    "db": "invenio",
}


def upload(
    server: RealServer, records: Path, *extra: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``async-uploader upload RECORDS --url <server> ...`` with the token in the environment."""
    args = ["upload", str(records), "--url", server.url, *extra]
    proc = run_cli(args, token=server.token, timeout=timeout)
    assert server.token not in proc.stdout + proc.stderr, "the token was printed"
    return proc


def api_get(server: RealServer, path: str, **params: str | int) -> Any:
    """GET ``/api{path}`` as the token's user; the decoded JSON body (asserts a 200)."""
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    request = urllib.request.Request(f"{server.api}{path}{query}", headers=server.headers())
    with urllib.request.urlopen(request, timeout=60) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def get_bytes(server: RealServer, url: str) -> bytes:
    request = urllib.request.Request(url, headers=server.headers())
    with urllib.request.urlopen(request, timeout=120) as resp:
        return bytes(resp.read())


def user_records(server: RealServer, tag: str, want: int = 0) -> list[dict[str, Any]]:
    """The user's records and drafts whose title contains ``tag`` (every page, size 100).

    The search stand-in indexes right after each write; ``want`` waits for that many hits.
    """
    deadline = time.monotonic() + 10
    while True:
        hits: list[dict[str, Any]] = []
        page = 1
        while True:
            body = api_get(
                server, "/user/records", q=f'metadata.title:"{tag}"', size=100, page=page
            )
            hits += body["hits"]["hits"]
            if "next" not in body["links"]:
                break
            page += 1
        hits = [h for h in hits if tag in h["metadata"].get("title", "")]
        if len(hits) >= want or time.monotonic() > deadline:
            return hits
        time.sleep(0.25)


def psql(sql: str, *params: str) -> list[list[str]]:
    """Rows of a query on the server's PostgreSQL (``:'p1'`` ... name the parameters)."""
    args = ["psql", "-h", PG["host"], "-p", PG["port"], "-U", PG["user"], "-d", PG["db"]]
    args += ["-X", "-tA", "-F", "\t", "-v", "ON_ERROR_STOP=1"]
    for i, value in enumerate(params, 1):
        args += ["-v", f"p{i}={value}"]
    proc = subprocess.run(args, input=sql, capture_output=True, text=True, timeout=60, check=True)
    return [line.split("\t") for line in proc.stdout.splitlines() if line]


def db_titles(tag: str) -> tuple[dict[str, int], dict[str, int]]:
    """Per title containing ``tag``: live published records, and live (unpublished) drafts.

    Publishing soft-deletes the draft row (json set to NULL), so a draft row with JSON is a
    draft still open: a leftover when nothing is in review.
    """
    like = f"%{tag}%"
    published = psql(
        "select json->'metadata'->>'title', count(*) from rdm_records_metadata "
        "where json->'metadata'->>'title' like :'p1' and deletion_status = 'P' group by 1",
        like,
    )
    drafts = psql(
        "select json->'metadata'->>'title', count(*) from rdm_drafts_metadata "
        "where json is not null and json->'metadata'->>'title' like :'p1' group by 1",
        like,
    )
    return ({t: int(n) for t, n in published}, {t: int(n) for t, n in drafts})


def record_id(link: dict[str, str]) -> str:
    """The record id a links object points at (``record_html`` ends with it)."""
    return link["record_html"].rstrip("/").rsplit("/", 1)[-1]


def assert_files_match(server: RealServer, rec_id: str, folder: Path) -> int:
    """Every local file of ``folder`` is on the published record, byte for byte; the count."""
    listing = api_get(server, f"/records/{rec_id}/files")
    remote = {e["key"]: e for e in listing["entries"]}
    local = {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "record_metadata.json"
    }
    assert set(remote) == set(local), (rec_id, sorted(remote), sorted(local))
    for key, path in local.items():
        assert remote[key]["status"] == "completed"
        assert get_bytes(server, remote[key]["links"]["content"]) == path.read_bytes(), key
    return len(local)
