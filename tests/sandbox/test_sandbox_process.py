"""The sandbox as a separate process: the CLI entry, and flat memory under a 2 GiB upload."""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import anyio
import psutil
import pytest

TOKEN = "process-test-token"


@contextmanager
def sandbox_process(*extra: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "async_uploader.sandbox", "--port", "0", "--token", TOKEN, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_cli_starts_answers_and_stops_on_sigterm() -> None:
    with sandbox_process("--profile", "zenodo") as (proc, url):
        assert proc.stdout is not None
        rest = [proc.stdout.readline() for _ in range(2)]
        assert any(TOKEN in line for line in rest)
        with urllib.request.urlopen(f"{url}/api/records?size=1", timeout=10) as resp:
            assert resp.status == 200
            assert json.loads(resp.read())["hits"]["total"] == 0
            assert resp.headers["X-RateLimit-Limit"] == "100"  # zenodo profile's default
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_cli_refuses_bad_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "async_uploader.sandbox", "--rate-limit", "often"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2 and "bad rate limit" in result.stderr


SIZE = 2 * 1024**3
CHUNK = b"\x5a" * (1024 * 1024)


async def _stream(md5: hashlib._Hash) -> AsyncIterator[bytes]:
    for _ in range(SIZE // len(CHUNK)):
        md5.update(CHUNK)
        yield CHUNK


async def _upload_2gib(url: str) -> tuple[dict[str, object], str]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as s:
        body = {"metadata": {"title": "big"}, "files": {"enabled": True}}
        async with s.post(f"{url}/api/records", json=body) as r:
            draft = await r.json()
        async with s.post(draft["links"]["files"], json=[{"key": "big.bin"}]) as r:
            entry = (await r.json())["entries"][0]
        md5 = hashlib.md5()
        put_headers = {"Content-Type": "application/octet-stream", "Content-Length": str(SIZE)}
        async with s.put(entry["links"]["content"], data=_stream(md5), headers=put_headers) as r:
            assert r.status == 200, await r.text()
        async with s.post(entry["links"]["commit"]) as r:
            done = await r.json()
        return done, md5.hexdigest()


@pytest.mark.slow
def test_two_gib_upload_keeps_rss_flat() -> None:
    with sandbox_process() as (proc, url):
        server = psutil.Process(proc.pid)
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(server.memory_info().rss)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            done, md5 = anyio.run(_upload_2gib, url)
        finally:
            stop.set()
            sampler.join()
        assert done["size"] == SIZE and done["checksum"] == f"md5:{md5}"
        peak_mb = max(samples) / 1024**2
        print(
            f"\nsandbox peak RSS during a 2 GiB upload: {peak_mb:.1f} MB ({len(samples)} samples)"
        )
        assert peak_mb < 150
