"""Target-agnostic contract scenarios (InvenioRDM REST contract, section 10).

Each scenario is ``async def (target, session) -> dict`` of observations and asserts only
what a real InvenioRDM guarantees (the contract's "observed" facts), so the same list
runs against the sandbox and against a real server. Where the v12 and v14 series differ
(``real-invenio-v12.md``), a scenario asserts each series' own answer (``Target.series``).
``session`` carries no credentials: scenarios send the token themselves (so they can also
act anonymously).

Every exchange made through :func:`call` is also appended to the list in :data:`TRANSCRIPT`
when one is set, so a differential test can compare what two servers answered, not only
what the scenarios assert.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import socket
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

Obs = dict[str, Any]
Scenario = Callable[["Target", aiohttp.ClientSession], Awaitable[Obs]]
CORE_DRAFT_LINKS = {"self", "self_html", "files", "publish", "record", "review", "versions"}
CORE_DRAFT_LINKS |= {"access_links"}


@dataclass(frozen=True)
class Exchange:
    """One request and the decoded answer, as :func:`call` saw it."""

    method: str
    url: str
    status: int
    body: Any


TRANSCRIPT: ContextVar[list[Exchange] | None] = ContextVar("TRANSCRIPT", default=None)


@dataclass(frozen=True)
class Target:
    """Where the scenarios run. ``community`` is a slug the token's user owns."""

    base_url: str
    token: str
    community: str = "sandbox-community"
    series: int = 14  # InvenioRDM major series (14, or 12: the BIG-MAP Archive's line)
    multipart: bool = True  # v13+ multipart "M" transfers allowed for owners (never on v12)
    metadata_only: bool = True  # files.enabled=false allowed
    search_wait_s: float = 5.0  # indexing delay tolerated when polling search

    @property
    def api(self) -> str:
        return f"{self.base_url.rstrip('/')}/api"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def body(title: str = "Contract scenario record", **files: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "resource_type": {"id": "dataset"},
            "title": title,
            "publication_date": "2024-05-14",
            "creators": [
                {"person_or_org": {"type": "personal", "given_name": "Ada", "family_name": "L"}}
            ],
            "publisher": "Contract tests",
            "description": "Contract scenario",
            "identifiers": [{"scheme": "other", "identifier": f"bulk:{uuid.uuid4()}"}],
        },
        "access": {"record": "public", "files": "public"},
        "files": {"enabled": files.get("enabled", True)},
    }


def u(link: str) -> URL:
    """Links come percent-encoded: never re-quote them."""
    return URL(link, encoded=True)


async def call(
    s: aiohttp.ClientSession, method: str, url: str | URL, t: Target | None = None, **kw: Any
) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    headers = dict(kw.pop("headers", {}))
    if t is not None:
        headers.update(t.auth)
    target = url if isinstance(url, URL) else u(url)
    async with s.request(method, target, headers=headers, **kw) as r:
        raw = await r.read()
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = raw
        log = TRANSCRIPT.get()
        if log is not None:
            log.append(Exchange(method, str(target), r.status, data))
        return r.status, data, r.headers


async def create(t: Target, s: aiohttp.ClientSession, data: dict[str, Any] | None = None) -> Obs:
    status, draft, headers = await call(s, "POST", f"{t.api}/records", t, json=data or body())
    assert status == 201, (status, draft)
    assert headers.get("ETag") == f'"{draft["revision_id"]}"'
    return draft


async def upload(
    t: Target, s: aiohttp.ClientSession, draft: Obs, key: str, data: bytes, commit: bool = True
) -> Obs:
    status, listing, _ = await call(s, "POST", draft["links"]["files"], t, json=[{"key": key}])
    assert status == 201, (status, listing)
    entry = next(e for e in listing["entries"] if e["key"] == key)
    octet = {"Content-Type": "application/octet-stream"}
    status, put, _ = await call(s, "PUT", entry["links"]["content"], t, data=data, headers=octet)
    assert status == 200 and put["status"] == "pending" and "errors" not in put, (status, put)
    if not commit:
        return put
    status, done, _ = await call(s, "POST", entry["links"]["commit"], t)
    assert status == 200 and done["status"] == "completed", (status, done)
    assert done["checksum"] == f"md5:{hashlib.md5(data).hexdigest()}"
    assert done["size"] == len(data)
    return done


