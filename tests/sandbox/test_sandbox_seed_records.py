"""The original example folders go through the sandbox in the original script's order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from yarl import URL

from tests.conftest import SEED_RECORDS

pytestmark = pytest.mark.anyio
SEEDS = SEED_RECORDS  # found by the project conftest, beside the checkout


async def test_seed_records_round_trip(running: Any) -> None:
    async with running() as (sb, s):
        links_out = []
        for folder in (SEEDS / "0", SEEDS / "1"):
            body = json.loads((folder / "record_metadata.json").read_bytes())
            headers = {"Accept": "application/json", "Content-Type": "application/json"}
            async with s.post(f"{sb.url}/api/records", json=body, headers=headers) as r:
                assert r.status == 201
                draft = await r.json()
            files = sorted(p for p in folder.iterdir() if p.name != "record_metadata.json")
            for path in files:
                async with s.post(draft["links"]["files"], json=[{"key": path.name}]) as r:
                    assert r.status == 201
                    entry = next(e for e in (await r.json())["entries"] if e["key"] == path.name)
                octet = {"Content-Type": "application/octet-stream"}
                with path.open("rb") as fh:
                    async with s.put(
                        URL(entry["links"]["content"], encoded=True), data=fh, headers=octet
                    ) as r:
                        assert r.status == 200
                async with s.post(URL(entry["links"]["commit"], encoded=True)) as r:
                    assert r.status == 200
            async with s.post(draft["links"]["publish"]) as r:
                assert r.status == 202
                record = await r.json()
            links_out.append(draft["links"])
            assert record["metadata"]["title"] == body["metadata"]["title"]
            for path in files:
                url = f"{record['links']['files']}/{path.name}/content"
                async with s.get(url) as r:
                    assert r.status == 200
                    assert await r.read() == path.read_bytes()  # byte-identical (U+2212 kept)
        assert [lk["record_html"].rsplit("/", 1)[-1] for lk in links_out] == [
            rec["id"] for rec in sb.records()
        ]
        assert sb.stats()["published"] == 2
