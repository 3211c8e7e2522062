"""Search, multipart edge cases, communities, grants, locked edit drafts, indexing delay."""

from __future__ import annotations

from typing import Any

import pytest
from contract.scenarios import Target, body, call, create, upload
from yarl import URL

pytestmark = pytest.mark.anyio
OCTET = {"Content-Type": "application/octet-stream"}


async def _search(s: Any, t: Target, path: str, **query: Any) -> dict[str, Any]:
    url = URL(f"{t.api}{path}").with_query(query) if query else URL(f"{t.api}{path}")
    status, reply, _ = await call(s, "GET", str(url), t)
    assert status == 200, reply
    return reply


async def test_search_queries_sorting_paging(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        ids = []
        for title in ("Alpha resistivity", "Beta resistivity", "Gamma spectra"):
            draft = await create(t, s, body(title))
            ids.append(draft["id"])
        await upload(t, s, draft, "g.txt", b"g")
        await call(s, "POST", draft["links"]["publish"], t)
        r = await _search(s, t, "/user/records", q=f"id:{ids[1]}")
        assert [h["id"] for h in r["hits"]["hits"]] == [ids[1]]
        r = await _search(s, t, "/user/records", q='metadata.title:"beta resistivity"')
        assert [h["id"] for h in r["hits"]["hits"]] == [ids[1]]
        r = await _search(s, t, "/user/records", q="resistivity", sort="oldest")
        assert [h["id"] for h in r["hits"]["hits"]] == ids[:2] and r["sortBy"] == "oldest"
        r = await _search(s, t, "/user/records", sort="newest", size=2, page=1)
        assert r["hits"]["total"] == 3 and len(r["hits"]["hits"]) == 2
        assert "next" in r["links"] and "prev" not in r["links"]
        r = await _search(s, t, "/user/records", sort="newest", size=2, page=2)
        assert [h["id"] for h in r["hits"]["hits"]] == [ids[0]] and "prev" in r["links"]
        r = await _search(s, t, "/user/records", is_published="true")
        assert [h["id"] for h in r["hits"]["hits"]] == [ids[2]]
        r = await _search(s, t, "/records")
        assert [h["id"] for h in r["hits"]["hits"]] == [ids[2]]
        assert set(r) >= {"hits", "aggregations", "sortBy", "links"}
        # luqum cannot parse a lone quote; InvenioRDM then runs a multi_match of the raw text
        status, reply, _ = await call(s, "GET", f'{t.api}/records?q="gamma', t)
        assert status == 200 and [h["id"] for h in reply["hits"]["hits"]] == [ids[2]]
        status, reply, _ = await call(s, "GET", f"{t.api}/records?size=10000&page=2", t)
        assert (status, reply["message"]) == (400, "Invalid pagination parameters.")


async def test_index_delay_hides_new_drafts_from_search(running: Any) -> None:
    async with running(index_delay_s=600) as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s)
        r = await _search(s, t, "/user/records", q=f"id:{draft['id']}")
        assert r["hits"]["total"] == 0
        status, _, _ = await call(s, "GET", draft["links"]["self"], t)
        assert status == 200  # reads by id are immediate


async def test_multipart_edge_cases(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s)
        files = draft["links"]["files"]
        status, reply, _ = await call(
            s, "POST", files, t, json=[{"key": "m", "transfer": {"type": "M", "parts": 2}}]
        )
        assert (status, reply["message"]) == (400, "Multipart file transfer requires file size.")
        status, reply, _ = await call(s, "POST", files, t, json=[{"key": "m", "transfer": "L"}])
        assert (status, reply["message"]) == (400, "Transfer metadata must be a dictionary.")
        init = [
            {"key": "m", "size": 15, "transfer": {"type": "M", "parts": 2, "part_size": 10}},
            {"key": "l"},
        ]
        status, listing, _ = await call(s, "POST", files, t, json=init)
        m, _plain = listing["entries"]
        part1 = m["links"]["parts"][0]["url"]
        status, reply, _ = await call(s, "PUT", part1, t, data=b"short", headers=OCTET)
        assert status == 200 and reply["errors"] == "File upload transfer failed."
        status, _, _ = await call(s, "GET", m["links"]["self"], t)
        assert status == 200  # part errors keep the entry
        status, reply, _ = await call(s, "PUT", f"{files}/l/content/1", t, data=b"x", headers=OCTET)
        assert (status, reply["message"]) == (
            400,
            'Transfer type "L" does not support multipart uploads.',
        )
        status, _, _ = await call(s, "POST", m["links"]["commit"], t)
        assert status == 500  # parts missing
        status, reply, _ = await call(s, "PUT", f"{files}/m/content", t, data=b"x", headers=OCTET)
        assert status == 200 and reply["errors"] == "File upload transfer failed."
        status, _, _ = await call(s, "GET", m["links"]["self"], t)
        assert status == 404  # a plain content PUT on an M file removes it
        status, _, _ = await call(s, "DELETE", files, t)
        assert status == 204
        status, listing, _ = await call(s, "GET", files, t)
        assert listing["entries"] == []


async def test_communities_grants_and_locked_edit(running: Any) -> None:
    async with running(communities=()) as (sb, s):
        t = Target(sb.url, sb.token)
        new = {
            "slug": "my-lab",
            "metadata": {"title": "My lab"},
            "access": {"visibility": "public"},
        }
        status, comm, _ = await call(s, "POST", f"{t.api}/communities", t, json=new)
        assert status == 201 and comm["slug"] == "my-lab"
        status, reply, _ = await call(s, "POST", f"{t.api}/communities", t, json=new)
        assert status == 400 and reply["errors"][0]["field"] == "slug"
        r = await _search(s, t, "/communities", q="slug:my-lab")
        assert [h["id"] for h in r["hits"]["hits"]] == [comm["id"]]
        status, by_uuid, _ = await call(s, "GET", f"{t.api}/communities/{comm['id']}", t)
        assert status == 200 and by_uuid["slug"] == "my-lab"
        status, reply, _ = await call(s, "GET", f"{t.api}/communities/none", t)
        assert status == 404

        draft = await create(t, s)
        await upload(t, s, draft, "a.txt", b"a")
        status, rec, _ = await call(s, "POST", draft["links"]["publish"], t)
        grants = {"grants": [{"subject": {"type": "user", "id": "7"}, "permission": "view"}]}
        status, reply, _ = await call(s, "POST", rec["links"]["access_grants"], t, json=grants)
        assert status == 201 and reply["hits"]["total"] == 1
        status, reply, _ = await call(s, "POST", rec["links"]["access_grants"], t, json={})
        assert status == 400
        status, edit, _ = await call(s, "POST", f"{t.api}/records/{rec['id']}/draft", t)
        status, reply, _ = await call(s, "POST", edit["links"]["files"], t, json=[{"key": "b"}])
        assert (status, reply["message"]) == (403, "Bucket is locked for modifications.")
        status, _, _ = await call(s, "DELETE", edit["links"]["self"], t)
        assert status == 204
        status, _, _ = await call(s, "GET", rec["links"]["self"], t)
        assert status == 200  # discarding an edit draft keeps the published record
