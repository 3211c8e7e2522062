"""Smoke tests against a real InvenioRDM 14 (plain aiohttp, no project code).

They prove the bring-up serves the REST flows the uploader depends on: the draft/file/publish
happy path with a byte-identical read-back, and a community share through a review request.
"""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from typing import Any

import aiohttp
import anyio
import pytest

from tests.real_invenio.real_invenio_env import RealServer

pytestmark = pytest.mark.real_invenio


def draft_body(title: str, marker: str) -> dict[str, Any]:
    """The seed records' shape: ORCID creator, ROR affiliation 01ggx4157, resource type dataset."""
    return {
        "access": {"record": "public", "files": "public"},
        "files": {"enabled": True},
        "metadata": {
            "resource_type": {"id": "dataset"},
            "title": title,
            "publication_date": "2022-11-28",
            "publisher": "async-uploader CI",
            "creators": [
                {
                    "person_or_org": {
                        "type": "personal",
                        "family_name": "Collins",
                        "given_name": "Thomas",
                        "identifiers": [{"scheme": "orcid", "identifier": "0000-0002-1825-0097"}],
                    },
                    "affiliations": [{"id": "01ggx4157"}],
                }
            ],
            "identifiers": [{"scheme": "other", "identifier": marker}],
        },
    }


async def call(
    session: aiohttp.ClientSession, method: str, url: str, expect: int, **kwargs: Any
) -> Any:
    async with session.request(method, url, **kwargs) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == expect, f"{method} {url}: {resp.status} {body}"
        return body


async def upload_file(
    session: aiohttp.ClientSession, draft: dict[str, Any], key: str, data: bytes
) -> None:
    """Init, content PUT, commit; checks the server's md5 against ours."""
    files_url = draft["links"]["files"]
    entries = await call(session, "POST", files_url, 201, json=[{"key": key, "size": len(data)}])
    entry = next(e for e in entries["entries"] if e["key"] == key)
    assert entry["status"] == "pending"
    octet = {"Content-Type": "application/octet-stream"}
    await call(session, "PUT", entry["links"]["content"], 200, data=io.BytesIO(data), headers=octet)
    done = await call(session, "POST", entry["links"]["commit"], 200)
    assert done["status"] == "completed"
    assert done["checksum"] == f"md5:{hashlib.md5(data).hexdigest()}"
    assert done["size"] == len(data)


async def find_by_marker(
    session: aiohttp.ClientSession, server: RealServer, marker: str
) -> list[str]:
    """Ids of the caller's records carrying ``marker`` (search lags the database briefly)."""
    params = {"q": f'metadata.identifiers.identifier:"{marker}"', "size": "10"}
    ids: list[str] = []
    for _ in range(20):
        body = await call(session, "GET", f"{server.api}/user/records", 200, params=params)
        ids = [hit["id"] for hit in body["hits"]["hits"]]
        if ids:
            break
        await anyio.sleep(0.25)
    return ids


def test_happy_path_publish_and_read_back(real_server: RealServer) -> None:
    payloads = {"data/table.csv": b"a,b\n1,2\n" * 1000, "blob.bin": os.urandom(3 * 1024 * 1024 + 7)}
    marker = f"bulk:{uuid.uuid4()}"

    async def main() -> None:
        async with aiohttp.ClientSession(headers=real_server.headers()) as s:
            draft = await call(
                s,
                "POST",
                f"{real_server.api}/records",
                201,
                json=draft_body("Smoke happy path", marker),
            )
            assert "errors" not in draft, draft.get("errors")
            assert draft["status"] == "draft"
            aff = draft["metadata"]["creators"][0]["affiliations"][0]
            assert aff["id"] == "01ggx4157"
            found = await find_by_marker(s, real_server, marker)
            assert draft["id"] in found
            for key, data in payloads.items():
                await upload_file(s, draft, key, data)
            record = await call(s, "POST", draft["links"]["publish"], 202)
            assert record["id"] == draft["id"]
            assert record["is_published"] is True
            got = await call(s, "GET", f"{real_server.api}/records/{draft['id']}", 200)
            assert got["files"]["count"] == len(payloads)
            listing = await call(s, "GET", got["links"]["files"], 200)
            by_key = {e["key"]: e for e in listing["entries"]}
            assert set(by_key) == set(payloads)
            for key, data in payloads.items():
                async with s.get(by_key[key]["links"]["content"]) as resp:
                    assert resp.status == 200
                    assert await resp.read() == data
            # The draft is gone after publishing; a second publish is a 404.
            await call(s, "POST", draft["links"]["publish"], 404)

    anyio.run(main)


def test_community_share_through_review(real_server: RealServer) -> None:
    """Owner of an 'open review' community: submit-review includes and publishes at once."""

    async def main() -> None:
        async with aiohttp.ClientSession(headers=real_server.headers()) as s:
            community = await call(
                s, "GET", f"{real_server.api}/communities/{real_server.community}", 200
            )
            body = draft_body("Smoke community share", f"bulk:{uuid.uuid4()}")
            draft = await call(s, "POST", f"{real_server.api}/records", 201, json=body)
            await upload_file(s, draft, "shared.txt", b"shared with the community\n")
            review = {"receiver": {"community": community["id"]}, "type": "community-submission"}
            request = await call(s, "PUT", draft["links"]["review"], 200, json=review)
            assert request["status"] == "created"
            submit_url = f"{draft['links']['self']}/actions/submit-review"
            submit = {"payload": {"content": "CI share", "format": "html"}, "require_review": False}
            submitted = await call(s, "POST", submit_url, 202, json=submit)
            assert submitted["status"] == "accepted"
            record = await call(s, "GET", f"{real_server.api}/records/{draft['id']}", 200)
            assert community["id"] in record["parent"]["communities"]["ids"]

    anyio.run(main)


def test_review_community_submit_then_accept(real_server: RealServer) -> None:
    """A 'closed review' community keeps the draft in review until a curator accepts."""
    if not real_server.community_review:
        pytest.skip("env file names no review community")

    async def main() -> None:
        async with aiohttp.ClientSession(headers=real_server.headers()) as s:
            community = await call(
                s, "GET", f"{real_server.api}/communities/{real_server.community_review}", 200
            )
            body = draft_body("Smoke community review", f"bulk:{uuid.uuid4()}")
            draft = await call(s, "POST", f"{real_server.api}/records", 201, json=body)
            await upload_file(s, draft, "reviewed.txt", b"needs a curator\n")
            review = {"receiver": {"community": community["id"]}, "type": "community-submission"}
            await call(s, "PUT", draft["links"]["review"], 200, json=review)
            submitted = await call(
                s, "POST", f"{draft['links']['self']}/actions/submit-review", 202, json={}
            )
            assert submitted["status"] == "submitted"
            in_review = await call(s, "GET", draft["links"]["self"], 200)
            assert in_review["status"] == "in_review"
            await call(s, "GET", f"{real_server.api}/records/{draft['id']}", 404)
            accepted = await call(s, "POST", submitted["links"]["actions"]["accept"], 200, json={})
            assert accepted["status"] == "accepted"
            record = await call(s, "GET", f"{real_server.api}/records/{draft['id']}", 200)
            assert community["id"] in record["parent"]["communities"]["ids"]

    anyio.run(main)
