"""Profile rules (bigmap, zenodo) and vanilla validation details, with exact messages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from contract.scenarios import Target, body, call, create, field_messages, upload

from async_uploader.sandbox.validation import AFFILIATIONS

pytestmark = pytest.mark.anyio
OCTET = {"Content-Type": "application/octet-stream"}


async def test_bigmap_rules(running: Any) -> None:
    async with running(profile="bigmap") as (sb, s):
        t = Target(sb.url, sb.token)
        data = body()
        data["metadata"]["version"] = "v1"
        draft = await create(t, s, data)
        assert draft["access"]["record"] == "restricted"
        assert draft["access"]["files"] == "restricted"
        assert "version" not in draft["metadata"]
        await upload(t, s, draft, "a.txt", b"abc")
        status, reply, _ = await call(s, "POST", draft["links"]["publish"], t)
        assert (status, reply["message"]) == (403, "Community not selected.")

        del data["metadata"]["description"]
        nodesc = await create(t, s, data)
        await upload(t, s, nodesc, "a.txt", b"abc")
        status, comm, _ = await call(s, "GET", f"{t.api}/communities?q=slug:sandbox-community", t)
        cid = comm["hits"]["hits"][0]["id"]
        review = {"receiver": {"community": cid}, "type": "community-submission"}
        status, _, _ = await call(s, "PUT", nodesc["links"]["review"], t, json=review)
        assert status == 200
        submit = f"{nodesc['links']['self']}/actions/submit-review"
        status, reply, _ = await call(s, "POST", submit, t, json={})
        assert status == 400
        assert field_messages(reply["errors"])["metadata.description"] == [
            "Missing data for required field."
        ]

        status, _, _ = await call(s, "PUT", draft["links"]["review"], t, json=review)
        status, req, _ = await call(s, "POST", f"{draft['links']['self']}/actions/submit-review", t)
        assert (status, req["status"]) == (202, "accepted")
        status, rec, _ = await call(s, "GET", draft["links"]["record"], t)
        assert status == 200 and rec["parent"]["communities"]["ids"] == [cid]

        meta_only = body(enabled=False)
        mo = await create(t, s, meta_only)
        assert mo["files"]["enabled"] is True
        assert field_messages(mo["errors"])["files.enabled"]


async def test_bigmap_speaks_v12_and_series_overrides(running: Any) -> None:
    """The BIG-MAP Archive runs InvenioRDM 12: its profile renders and answers as a real 12.1.0
    does where v12 differs from v14 (real-invenio-v12.md); ``series`` overrides a profile's."""
    for profile, series, want in (("bigmap", None, 12), ("invenio", 12, 12), ("bigmap", 14, 14)):
        async with running(profile=profile, series=series) as (sb, s):
            t = Target(sb.url, sb.token, series=want)
            draft = await create(t, s)
            done = await upload(t, s, draft, "a.txt", b"abc")
            assert ("transfer" in done) is (want == 14), (profile, series, done)
            assert ("preview_html" in draft["links"]) is (want == 14)
            init = [{"key": "m.bin", "size": 20, "transfer": {"type": "M", "parts": 2}}]
            status, reply, _ = await call(s, "POST", draft["links"]["files"], t, json=init)
            if want == 12:
                assert status == 400
                assert reply["errors"] == [{"field": "0.transfer", "messages": ["Unknown field."]}]
            else:
                assert status == 400 and "part_size" in reply["message"], reply
            status, reply, _ = await call(
                s, "PUT", done["links"]["content"], t, data=b"x", headers=OCTET
            )
            if want == 12:
                msg = "The file upload transfer failed, please try again."
                assert (status, reply["message"]) == (400, msg)
            else:
                assert (status, reply["errors"]) == (200, "File upload transfer failed.")
            status, listing, _ = await call(s, "GET", f"{t.api}/user/records", t)
            assert status == 200 and ("page" in listing) is (want == 14)


