"""``links_origin``: every rendered link points at another origin; requests still work."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from typing import Any

import pytest
from contract.scenarios import Target, body, call, create
from yarl import URL

from async_uploader.sandbox import SandboxConfig
from async_uploader.sandbox.cli import _config, add_arguments, run

pytestmark = pytest.mark.anyio
OTHER = "http://127.0.0.1:9"  # discard port: nothing must ever be sent there


def _link_urls(node: Any) -> Iterator[str]:
    """Every URL string under any ``links`` key (nested, lists of parts included)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "links":
                yield from _strings(value)
            else:
                yield from _link_urls(value)
    elif isinstance(node, list):
        for item in node:
            yield from _link_urls(item)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key != "expiration":  # multipart parts: {"part", "url", "expiration"}
                yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _here(link: str, own: str) -> str:
    """The same link on the sandbox's own address (what a test client may follow)."""
    return own + link.removeprefix(OTHER)


async def test_links_carry_the_configured_origin(running: Any) -> None:
    async with running(links_origin=OTHER + "/") as (sb, s):
        t = Target(sb.url, sb.token)
        replies: list[Any] = []
        draft = await create(t, s, body("Links elsewhere"))
        replies.append(draft)
        own = {k: _here(v, sb.url) for k, v in draft["links"].items()}
        status, listing, _ = await call(s, "POST", own["files"], t, json=[{"key": "a b.txt"}])
        assert status == 201
        replies.append(listing)
        init = [{"key": "m.bin", "size": 4, "transfer": {"type": "M", "parts": 1, "part_size": 4}}]
        status, multi, _ = await call(s, "POST", own["files"], t, json=init)
        replies.append(multi)
        entry = next(e for e in listing["entries"] if e["key"] == "a b.txt")
        octet = {"Content-Type": "application/octet-stream"}
        content = URL(_here(entry["links"]["content"], sb.url), encoded=True)
        status, put, _ = await call(s, "PUT", content, t, data=b"x", headers=octet)
        assert status == 200
        replies.append(put)
        commit = URL(_here(entry["links"]["commit"], sb.url), encoded=True)
        status, done, _ = await call(s, "POST", commit, t)
        assert status == 200
        replies.append(done)
        status, _, _ = await call(s, "DELETE", f"{own['files']}/m.bin", t)
        assert status == 204
        status, comm, _ = await call(s, "GET", f"{t.api}/communities/sandbox-community", t)
        replies.append(comm)
        review = {"type": "community-submission", "receiver": {"community": comm["id"]}}
        status, request, _ = await call(s, "PUT", own["review"], t, json=review)
        assert status == 200, request
        replies.append(request)
        status, with_review, _ = await call(s, "GET", own["self"], t)
        assert "submit-review" in with_review["links"]
        replies.append(with_review)
        status, _, _ = await call(s, "DELETE", own["review"], t)
        status, record, _ = await call(s, "POST", own["publish"], t)
        assert status == 202, record
        replies.append(record)
        for path in ("/user/records", "/records", "/communities"):
            status, found, _ = await call(s, "GET", f"{t.api}{path}?size=1&page=1", t)
            replies.append(found)
        status, again, _ = await call(s, "GET", _here(record["links"]["self"], sb.url), t)
        replies.append(again)
        replies.append(await create(t, s, body("Second")))
        urls = [u for reply in replies for u in _link_urls(reply)]
        assert len(urls) > 100
        strays = [u for u in urls if not u.startswith(OTHER + "/") and "doi.org" not in u]
        assert strays == []
        assert all(sb.url not in u for u in urls)


def test_links_origin_is_checked() -> None:
    assert SandboxConfig(links_origin="https://example.org:8443/").links_origin == (
        "https://example.org:8443"
    )
    for bad in (
        "example.org",
        "ftp://h",
        "http://h/api",
        "http://h?x=1",
        "http://u@h",
        "http://h:x",
    ):
        with pytest.raises(ValueError, match="links_origin"):
            SandboxConfig(links_origin=bad)


def test_cli_flag_sets_links_origin() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--links-origin", "http://127.0.0.1:8081"])
    assert _config(args).links_origin == "http://127.0.0.1:8081"
    assert _config(parser.parse_args([])).links_origin is None


def test_cli_refuses_a_bad_links_origin(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert run(parser.parse_args(["--links-origin", "127.0.0.1:8081"])) == 2
    assert "links_origin must be scheme://host[:port]" in capsys.readouterr().err
