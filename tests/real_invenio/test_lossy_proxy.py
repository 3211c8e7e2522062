"""The lossy proxy itself, against the real server: it must be trustworthy before tests use it
to show that the uploader survives lost answers.

Checked: links come back with the proxy's origin; a lost ``POST /api/records`` answer still
created the draft (seen in PostgreSQL, not through the proxy); ``when="before"`` creates
nothing; file content is streamed both ways byte for byte; counters add up.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import pytest

from tests.conftest import metadata
from tests.real_invenio.helpers import db_titles, psql
from tests.real_invenio.lossy_proxy import Lose, LossyProxy
from tests.real_invenio.real_invenio_env import RealServer

pytestmark = pytest.mark.real_invenio

CREATE = "/api/records"


def draft_body(title: str) -> dict[str, Any]:
    return metadata(title)


async def create(
    session: aiohttp.ClientSession, proxy: LossyProxy, server: RealServer, title: str
) -> dict[str, Any] | None:
    """POST /api/records through the proxy; the draft, or None when the answer was lost."""
    try:
        async with session.post(
            f"{proxy.url}{CREATE}", json=draft_body(title), headers=server.headers()
        ) as resp:
            assert resp.status == 201, await resp.text()
            return dict(await resp.json())
    except aiohttp.ClientConnectionError:  # ServerDisconnectedError: nothing came back
        return None


def delete_drafts(server: RealServer, tag: str) -> None:
    """Tidy up: every open draft whose title has ``tag`` (ids from the database)."""
    rows = psql(
        "select p.pid_value from rdm_drafts_metadata d join pidstore_pid p "
        "on p.object_uuid = d.id and p.pid_type = 'recid' "
        "where d.json is not null and d.json->'metadata'->>'title' like :'p1'",
        f"%{tag}%",
    )

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            for (pid,) in rows:
                url = f"{server.api}/records/{pid}/draft"
                async with session.delete(url, headers=server.headers()) as resp:
                    assert resp.status in (204, 404), resp.status

    anyio.run(main)


def test_links_carry_the_proxy_origin(real_server: RealServer, lossy_proxy: LossyProxy) -> None:
    tag = f"proxy-links-{uuid.uuid4().hex[:8]}"

    async def main() -> tuple[dict[str, Any], str]:
        async with aiohttp.ClientSession() as session:
            draft = await create(session, lossy_proxy, real_server, f"Proxy {tag}")
            assert draft is not None
            url = f"{lossy_proxy.url}/api/user/records?size=1"
            async with session.get(url, headers=real_server.headers()) as resp:
                assert resp.status == 200
                return draft, await resp.text()

    draft, listing = anyio.run(main)
    try:
        assert lossy_proxy.url != real_server.url
        assert real_server.url not in json.dumps(draft) + listing
        assert all(v.startswith(lossy_proxy.url) for v in draft["links"].values()), draft["links"]
        assert json.loads(listing)["links"]["self"].startswith(lossy_proxy.url)
        assert lossy_proxy.count("POST", CREATE) == 1
        assert lossy_proxy.count("GET", "/api/user/records") == 1
        assert lossy_proxy.lost() == 0
    finally:
        delete_drafts(real_server, tag)


def test_lost_create_answer_still_creates_the_draft(
    real_server: RealServer, lossy_proxy: LossyProxy
) -> None:
    tag = f"proxy-lost-{uuid.uuid4().hex[:8]}"
    lossy_proxy.set_rules([Lose("POST", CREATE, every=2)])
    titles = [f"Lost {tag} {i}" for i in range(1, 5)]

    async def main() -> list[dict[str, Any] | None]:
        async with aiohttp.ClientSession() as session:
            return [await create(session, lossy_proxy, real_server, t) for t in titles]

    answers = anyio.run(main)
    try:
        assert [a is not None for a in answers] == [True, False, True, False]
        assert lossy_proxy.count("POST", CREATE) == 4
        assert lossy_proxy.lost("POST", CREATE) == 2
        assert lossy_proxy.lost_counts() == {f"POST {CREATE}": 2}
        # The server completed every create, answered or not: one open draft per title.
        published, drafts = db_titles(tag)
        assert published == {} and drafts == {t: 1 for t in titles}, drafts
    finally:
        delete_drafts(real_server, tag)


def test_lost_before_forwarding_creates_nothing(
    real_server: RealServer, lossy_proxy: LossyProxy
) -> None:
    tag = f"proxy-before-{uuid.uuid4().hex[:8]}"
    lossy_proxy.set_rules([Lose("POST", CREATE, nth=frozenset({1}), when="before", how="reset")])

    async def main() -> list[dict[str, Any] | None]:
        async with aiohttp.ClientSession() as session:
            return [
                await create(session, lossy_proxy, real_server, f"Before {tag} {i}") for i in (1, 2)
            ]

    answers = anyio.run(main)
    try:
        assert answers[0] is None and answers[1] is not None
        assert db_titles(tag) == ({}, {f"Before {tag} 2": 1})
        assert lossy_proxy.lost() == 1 and lossy_proxy.count() == 2
    finally:
        delete_drafts(real_server, tag)


def test_file_content_streams_both_ways(real_server: RealServer, lossy_proxy: LossyProxy) -> None:
    """16 MiB in 64 KiB pieces with a Content-Length (not chunked): the server stores the same
    bytes, and the download through the proxy (not JSON: streamed) gives them back."""
    tag = f"proxy-stream-{uuid.uuid4().hex[:8]}"
    piece = hashlib.sha256(tag.encode()).digest() * 2048  # 64 KiB
    pieces, size = 256, 256 * len(piece)
    md5 = hashlib.md5(piece * pieces).hexdigest()

    async def content() -> AsyncIterator[bytes]:
        for _ in range(pieces):
            yield piece

    async def main() -> tuple[dict[str, Any], str, int]:
        headers = real_server.headers()
        async with aiohttp.ClientSession() as session:
            draft = await create(session, lossy_proxy, real_server, f"Stream {tag}")
            assert draft is not None
            files = draft["links"]["files"]
            async with session.post(files, json=[{"key": "big.bin"}], headers=headers) as r:
                assert r.status == 201
                entry = (await r.json())["entries"][0]
            octet = {**headers, "Content-Type": "application/octet-stream"}
            octet["Content-Length"] = str(size)
            async with session.put(entry["links"]["content"], data=content(), headers=octet) as r:
                assert r.status == 200, await r.text()
            async with session.post(entry["links"]["commit"], headers=headers) as r:
                assert r.status == 200
                done = await r.json()
            got, length = hashlib.md5(), 0
            async with session.get(done["links"]["content"], headers=headers) as r:
                assert r.status == 200
                async for chunk in r.content.iter_chunked(1 << 20):
                    got.update(chunk)
                    length += len(chunk)
            return done, got.hexdigest(), length

    done, downloaded, length = anyio.run(main)
    try:
        assert done["status"] == "completed"
        assert done["size"] == size and done["checksum"] == f"md5:{md5}"
        assert (downloaded, length) == (md5, size)
        counts = lossy_proxy.counts()
        assert counts["PUT /api/records/{id}/draft/files/{key}/content"] == 1
        assert counts["GET /api/records/{id}/draft/files/{key}/content"] == 1
    finally:
        delete_drafts(real_server, tag)
