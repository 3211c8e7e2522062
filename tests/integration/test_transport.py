"""The transport over real loopback sockets: no request on the wire the client does not know of.

A scripted HTTP/1.1 server on raw asyncio streams stands in for a server (or proxy) that
closes a kept-alive connection just as the client reuses it: it answers one request with
keep-alive, then reads the head of the next request on that connection and closes it
without an answer, as if its idle timeout had fired as the request arrived ("drop"), or
closes it after the first MiB of the body ("cut"). The server counts every request head and
body that reaches it. Nothing of aiohttp or of the project is
mocked: the requests go through ``InvenioClient`` and its real aiohttp session.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from async_uploader.client import InvenioClient
from async_uploader.config import RetryConfig
from async_uploader.discover import LocalFile
from async_uploader.errors import (
    BodyPartlySent,
    ConfigError,
    NoAnswer,
    NotSent,
    ServerUnreachable,
    TransientApiError,
    UploaderError,
)
from async_uploader.events import BytesSent, Event, Retrying
from async_uploader.ratelimit import RateLimiter, RatePolicy
from async_uploader.results import Counters
from async_uploader.transfer import FileBody
from async_uploader.wire import disable_silent_resend

pytestmark = pytest.mark.anyio

BIG = 16 * 1024 * 1024  # more than loopback's socket buffers hold: the body cannot be all out
CUT = 1024 * 1024  # body bytes a "cut" connection carries before it is closed
TOKEN = "s3cr3t-token-value"


@dataclass
class Seen:
    """One request head that reached the server, and what followed it."""

    conn: int
    method: str
    path: str
    length: int
    received: int = 0  # body bytes read before the answer or the close
    md5: str | None = None


@dataclass
class ScriptedServer:
    """Answers requests in order: "ok" reads the body and answers 200 with keep-alive,
    "drop" closes the connection right after the request head, "cut" after ``CUT`` bytes of
    the body (so the client has certainly started sending it)."""

    script: list[str]
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                fields = dict(
                    (k.strip().lower(), v.strip())
                    for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)
                )
                assert "transfer-encoding" not in fields, "the client sends Content-Length"
                seen = Seen(conn, method, path, int(fields.get("content-length", "0")))
                self.seen.append(seen)
                action = self.script.pop(0) if self.script else "ok"
                if action in ("drop", "cut"):
                    if action == "cut":
                        seen.received = len(await reader.readexactly(min(CUT, seen.length)))
                    writer.transport.abort()
                    return
                body = await reader.readexactly(seen.length)
                seen.received, seen.md5 = len(body), hashlib.md5(body).hexdigest()
                answer = json.dumps({"received": len(body)}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(answer)}\r\n".encode()
                    + b"Connection: keep-alive\r\n\r\n"
                    + answer
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    def heads(self, method: str, path: str) -> list[Seen]:
        return [s for s in self.seen if (s.method, s.path) == (method, path)]


@contextlib.asynccontextmanager
async def serving(script: list[str]) -> AsyncIterator[tuple[ScriptedServer, str]]:
    server = ScriptedServer(list(script))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server, f"http://127.0.0.1:{port}/api"


@contextlib.asynccontextmanager
async def invenio_client(
    api: str, attempts: int, events: list[Event]
) -> AsyncIterator[InvenioClient]:
    """An ``InvenioClient`` as ``pipeline.open_client`` builds it, one connection at a time."""
    timeout = aiohttp.ClientTimeout(total=None, connect=5, sock_connect=5, sock_read=20)
    connector = aiohttp.TCPConnector(limit=1)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(
        timeout=timeout, connector=connector, headers=headers
    ) as session:
        yield InvenioClient(
            session,
            api_url=api,
            limiter=RateLimiter(RatePolicy(burst=100)),
            retry=RetryConfig(attempts=attempts, total_seconds=30, base_delay=0.01, max_delay=0.01),
            counters=Counters(),
            reporter=events.append,
            rand=lambda: 0.0,
        )


def big_file(tmp_path: Path) -> LocalFile:
    path = tmp_path / "big.bin"
    block = bytes(range(256)) * 4096  # 1 MiB, not all alike
    path.write_bytes(b"".join(block[i:] + block[:i] for i in range(BIG // len(block))))
    st = path.stat()
    return LocalFile("big.bin", path, st.st_size, st.st_mtime_ns)


def file_body(client: InvenioClient, file: LocalFile) -> FileBody:
    """The upload body the transfer uses, reporting progress as the record steps do."""
    return FileBody(file, 256 * 1024, lambda n: client.report(BytesSent("0", file.key, n)))


def retries(events: list[Event]) -> list[Retrying]:
    return [e for e in events if isinstance(e, Retrying)]


@pytest.mark.parametrize("fault", ["drop", "cut"])
async def test_no_silent_resend_of_a_streamed_put(tmp_path: Path, fault: str) -> None:
    """The PUT on the connection the server drops is sent once; the failure is typed."""
    file = big_file(tmp_path)
    events: list[Event] = []
    async with serving(["ok", fault]) as (server, api), invenio_client(api, 1, events) as client:
        assert (await client.request("GET", client.url("records"))).status == 200
        with pytest.raises(BodyPartlySent) as caught:
            await client.put_content(f"{api}/files/big.bin/content", file_body(client, file), BIG)
    puts = server.heads("PUT", "/api/files/big.bin/content")
    attempts_known = 1 + len(retries(events))
    assert len(puts) <= attempts_known == 1, server.seen
    assert [s.conn for s in server.seen] == [1, 1]  # the PUT went on the kept-alive connection
    err = caught.value
    assert err.reason == "body cut" and err.status is None
    assert puts[0].received <= err.sent < BIG and err.size == BIG
    assert "body cut off" in str(err) and "handed over" in str(err)
    assert TOKEN not in str(err) and TOKEN not in repr(err.__dict__)


@pytest.mark.parametrize("call", ["json_put", "get"])
async def test_no_silent_resend_of_a_small_request(call: str) -> None:
    """A GET or a JSON PUT on the dropped connection is sent once and surfaces as NoAnswer."""
    events: list[Event] = []
    async with serving(["ok", "drop"]) as (server, api), invenio_client(api, 1, events) as client:
        assert (await client.request("GET", client.url("records"))).status == 200
        with pytest.raises(NoAnswer) as caught:
            await send(client, call)
    assert len(server.seen) == 1 + 1 + len(retries(events)) == 2, server.seen
    assert caught.value.reason == "no answer"
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value.__dict__)


async def send(client: InvenioClient, call: str) -> object:
    if call == "json_put":
        return await client.update_draft("7", {"metadata": {"title": "x"}})
    return await client.get_draft("7")


@pytest.mark.parametrize("call", ["json_put", "get"])
async def test_the_rig_sees_aiohttp_resend_when_it_is_left_on(call: str) -> None:
    """Control: with aiohttp's own resend switched back on, the server does see a second
    request the client never heard of (so the tests above can fail)."""
    events: list[Event] = []
    async with serving(["ok", "drop"]) as (server, api), invenio_client(api, 1, events) as client:
        assert (await client.request("GET", client.url("records"))).status == 200
        client.session._retry_connection = True
        await send(client, call)  # aiohttp resent it on a new connection: it "worked"
    assert retries(events) == []
    assert len(server.seen) == 3 and server.seen[2].conn == 2, server.seen


async def test_our_retry_resends_a_content_put_from_byte_zero(tmp_path: Path) -> None:
    """The client's own retry resends the cut-off PUT, whole, from the first byte; the resend
    is one Retrying event, and the bytes count what went over the wire."""
    file = big_file(tmp_path)
    expected = hashlib.md5(file.path.read_bytes()).hexdigest()
    events: list[Event] = []
    async with serving(["ok", "cut"]) as (server, api), invenio_client(api, 3, events) as client:
        assert (await client.request("GET", client.url("records"))).status == 200
        body = file_body(client, file)
        resp = await client.put_content(f"{api}/files/big.bin/content", body, BIG)
    assert resp.status == 200 and resp.obj == {"received": BIG}
    first, second = server.heads("PUT", "/api/files/big.bin/content")
    assert first.received == CUT and (second.received, second.md5) == (BIG, expected)
    assert body.md5 == expected
    (retry,) = retries(events)
    assert (retry.method, retry.reason, retry.attempt) == ("PUT", "body cut", 1)
    c = client.counters
    assert (c.retries, dict(c.by_reason)) == (1, {"body cut": 1})
    taken_back = -sum(e.n for e in events if isinstance(e, BytesSent) and e.n < 0)
    assert CUT <= taken_back < BIG
    assert (c.bytes_sent, c.bytes_resent) == (BIG + taken_back, taken_back)
    assert c.to_json()["bytes_resent"] == taken_back


async def test_a_body_that_fails_is_not_taken_for_a_dropped_connection(tmp_path: Path) -> None:
    """aiohttp reports what the body raised as a connection error; the client raises the
    body's own error (a file that shrank while it was sent), and does not resend."""
    file = big_file(tmp_path)
    shrunk = LocalFile(file.key, file.path, BIG + CUT, file.mtime_ns)  # CUT bytes are missing
    events: list[Event] = []
    async with serving(["ok"]) as (server, api), invenio_client(api, 3, events) as client:
        with pytest.raises(UploaderError, match="file shrank while being uploaded") as caught:
            await client.put_content(
                f"{api}/files/big.bin/content", file_body(client, shrunk), BIG + CUT
            )
    assert not isinstance(caught.value, TransientApiError)
    assert retries(events) == [] and len(server.heads("PUT", "/api/files/big.bin/content")) == 1


