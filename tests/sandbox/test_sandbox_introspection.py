"""Counters, admin routes, the thread-served sandbox and token revocation."""

from __future__ import annotations

from typing import Any

import aiohttp
import anyio
import pytest
from contract.scenarios import Target, body, call, create, upload

from async_uploader.sandbox import Sandbox, SandboxConfig


@pytest.mark.anyio
async def test_counters_and_admin_routes(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s)
        await upload(t, s, draft, "a.bin", b"12345")
        await call(s, "GET", f"{t.api}/records", t)
        stats = sb.stats()
        assert stats["drafts"] == 1 and stats["published"] == 0
        assert stats["requests_per_route"] == {
            "create_draft": 1,
            "files_init": 1,
            "content_put": 1,
            "commit": 1,
            "search_records": 1,
        }
        assert stats["requests_per_method"] == {"POST": 3, "PUT": 1, "GET": 1}
        assert stats["write_requests"] == 4 and stats["bytes_received"] == 5
        status, over_http, _ = await call(s, "GET", f"{sb.url}/_sandbox/stats", t)
        assert status == 200 and over_http == sb.stats()
        async with aiohttp.ClientSession() as anon:
            status, _, _ = await call(anon, "GET", f"{sb.url}/_sandbox/stats")
            assert status == 403
        status, recs, _ = await call(s, "GET", f"{sb.url}/_sandbox/records", t)
        assert recs[0]["files"] == [
            {
                "key": "a.bin",
                "size": 5,
                "md5": "827ccb0eea8a706c4c34a16891f84e7b",
                "checksum": "md5:827ccb0eea8a706c4c34a16891f84e7b",
                "status": "completed",
            }
        ]
        status, _, _ = await call(s, "POST", f"{sb.url}/_sandbox/stats/reset", t)
        assert sb.stats()["requests_total"] == 0 and sb.stats()["drafts"] == 1
        plan = {
            "seed": 2,
            "rules": [{"route": "publish", "kind": "status", "status": 500, "on_calls": [1]}],
        }
        status, _, _ = await call(s, "PUT", f"{sb.url}/_sandbox/faults", t, json=plan)
        assert status == 200
        status, got, _ = await call(s, "GET", f"{sb.url}/_sandbox/faults", t)
        assert got["rules"][0]["route"] == "publish" and got["seed"] == 2
        status, _, _ = await call(s, "POST", draft["links"]["publish"], t)
        assert status == 500
        status, _, _ = await call(s, "POST", draft["links"]["publish"], t)
        assert status == 202
        bad = {"rules": [{"route": "nope", "kind": "status"}]}
        status, _, _ = await call(s, "PUT", f"{sb.url}/_sandbox/faults", t, json=bad)
        assert status == 400


@pytest.mark.anyio
async def test_token_revocation_reads_still_work(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s)
        await upload(t, s, draft, "a.bin", b"x")
        status, rec, _ = await call(s, "POST", draft["links"]["publish"], t)
        sb.set_token_valid(False)
        status, reply, _ = await call(s, "POST", f"{t.api}/records", t, json=body())
        assert (status, reply["message"]) == (403, "Permission denied.")
        status, _, _ = await call(s, "GET", rec["links"]["self"], t)
        assert status == 200  # public read
        sb.set_token_valid(True)
        await create(t, s)


def test_in_thread_sandbox_serves_sync_callers() -> None:
    with Sandbox.in_thread(SandboxConfig(communities=("a", "b"))) as sb:

        async def talk() -> int:
            async with aiohttp.ClientSession() as s:
                t = Target(sb.url, sb.token)
                await create(t, s)
                _status, hits, _ = await call(s, "GET", f"{t.api}/communities", t)
                return hits["hits"]["total"]

        assert anyio.run(talk) == 2
        assert sb.stats()["drafts"] == 1 and len(sb.records()) == 1
        sb.set_faults({"rules": [{"route": "*", "kind": "status", "status": 503, "on_calls": [1]}]})
        sb.reset_stats()
        assert sb.stats()["requests_total"] == 0