def field_messages(errors: list[Obs]) -> dict[str, list[str]]:
    return {e["field"]: e["messages"] for e in errors}


async def happy_path(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    assert draft["is_draft"] and not draft["is_published"] and "errors" not in draft
    assert set(draft["links"]) >= CORE_DRAFT_LINKS, draft["links"]
    host = urlsplit(t.base_url).netloc
    assert all(
        urlsplit(v).netloc == host for k, v in draft["links"].items() if k in CORE_DRAFT_LINKS
    )
    payload = "résumé \u2212 data\n".encode() * 50
    done = await upload(t, s, draft, "data/résumé 1.txt", payload)
    status, rec, _ = await call(s, "POST", draft["links"]["publish"], t)
    assert status == 202, rec
    assert rec["is_published"] and rec["status"] == "published" and rec["id"] == draft["id"]
    assert {"self", "self_html", "files"} <= set(rec["links"])
    status, again, _ = await call(s, "POST", draft["links"]["publish"], t)
    assert status == 404, again
    status, _, _ = await call(s, "GET", draft["links"]["record"], t)
    assert status == 200
    status, _, _ = await call(s, "GET", draft["links"]["self"], t)
    assert status == 404
    status, listing, _ = await call(s, "GET", rec["links"]["files"], t)
    assert status == 200, listing
    (entry,) = [e for e in listing["entries"] if e["key"] == done["key"]]
    assert entry["checksum"] == done["checksum"]
    status, data, _ = await call(s, "GET", entry["links"]["content"], t)
    assert status == 200 and data == payload
    return {"id": draft["id"], "links": sorted(draft["links"]), "second_publish": 404}


async def anonymous_refused(t: Target, s: aiohttp.ClientSession) -> Obs:
    observed = {}
    for label, headers in (("none", {}), ("bad", {"Authorization": "Bearer not-a-token"})):
        status, data, _ = await call(s, "POST", f"{t.api}/records", json=body(), headers=headers)
        assert status == 403 and data == {"status": 403, "message": "Permission denied."}, data
        observed[label] = status
    status, data, _ = await call(s, "GET", f"{t.api}/records?size=1")
    assert status == 200 and "hits" in data  # public search still works anonymously
    return observed


async def unknown_vocabulary(t: Target, s: aiohttp.ClientSession) -> Obs:
    data = body()
    data["metadata"]["resource_type"] = {"id": "no-such-type"}
    status, reply, _ = await call(s, "POST", f"{t.api}/records", t, json=data)
    assert status == 400 and reply["message"] == "Invalid value no-such-type.", reply
    return {"status": status, "message": reply["message"]}


async def soft_errors_then_strict_publish(t: Target, s: aiohttp.ClientSession) -> Obs:
    data = body("ab")
    del data["metadata"]["publication_date"]
    draft = await create(t, s, data)
    fields = field_messages(draft["errors"])
    assert fields["metadata.title"] == ["Shorter than minimum length 3."], fields
    assert fields["metadata.publication_date"] == ["Missing data for required field."], fields
    assert "title" not in draft["metadata"]  # invalid values are dropped
    bad_date = body()
    bad_date["metadata"]["publication_date"] = "2024-13-45"
    other = await create(t, s, bad_date)
    assert field_messages(other["errors"])["metadata.publication_date"] == [
        "Please provide a valid date or interval."
    ]
    await upload(t, s, draft, "a.txt", b"abc")
    status, reply, _ = await call(s, "POST", draft["links"]["publish"], t)
    assert status == 400 and reply["message"] == "A validation error occurred.", reply
    assert "metadata.title" in field_messages(reply["errors"])
    return {"create_errors": sorted(fields), "publish": status}


async def malformed_json(t: Target, s: aiohttp.ClientSession) -> Obs:
    headers = {"Content-Type": "application/json"}
    status, reply, _ = await call(
        s, "POST", f"{t.api}/records", t, data=b"{not json", headers=headers
    )
    assert status == 400 and reply["message"] == "Unable to decode JSON data in request body."
    return {"status": status}


async def unknown_metadata_key_accepted(t: Target, s: aiohttp.ClientSession) -> Obs:
    data = body()
    data["metadata"]["no_such_field"] = "x"
    data["no_such_top_level"] = 1
    draft = await create(t, s, data)
    assert "no_such_top_level" not in draft
    return {"status": 201}


async def pending_file_blocks_publish(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    await upload(t, s, draft, "p.bin", b"12345", commit=False)
    status, reply, _ = await call(s, "POST", draft["links"]["publish"], t)
    assert status == 400, reply
    assert field_messages(reply["errors"])["files"] == [
        "One or more files have not completed their transfer, please wait."
    ]
    return {"status": status}


async def commit_without_content(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    status, listing, _ = await call(s, "POST", draft["links"]["files"], t, json=[{"key": "x"}])
    assert status == 201
    status, reply, _ = await call(s, "POST", listing["entries"][0]["links"]["commit"], t)
    assert status == 500, reply
    return {"status": status}


async def unknown_key(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    url = f"{draft['links']['files']}/nope.bin/content"
    status, reply, _ = await call(
        s, "PUT", url, t, data=b"x", headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 404 and reply["message"] == f"Record '{draft['id']}' has no file 'nope.bin'."
    return {"status": status, "message": reply["message"]}


async def duplicate_key_rolls_back_batch(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    files = draft["links"]["files"]
    status, _, _ = await call(s, "POST", files, t, json=[{"key": "a.bin"}])
    assert status == 201
    status, reply, _ = await call(s, "POST", files, t, json=[{"key": "b.bin"}, {"key": "a.bin"}])
    assert status == 400 and reply["message"] == "File with key a.bin already exists.", reply
    status, listing, _ = await call(s, "GET", files, t)
    keys = [e["key"] for e in listing["entries"]]
    assert keys == ["a.bin"], keys
    assert {"enabled", "entries", "links"} <= set(listing)
    return {"keys": keys}


async def empty_init(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    status, reply, _ = await call(s, "POST", draft["links"]["files"], t, json=[])
    if t.series < 13:  # v12: an empty batch is a no-op that lists the current entries
        assert status == 201 and reply["entries"] == [], reply
        return {"status": status}
    assert status == 400 and reply["message"] == "A validation error occurred.", reply
    assert "No files to upload." in json.dumps(reply.get("errors")), reply
    return {"status": status}


async def init_transfer_key(t: Target, s: aiohttp.ClientSession) -> Obs:
    """An explicit local ``transfer``: the v13+ way to ask for a kind of upload; v12's init
    schema has no such field. An uploader must not send it to a v12 server."""
    draft = await create(t, s)
    init = [{"key": "t.bin", "transfer": {"type": "L"}}]
    status, reply, _ = await call(s, "POST", draft["links"]["files"], t, json=init)
    if t.series < 13:
        assert status == 400 and reply["message"] == "A validation error occurred.", reply
        assert reply["errors"] == [{"field": "0.transfer", "messages": ["Unknown field."]}]
        return {"status": status}
    assert status == 201 and reply["entries"][0]["transfer"]["type"] == "L", reply
    return {"status": status}


async def reput_before_commit(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    await upload(t, s, draft, "r.bin", b"first version", commit=False)
    octet = {"Content-Type": "application/octet-stream"}
    url = f"{draft['links']['files']}/r.bin"
    status, _, _ = await call(s, "PUT", f"{url}/content", t, data=b"second", headers=octet)
    assert status == 200
    status, done, _ = await call(s, "POST", f"{url}/commit", t)
    assert done["checksum"] == f"md5:{hashlib.md5(b'second').hexdigest()}" and done["size"] == 6
    return {"size": done["size"]}


async def reput_after_commit(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    done = await upload(t, s, draft, "c.bin", b"committed")
    octet = {"Content-Type": "application/octet-stream"}
    status, reply, _ = await call(s, "PUT", done["links"]["content"], t, data=b"new", headers=octet)
    if t.series < 13:  # v12 refuses outright; the entry is gone all the same
        assert status == 400, reply
        assert reply["message"] == "The file upload transfer failed, please try again.", reply
    else:
        assert status == 200 and reply.get("errors") == "File upload transfer failed.", reply
    refused = status
    status, _, _ = await call(s, "GET", done["links"]["self"], t)
    assert status == 404
    return {"status": refused, "entry_after": status}


def _raw_short_put(url: str, token: str, announced: int, sent: bytes) -> str:
    """Send fewer bytes than Content-Length, half-close, and read whatever comes back."""
    parts = urlsplit(url)
    request = (
        f"PUT {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {announced}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=30) as sock:
        sock.sendall(request + sent)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
    return b"".join(chunks).decode("latin-1")


async def short_body_keeps_entry_pending(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    status, listing, _ = await call(s, "POST", draft["links"]["files"], t, json=[{"key": "s.bin"}])
    entry = listing["entries"][0]
    raw = await asyncio.to_thread(
        _raw_short_put, entry["links"]["content"], t.token, 1000, b"x" * 100
    )
    # Real servers answer 400 "File is smaller than expected."; a server that closes on the
    # half-close sends nothing. Either way the entry must stay pending without content.
    if raw:
        assert raw.startswith("HTTP/1.1 400"), raw[:200]
        assert "File is smaller than expected." in raw
    status, got, _ = await call(s, "GET", entry["links"]["self"], t)
    assert status == 200 and got["status"] == "pending", got
    status, _, _ = await call(s, "POST", entry["links"]["commit"], t)
    assert status == 500
    await upload_content_commit(t, s, entry, b"now complete")
    return {"answered": bool(raw)}


async def upload_content_commit(
    t: Target, s: aiohttp.ClientSession, entry: Obs, data: bytes
) -> Obs:
    octet = {"Content-Type": "application/octet-stream"}
    status, _, _ = await call(s, "PUT", entry["links"]["content"], t, data=data, headers=octet)
    assert status == 200
    status, done, _ = await call(s, "POST", entry["links"]["commit"], t)
    assert status == 200 and done["checksum"] == f"md5:{hashlib.md5(data).hexdigest()}"
    return done


async def put_without_files_reenables(t: Target, s: aiohttp.ClientSession) -> Obs:
    if not t.metadata_only:
        return {"skipped": "metadata-only records not allowed"}
    draft = await create(t, s, body(enabled=False))
    assert draft["files"]["enabled"] is False
    data = body()
    del data["files"]
    status, updated, _ = await call(s, "PUT", draft["links"]["self"], t, json=data)
    assert status == 200 and updated["files"]["enabled"] is True, updated
    status, _reply, _ = await call(s, "POST", draft["links"]["files"], t, json=[{"key": "k"}])
    assert status == 201
    return {"enabled_after_put": True}


async def files_enabled_without_files(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    status, reply, _ = await call(s, "POST", draft["links"]["publish"], t)
    assert status == 400, reply
    assert field_messages(reply["errors"])["files.enabled"] == [
        "Missing uploaded files. To disable files for this record please mark it as metadata-only."
    ]
    return {"status": status}


async def files_disabled_init(t: Target, s: aiohttp.ClientSession) -> Obs:
    if not t.metadata_only:
        return {"skipped": "metadata-only records not allowed"}
    draft = await create(t, s, body(enabled=False))
    status, reply, _ = await call(s, "POST", draft["links"]["files"], t, json=[{"key": "k"}])
    assert status == 403 and reply["message"] == "Files are not enabled.", reply
    return {"status": status}


async def if_match(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    rev = draft["revision_id"]
    url = draft["links"]["self"]
    quoted = {"If-Match": f'"{rev}"'}
    status, _, _ = await call(s, "PUT", url, t, json=body(), headers=quoted)
    assert status == 400
    status, reply, _ = await call(
        s, "PUT", url, t, json=body(), headers={"If-Match": str(rev + 50)}
    )
    assert status == 412, reply
    status, reply, headers = await call(
        s, "PUT", url, t, json=body(), headers={"If-Match": str(rev)}
    )
    assert status == 200 and headers.get("ETag") == f'"{reply["revision_id"]}"'
    return {"quoted": 400, "stale": 412}


async def content_type_with_charset(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    status, listing, _ = await call(s, "POST", draft["links"]["files"], t, json=[{"key": "t"}])
    entry = listing["entries"][0]
    bad = {"Content-Type": "application/json; charset=utf-8"}
    status, reply, _ = await call(s, "PUT", entry["links"]["content"], t, data=b"{}", headers=bad)
    assert status == 415, reply
    status, _, _ = await call(
        s, "POST", f"{t.api}/records", t, data=json.dumps(body()).encode(), headers=bad
    )
    assert status == 415
    return {"content": 415, "json": 415}


async def delete_draft_then_404(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    await upload(t, s, draft, "d.bin", b"doomed", commit=False)
    status, _, _ = await call(s, "DELETE", draft["links"]["self"], t)
    assert status == 204
    seen = {}
    for name, method in (("self", "GET"), ("files", "GET"), ("publish", "POST")):
        status, reply, _ = await call(s, method, draft["links"][name], t)
        seen[name] = status
        assert status == 404, (name, reply)
    status, reply, _ = await call(s, "GET", draft["links"]["record"], t)
    assert status == 404
    return seen


async def too_many_files(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    batch = [{"key": f"f{i}"} for i in range(101)]
    status, reply, _ = await call(s, "POST", draft["links"]["files"], t, json=batch)
    assert status == 400, reply
    status, listing, _ = await call(s, "GET", draft["links"]["files"], t)
    assert listing["entries"] == []
    return {"status": 400}


async def published_draft_record_404(t: Target, s: aiohttp.ClientSession) -> Obs:
    draft = await create(t, s)
    status, reply, _ = await call(s, "GET", draft["links"]["record"], t)
    assert status == 404 and reply["message"] == "The persistent identifier is not registered."
    status, reply, _ = await call(s, "GET", f"{t.api}/records/{draft['id']}x-nope/draft", t)
    assert status == 404
    return {"status": status}


async def _published(t: Target, s: aiohttp.ClientSession, files: dict[str, bytes]) -> Obs:
    draft = await create(t, s)
    for key, data in files.items():
        await upload(t, s, draft, key, data)
    status, rec, _ = await call(s, "POST", draft["links"]["publish"], t)
    assert status == 202, rec
    return rec


async def versions_and_files_import(t: Target, s: aiohttp.ClientSession) -> Obs:
    rec = await _published(t, s, {"v1.txt": b"version one"})
    status, new, _ = await call(s, "POST", rec["links"]["versions"], t)
    assert status == 201, new
    assert new["id"] != rec["id"] and new["parent"]["id"] == rec["parent"]["id"]
    assert new["versions"]["index"] == rec["versions"]["index"] + 1
    assert new["metadata"].get("publication_date") in (None, dt.date.today().isoformat())
    assert new["files"]["entries"] == {} or not new["files"]["entries"]
    status, again, _ = await call(s, "POST", rec["links"]["versions"], t)
    assert status == 201 and again["id"] == new["id"]  # idempotent while the draft exists
    status, listing, _ = await call(s, "POST", f"{new['links']['self']}/actions/files-import", t)
    assert status == 201, listing
    assert [(e["key"], e["status"]) for e in listing["entries"]] == [("v1.txt", "completed")]
    status, reply, _ = await call(s, "POST", f"{new['links']['self']}/actions/files-import", t)
    assert status == 400 and "Please remove all files first." in json.dumps(reply), reply
    data = body("Second version")
    status, upd, _ = await call(s, "PUT", new["links"]["self"], t, json=data)
    assert status == 200, upd
    status, pub, _ = await call(s, "POST", new["links"]["publish"], t)
    assert status == 202 and pub["versions"]["is_latest"], pub
    return {"index": pub["versions"]["index"]}


async def edit_published(t: Target, s: aiohttp.ClientSession) -> Obs:
    rec = await _published(t, s, {"e.txt": b"edit me"})
    draft_url = f"{t.api}/records/{rec['id']}/draft"
    status, d1, _ = await call(s, "POST", draft_url, t)
    assert status == 201 and d1["id"] == rec["id"], d1
    status, d2, _ = await call(s, "POST", draft_url, t)
    assert status == 201 and d2["id"] == rec["id"]
    data = body("Edited title")
    status, upd, _ = await call(s, "PUT", draft_url, t, json=data)
    assert status == 200, upd
    status, pub, _ = await call(s, "POST", f"{draft_url}/actions/publish", t)
    assert status == 202 and pub["metadata"]["title"] == "Edited title", pub
    return {"status": status}


async def _poll(t: Target, s: aiohttp.ClientSession, url: str, want: int) -> Obs:
    deadline = asyncio.get_running_loop().time() + t.search_wait_s
    while True:
        status, reply, _ = await call(s, "GET", url, t)
        assert status == 200, reply
        if reply["hits"]["total"] >= want or asyncio.get_running_loop().time() > deadline:
            return reply
        await asyncio.sleep(0.25)


async def search_shape(t: Target, s: aiohttp.ClientSession) -> Obs:
    marker = f"bulk:{uuid.uuid4()}"
    data = body(f"Searchable {uuid.uuid4().hex[:8]}")
    data["metadata"]["identifiers"] = [{"scheme": "other", "identifier": marker}]
    draft = await create(t, s, data)
    q = URL(f"{t.api}/user/records").with_query(
        q=f'metadata.identifiers.identifier:"{marker}"', size=10, sort="newest"
    )
    reply = await _poll(t, s, str(q), 1)
    assert {"hits", "links", "sortBy"} <= set(reply) and "self" in reply["links"]
    assert [h["id"] for h in reply["hits"]["hits"]] == [draft["id"]]
    reply = await _poll(
        t, s, str(URL(f"{t.api}/user/records").with_query(q=f"id:{draft['id']}")), 1
    )
    assert reply["hits"]["total"] == 1
    status, _, _ = await call(s, "GET", f"{t.api}/user/records?size=1")
    assert status == 403  # anonymous
    return {"keys": sorted(reply), "total": reply["hits"]["total"]}


def phrase(text: str) -> str:
    """A query-string phrase: backslashes and double quotes escaped, then quoted."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def stored_title_cleaned(t: Target, s: aiohttp.ClientSession) -> Obs:
    """The server stores a cleaned title (ftfy: quotes straightened, ligature and full-width
    letters folded, trimmed) and search finds it by the cleaned form."""
    marker = f"bulk:{uuid.uuid4()}"
    data = body("  \u201cCurly\u201d \ufb01le \uff21\uff22 title ")
    data["metadata"]["identifiers"] = [{"scheme": "other", "identifier": marker}]
    draft = await create(t, s, data)
    stored = draft["metadata"]["title"]  # the differential compares it with the real server's
    status, got, _ = await call(s, "GET", draft["links"]["self"], t)
    assert status == 200 and got["metadata"]["title"] == stored, got
    q = f"metadata.title:{phrase(stored)} AND metadata.identifiers.identifier:{phrase(marker)}"
    url = URL(f"{t.api}/user/records").with_query(q=q, size=10)
    reply = await _poll(t, s, str(url), 1)
    assert [h["id"] for h in reply["hits"]["hits"]] == [draft["id"]], reply["hits"]
    return {"title": stored, "total": reply["hits"]["total"]}


async def _community_uuid(t: Target, s: aiohttp.ClientSession) -> str:
    status, comm, _ = await call(s, "GET", f"{t.api}/communities/{t.community}", t)
    assert status == 200 and comm["slug"] == t.community, comm
    return comm["id"]


async def review_flow(t: Target, s: aiohttp.ClientSession) -> Obs:
    cid = await _community_uuid(t, s)
    draft = await create(t, s)
    await upload(t, s, draft, "r.txt", b"review me")
    review = {"receiver": {"community": cid}, "type": "community-submission"}
    status, req, _ = await call(s, "PUT", draft["links"]["review"], t, json=review)
    assert status == 200 and req["status"] == "created", req
    status, reply, _ = await call(s, "POST", draft["links"]["publish"], t)
    assert status == 400, reply  # a review in state "created" blocks a direct publish
    submit = f"{draft['links']['self']}/actions/submit-review"
    status, req, _ = await call(
        s, "POST", submit, t, json={"payload": {"content": "hi", "format": "html"}}
    )
    assert status == 202 and req["status"] in ("accepted", "submitted"), req
    if req["status"] == "submitted":
        status, req, _ = await call(
            s, "POST", f"{t.api}/requests/{req['id']}/actions/accept", t, json={}
        )
        assert status == 200 and req["status"] == "accepted", req
    status, rec, _ = await call(s, "GET", draft["links"]["record"], t)
    assert status == 200 and cid in rec["parent"]["communities"].get("ids", []), rec["parent"]
    return {"final": req["status"]}


async def review_decline(t: Target, s: aiohttp.ClientSession) -> Obs:
    cid = await _community_uuid(t, s)
    draft = await create(t, s)
    await upload(t, s, draft, "r.txt", b"review me")
    review = {"receiver": {"community": cid}, "type": "community-submission"}
    status, req, _ = await call(s, "PUT", draft["links"]["review"], t, json=review)
    assert status == 200
    submit = f"{draft['links']['self']}/actions/submit-review"
    status, req, _ = await call(s, "POST", submit, t, json={"require_review": True})
    assert status == 202 and req["status"] == "submitted", req
    status, got, _ = await call(s, "GET", draft["links"]["self"], t)
    assert got["status"] == "in_review", got["status"]
    status, req, _ = await call(
        s, "POST", f"{t.api}/requests/{req['id']}/actions/decline", t, json={}
    )
    assert status == 200 and req["status"] == "declined", req
    return {"final": req["status"]}


async def access_links(t: Target, s: aiohttp.ClientSession) -> Obs:
    rec = await _published(t, s, {"l.txt": b"share"})
    url = rec["links"]["access_links"]
    status, link, _ = await call(s, "POST", url, t, json={"permission": "view"})
    assert status == 201 and link["token"] and link["permission"] == "view", link
    status, listing, _ = await call(s, "GET", url, t)
    assert status == 200 and link["id"] in [h["id"] for h in listing["hits"]["hits"]]
    return {"status": 201}


async def multipart(t: Target, s: aiohttp.ClientSession) -> Obs:
    if not t.multipart:
        return {"skipped": "multipart not allowed"}
    draft = await create(t, s)
    data = b"0123456789" * 2 + b"xyz"
    init = [
        {
            "key": "big.bin",
            "size": len(data),
            "transfer": {"type": "M", "parts": 3, "part_size": 10},
        }
    ]
    status, listing, _ = await call(s, "POST", draft["links"]["files"], t, json=init)
    assert status == 201, listing
    entry = listing["entries"][0]
    assert "content" not in entry["links"] and len(entry["links"]["parts"]) == 3
    octet = {"Content-Type": "application/octet-stream"}
    for part in entry["links"]["parts"]:
        n = part["part"]
        chunk = data[(n - 1) * 10 : n * 10]
        status, reply, _ = await call(s, "PUT", part["url"], t, data=chunk, headers=octet)
        assert status == 200 and "errors" not in reply, reply
    status, done, _ = await call(s, "POST", entry["links"]["commit"], t)
    assert status == 200 and done["status"] == "completed" and done["transfer"]["type"] == "L"
    return {"status": done["status"]}


def all_scenarios() -> list[tuple[str, Scenario]]:
    """Every scenario with its name, in a stable order."""
    return [
        (fn.__name__, fn)
        for fn in (
            happy_path,
            anonymous_refused,
            unknown_vocabulary,
            soft_errors_then_strict_publish,
            malformed_json,
            unknown_metadata_key_accepted,
            pending_file_blocks_publish,
            commit_without_content,
            unknown_key,
            duplicate_key_rolls_back_batch,
            empty_init,
            init_transfer_key,
            reput_before_commit,
            reput_after_commit,
            short_body_keeps_entry_pending,
            put_without_files_reenables,
            files_enabled_without_files,
            files_disabled_init,
            if_match,
            content_type_with_charset,
            delete_draft_then_404,
            too_many_files,
            published_draft_record_404,
            versions_and_files_import,
            edit_published,
            search_shape,
            stored_title_cleaned,
            review_flow,
            review_decline,
            access_links,
            multipart,
        )
    ]