async def test_a_refused_connection_is_not_sent_and_outlasts_the_budget() -> None:
    """Nothing listens: every attempt is NotSent (counted as "connect"), even a POST that is
    not idempotent is resent, and the last one becomes ServerUnreachable."""
    listener = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    listener.close()
    await listener.wait_closed()
    events: list[Event] = []
    async with invenio_client(f"http://127.0.0.1:{port}/api", 3, events) as client:
        with pytest.raises(ServerUnreachable) as caught:
            await client.create_draft({"metadata": {}})
    assert isinstance(caught.value, NotSent)
    assert [(e.reason, e.attempt) for e in retries(events)] == [("connect", 1), ("connect", 2)]
    assert "cannot connect" in str(caught.value) and "gave up after 3 attempts" in str(caught.value)
    assert "not sent" in str(caught.value)


async def test_a_post_that_may_have_arrived_is_not_resent() -> None:
    """A create whose connection dropped after it was sent is raised, not resent."""
    events: list[Event] = []
    async with serving(["ok", "drop"]) as (server, api), invenio_client(api, 5, events) as client:
        assert (await client.request("GET", client.url("records"))).status == 200
        with pytest.raises(NoAnswer) as caught:
            await client.create_draft({"metadata": {"title": "x"}})
    assert retries(events) == [] and len(server.heads("POST", "/api/records")) == 1
    assert "POST is not resent blindly" in str(caught.value)
    assert client.counters.gave_up == 1


