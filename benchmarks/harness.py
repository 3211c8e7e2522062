"""Shared plumbing: the sandbox in its own process, the machine description, record trees.

The sandbox runs as ``python -m async_uploader.sandbox`` in a separate process so that the
server and the uploader under test never share one event loop or one CPU core (the numbers
would otherwise measure the server's CPU as the uploader's).
"""

from __future__ import annotations

import json
import os
import platform
import random
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
URL_RE = re.compile(r"(http://127\.0\.0\.1:\d+)")
MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass
class SandboxProcess:
    """A sandbox server in a child process; ``url``/``token`` are set once it listens."""

    latency_ms: float = 0.0
    rate_limit: str | None = None
    discard_bytes: bool = True
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    url: str = ""
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "async_uploader.sandbox", "--port", "0"]
        # "--token=…": a random token may begin with "-", which argparse takes for an option
        cmd += [f"--token={self.token}", "--latency", str(self.latency_ms)]
        if self.rate_limit:
            cmd += ["--rate-limit", self.rate_limit]
        if self.discard_bytes:
            cmd.append("--discard-bytes")
        return cmd

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            self.command(),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        found = threading.Event()

        def drain() -> None:
            # Hazard: an undrained pipe would block the server once its buffer fills.
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.replace(self.token, "<token>").rstrip())
                match = URL_RE.search(line)
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()
            found.set()

        threading.Thread(target=drain, name="sandbox-stdout", daemon=True).start()
        if not found.wait(timeout) or not self.url:
            self.stop()
            tail = "\n".join(self.output[-20:])
            raise RuntimeError(f"the sandbox did not start (no URL on its stdout):\n{tail}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _admin(self, method: str, path: str) -> dict[str, Any]:
        req = urllib.request.Request(
            self.url + path,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            data: dict[str, Any] = json.loads(resp.read())
        return data

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "/_sandbox/stats")

    def reset_stats(self) -> None:
        self._admin("POST", "/_sandbox/stats/reset")


@contextmanager
def sandbox(
    latency_ms: float = 0.0, rate_limit: str | None = None, discard_bytes: bool = True
) -> Iterator[SandboxProcess]:
    sb = SandboxProcess(latency_ms, rate_limit, discard_bytes)
    sb.start()
    try:
        yield sb
    finally:
        sb.stop()


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean little without it)."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        import psutil

        mem = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cores": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "aiohttp": version("aiohttp"),
        "anyio": version("anyio"),
        "async_uploader": version("async-uploader"),
    }


def record_metadata(title: str) -> dict[str, Any]:
    return {
        "access": {"record": "public", "files": "public"},
        "files": {"enabled": True},
        "metadata": {
            "title": title,
            "resource_type": {"id": "dataset"},
            "publication_date": "2025-01-01",
            "description": f"Benchmark record {title}",
            "creators": [
                {"person_or_org": {"type": "personal", "family_name": "Bench", "given_name": "M"}}
            ],
        },
    }


def make_records(root: Path, n: int, files: int, size: int, prefix: str = "bench") -> Path:
    """``n`` record folders of ``files`` data files of ``size`` deterministic bytes each."""
    rng = random.Random(f"{prefix}:{n}:{files}:{size}")
    block = rng.randbytes(max(size, 1))
    for i in range(n):
        folder = root / str(i)
        folder.mkdir(parents=True, exist_ok=True)
        meta = json.dumps(record_metadata(f"{prefix} {i}"))
        (folder / "record_metadata.json").write_text(meta, encoding="utf-8")
        for j in range(files):
            stamp = f"{i}:{j}:".encode()
            (folder / f"data_{j}.bin").write_bytes((stamp + block)[:size])
    return root


def make_big_file(path: Path, size: int, chunk: int = MiB) -> Path:
    """Deterministic bytes written in ``chunk`` pieces (never the whole file in memory)."""
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = random.Random(size).randbytes(chunk)
    with path.open("wb") as fh:
        written = 0
        i = 0
        while written < size:
            piece = (i.to_bytes(8, "big") + block[8:])[: size - written]
            fh.write(piece)
            written += len(piece)
            i += 1
    return path


class Stopwatch:
    """``with Stopwatch() as sw: ...; sw.seconds`` (monotonic, high resolution)."""

    seconds: float = 0.0

    def __enter__(self) -> Stopwatch:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def bench_config(records_dir: Path, sb: SandboxProcess, work: Path, **settings: Any) -> Any:
    """The UploadConfig of one benchmark run: a fresh state, a new batch."""
    from async_uploader import UploadConfig

    run_dir = Path(work) / f"run-{secrets.token_hex(4)}"
    settings.setdefault("new_batch", True)
    return UploadConfig(
        base_url=sb.url,
        token=sb.token,
        records_dir=records_dir,
        links_file=run_dir / "links.json",
        state_dir=run_dir / "state",
        **settings,
    )


def run_library(
    records_dir: Path, sb: SandboxProcess, work: Path, **settings: Any
) -> tuple[float, Any]:
    """One batch through the library ``upload_records`` in this process; (wall s, result).

    Each call gets a fresh journal and links file and says it is a new batch (no look-up of
    the records an earlier repeat published), so every run uploads everything again.
    """
    from async_uploader import upload_records_sync

    config = bench_config(records_dir, sb, work, **settings)
    with Stopwatch() as sw:
        result = upload_records_sync(config)
    if result.exit_code != 0:
        bad = [r for r in result.records if not r.outcome.ok][:3]
        raise RuntimeError(f"upload failed (exit {result.exit_code}): {result.fatal or bad}")
    return sw.seconds, result