async def test_unknown_affiliation_refused_and_nothing_stored(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        data = body()
        data["metadata"]["creators"][0]["affiliations"] = [{"id": "00zzzzz99"}]
        status, reply, _ = await call(s, "POST", f"{t.api}/records", t, json=data)
        assert (status, reply) == (400, {"status": 400, "message": "Invalid value 00zzzzz99."})
        assert sb.records() == []
        data["metadata"]["creators"][0]["affiliations"] = [{"id": next(iter(AFFILIATIONS))}]
        draft = await create(t, s, data)
        assert "errors" not in draft


async def test_zenodo_rules(running: Any) -> None:
    async with running(profile="zenodo") as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s)
        assert re.fullmatch(r"\d+", draft["id"]) and re.fullmatch(r"\d+", draft["parent"]["id"])
        status, reply, headers = await call(s, "GET", draft["links"]["self"], t)
        assert headers["X-RateLimit-Limit"] == "100"  # "100 per 1 minute" by default

        restricted = body()
        restricted["access"]["record"] = "restricted"
        status, reply, _ = await call(s, "POST", f"{t.api}/records", t, json=restricted)
        assert status == 400
        assert field_messages(reply["errors"])["access"] == [
            "You don't have permissions to manage record access."
        ]

        status, listing, _ = await call(s, "POST", draft["links"]["files"], t, json=[{"key": "e"}])
        entry = listing["entries"][0]
        status, _, _ = await call(s, "PUT", entry["links"]["content"], t, data=b"", headers=OCTET)
        assert status == 200
        status, reply, _ = await call(s, "POST", entry["links"]["commit"], t)
        assert (status, reply["message"]) == (400, "Empty files are not accepted.")
        status, got, _ = await call(s, "GET", entry["links"]["self"], t)
        assert got["status"] == "pending"

        init = [{"key": "m", "size": 4, "transfer": {"type": "M", "parts": 2, "part_size": 2}}]
        status, listing, _ = await call(s, "POST", draft["links"]["files"], t, json=init)
        assert status == 201
        m = next(e for e in listing["entries"] if e["key"] == "m")
        url = m["links"]["parts"][0]["url"]
        status, reply, _ = await call(s, "PUT", url, t, data=b"ab", headers=OCTET)
        assert (status, reply["message"]) == (403, "Permission denied.")
        status, reply, _ = await call(s, "POST", m["links"]["commit"], t)
        assert status == 403

        meta_only = await create(t, s, body(enabled=False))
        assert meta_only["files"]["enabled"] is True
        assert field_messages(meta_only["errors"])["files.enabled"] == [
            "You don't have permissions to manage files options."
        ]
        published = await create(t, s)
        await upload(t, s, published, "f.txt", b"data")
        status, rec, _ = await call(s, "POST", published["links"]["publish"], t)
        assert status == 202 and rec["pids"]["doi"]["identifier"].endswith(published["id"])


async def test_vanilla_draft_fields_and_put_semantics(running: Any) -> None:
    async with running() as (sb, s):
        t = Target(sb.url, sb.token)
        draft = await create(t, s)
        assert re.fullmatch(r"[0-9a-z]{5}-[0-9a-z]{5}", draft["id"])
        assert draft["created"].endswith("+00:00") and draft["updated"].endswith("+00:00")
        assert draft["status"] == "draft" and draft["versions"]["index"] == 1
        data = body("Replaced")
        data["access"] = None
        del data["access"]
        data["metadata"].pop("description")
        status, upd, _ = await call(s, "PUT", draft["links"]["self"], t, json=data)
        assert status == 200 and "description" not in upd["metadata"]  # full replacement
        assert upd["revision_id"] == draft["revision_id"] + 1
        assert field_messages(upd["errors"])["files.enabled"][0].startswith("Missing uploaded")
        bad_access = body()
        bad_access["access"]["record"] = "secret"
        status, reply, _ = await call(s, "POST", f"{t.api}/records", t, json=bad_access)
        assert status == 400 and "access.record" in field_messages(reply["errors"])
        status, reply, _ = await call(s, "GET", f"{t.api}/records/nope-nope/draft", t)
        assert (status, reply["message"]) == (404, "The persistent identifier does not exist.")
        creators = body()
        creators["metadata"]["creators"] = [{"person_or_org": {"type": "personal"}}]
        c = await create(t, s, creators)
        assert field_messages(c["errors"])["metadata.creators.0.person_or_org.family_name"] == [
            "Missing data for required field."
        ]