async def test_start_up_check_refuses_an_aiohttp_it_cannot_tame(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match=r"aiohttp 3\.10\.11 is installed.*>= 3\.11"):
            disable_silent_resend(session, version="3.10.11")
        assert session._retry_connection is True  # untouched: the check came first
        disable_silent_resend(session, version="3.11.0b0")
        assert session._retry_connection is False
        del session._retry_connection  # as if a future aiohttp renamed it
        with pytest.raises(ConfigError, match=r"aiohttp 3\.99\.0 has no .*_retry_connection"):
            disable_silent_resend(session, version="3.99.0")
        # Assigned by someone, but no longer aiohttp's: still refused, not silently accepted.
        session._retry_connection = False
        declared = aiohttp.ClientSession.ATTRS - {"_retry_connection"}
        monkeypatch.setattr(aiohttp.ClientSession, "ATTRS", declared)
        with pytest.raises(ConfigError, match=r"has no ClientSession\._retry_connection"):
            disable_silent_resend(session)


async def test_the_client_switches_aiohttp_resend_off_itself() -> None:
    events: list[Event] = []
    async with invenio_client("http://127.0.0.1:9/api", 1, events) as client:
        assert client.session._retry_connection is False


# -- transfer.py's own resends, against the sandbox -----------------------------------------
SMALL = 3 * 256 * 1024 + 123  # four chunks


@pytest.mark.parametrize(
    ("rule", "resends"),
    [
        # the server stored other bytes: delete, init again, upload once more
        (
            {"route": "commit", "kind": "wrong_checksum", "on_calls": [1]},
            [("PUT", "checksum mismatch")],
        ),
        # commit 500, and 500 again a second later: the content is missing, PUT it again
        (
            {"route": "commit", "kind": "status", "status": 500, "on_calls": [1, 2]},
            [("POST", "HTTP 500"), ("PUT", "content missing")],
        ),
        # a commit 500 that passes: tried once more, no re-PUT
        (
            {"route": "commit", "kind": "status", "status": 500, "on_calls": [1]},
            [("POST", "HTTP 500")],
        ),
        # the PUT's content was not kept (its entry not found): looked up, PUT again
        (
            {"route": "content_put", "kind": "status", "status": 404, "on_calls": [1]},
            [("PUT", "content not kept")],
        ),
        # cut off mid-body: the client's retry sends it again from byte 0
        (
            {"route": "content_put", "kind": "drop_mid_body", "on_calls": [1], "fraction": 0.5},
            [("PUT", "body cut")],
        ),
        (
            {"route": "commit", "kind": "status", "status": 503, "on_calls": [1]},
            [("POST", "HTTP 503")],
        ),
    ],
    ids=["checksum", "content-missing", "commit-500-once", "not-kept", "body-cut", "commit-503"],
)
async def test_every_resend_of_an_upload_is_one_retrying_event(
    tmp_path: Path, rule: dict[str, object], resends: list[tuple[str, str]]
) -> None:
    from async_uploader.sandbox import Sandbox, SandboxConfig
    from async_uploader.transfer import FileUploader, entry_for
    from tests.conftest import filler, metadata

    path = tmp_path / "a.bin"
    path.write_bytes(filler(SMALL, seed=3))
    st = path.stat()
    file = LocalFile("a.bin", path, SMALL, st.st_mtime_ns)
    events: list[Event] = []
    async with Sandbox(SandboxConfig(faults={"rules": [rule]})) as sb:
        headers = {"Authorization": f"Bearer {sb.token}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            client = InvenioClient(
                session,
                api_url=f"{sb.url}/api",
                limiter=RateLimiter(RatePolicy(burst=100)),
                retry=RetryConfig(attempts=3, total_seconds=30, base_delay=0.01, max_delay=0.01),
                counters=Counters(),
                reporter=events.append,
                rand=lambda: 0.0,
            )
            draft = (await client.create_draft(metadata("Transport test"))).obj
            files_url = draft["links"]["files"]

            async def reinit(f: LocalFile) -> dict[str, object]:
                resp = await client.init_files(files_url, [{"key": f.key}])
                return entry_for(resp, f.key, "0")

            entry = await reinit(file)
            uploader = FileUploader(
                client,
                reinit,
                "0",
                256 * 1024,
                60.0,
                lambda key, n: client.report(BytesSent("0", key, n)),
            )
            state = await uploader.upload(file, entry)
            fired = sb.stats()["faults_per_kind"]
            (record,) = sb.records()
    assert sum(fired.values()) == len(rule.get("on_calls", [])), fired  # type: ignore[arg-type]
    assert state.md5 == hashlib.md5(path.read_bytes()).hexdigest()
    assert [f["md5"] for f in record["files"]] == [state.md5]
    got = [(e.method, e.reason) for e in retries(events)]
    if resends == [("PUT", "body cut")] and got == [("PUT", "no answer")]:
        # A race, not a miscount: a body this small may sit whole in the socket's buffers
        # before the server cuts the connection, and then the client rightly sees no answer.
        resends = got
    assert got == resends
    # The counters are what the events say.
    c = client.counters
    assert c.retries == len(got) and dict(c.by_reason) == {
        r: sum(1 for _, x in got if x == r) for _, r in got
    }
    taken_back = -sum(e.n for e in events if isinstance(e, BytesSent) and e.n < 0)
    assert c.bytes_resent == taken_back
    assert c.bytes_sent - c.bytes_resent == SMALL  # the one attempt that counted
    if ("PUT", "checksum mismatch") in got or ("PUT", "content missing") in got:
        assert c.bytes_resent == SMALL  # the whole file went out twice
    elif any(m == "PUT" for m, _ in got):  # the first PUT was cut off, or answered early
        assert 0 < c.bytes_resent <= SMALL
    else:
        assert c.bytes_resent == 0
