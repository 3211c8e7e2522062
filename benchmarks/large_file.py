"""Benchmark 3: one large file: throughput against a raw streamed PUT, memory, CPU.

* Ceiling: create a draft and init the key with plain HTTP, then time only one PUT of the
  file streamed from disk in 1 MiB chunks with aiohttp (no hashing, no bookkeeping).
* Uploader: a 1-record batch through the library, timed whole (create to publish).
* Memory: the CLI as a subprocess, its RSS sampled every 50 ms with psutil, for two file
  sizes: the peak must stay under 100 MB and not grow with the file.
* CPU: the CLI subprocess's user+sys seconds per GiB (from ``RUSAGE_CHILDREN`` deltas)
  against ``md5sum`` of the same file (the uploader must hash it too).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import anyio
import psutil

from .harness import (
    ROOT,
    GiB,
    MiB,
    SandboxProcess,
    make_big_file,
    record_metadata,
    run_library,
    sandbox,
)
from .report import BenchResult, figure

KEY = "big.bin"
MEMORY_LIMIT_MB = 100.0
FLAT_MB = 10.0  # "flat": peak RSS grows by less than this from the small to the large file


def big_record(root: Path, size: int) -> Path:
    folder = root / f"{size // MiB}MiB" / "0"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "record_metadata.json").write_text(json.dumps(record_metadata(f"big {size}")))
    make_big_file(folder / KEY, size)
    return folder.parent


async def _raw_put(url: str, token: str, path: Path, size: int) -> float:
    """Seconds for one streamed PUT of ``path`` into a fresh draft (the ceiling)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.post(f"{url}/api/records", json=record_metadata("raw put")) as r:
            r.raise_for_status()
            draft = await r.json()
        async with session.post(draft["links"]["files"], json=[{"key": KEY}]) as r:
            r.raise_for_status()
            entry = next(e for e in (await r.json())["entries"] if e["key"] == KEY)

        async def chunks() -> AsyncIterator[bytes]:
            with path.open("rb") as fh:
                while chunk := fh.read(MiB):
                    yield chunk

        put_headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        t0 = time.perf_counter()
        async with session.put(entry["links"]["content"], data=chunks(), headers=put_headers) as r:
            await r.read()
            seconds = time.perf_counter() - t0
            r.raise_for_status()
        async with session.post(entry["links"]["commit"]) as r:
            r.raise_for_status()
    return seconds


def raw_put(sb: SandboxProcess, path: Path) -> float:
    return anyio.run(_raw_put, sb.url, sb.token, path, path.stat().st_size)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def cli_upload(records_dir: Path, sb: SandboxProcess, work: Path, tag: str) -> tuple[float, float]:
    """Run the CLI on a 1-record batch; (peak RSS in MB, user+sys CPU seconds)."""
    run_dir = work / f"cli-{tag}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "async_uploader", "upload", str(records_dir), "--url", sb.url]
    cmd += ["-q", "--links-file", str(run_dir / "links.json"), "--state-dir", str(run_dir / "st")]
    env = {**os.environ, "INVENIO_TOKEN": sb.token}
    cpu0 = _children_cpu()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, ps.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    _, err = proc.communicate()
    cpu = _children_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"CLI upload exited {proc.returncode}: {err.decode()[-2000:]}")
    return peak / 1e6, cpu


def md5sum_cpu(path: Path) -> float:
    cpu0 = _children_cpu()
    subprocess.run(["md5sum", str(path)], check=True, stdout=subprocess.DEVNULL)
    return _children_cpu() - cpu0


def run(work: Path, quick: bool, repeats: int) -> BenchResult:
    big = 64 * MiB if quick else GiB
    small = 16 * MiB if quick else 100 * MiB
    big_dir = big_record(work, big)
    small_dir = big_record(work, small)
    big_file = big_dir / "0" / KEY
    ratio, raw_rates, up_rates = [], [], []
    peaks_small, peaks_big, growth, cpu_gib, md5_gib, cpu_ratio = [], [], [], [], [], []
    with sandbox(discard_bytes=True) as sb:
        md5sum_cpu(big_file)  # warm the page cache for every contender alike
        for _ in range(repeats):
            raw_s = raw_put(sb, big_file)
            up_s, _ = run_library(big_dir, sb, work)
            raw_rates.append(big / raw_s / MiB)
            up_rates.append(big / up_s / MiB)
            ratio.append(raw_s / up_s)
            peak_s, _ = cli_upload(small_dir, sb, work, "small")
            peak_b, cpu_b = cli_upload(big_dir, sb, work, "big")
            md5 = md5sum_cpu(big_file)
            peaks_small.append(peak_s)
            peaks_big.append(peak_b)
            growth.append(peak_b - peak_s)
            cpu_gib.append(cpu_b / (big / GiB))
            md5_gib.append(md5 / (big / GiB))
            cpu_ratio.append(cpu_b / md5)
    size_b, size_s = f"{big // MiB} MiB", f"{small // MiB} MiB"
    return BenchResult(
        "large",
        f"one {size_b} file (sandbox discards the bytes)",
        (
            figure(
                "uploader / raw PUT throughput",
                "fraction",
                ratio,
                ">= 0.8",
                lambda v: v >= 0.8,
                note="uploader: the whole 1-record batch (create, init, PUT, commit, publish); "
                "raw: the PUT alone",
            ),
            figure("uploader throughput", "MiB/s", up_rates),
            figure("raw streamed PUT throughput", "MiB/s", raw_rates),
            figure(
                f"peak RSS, {size_b} file (CLI)",
                "MB",
                peaks_big,
                f"< {MEMORY_LIMIT_MB:.0f} MB",
                lambda v: v < MEMORY_LIMIT_MB,
            ),
            figure(f"peak RSS, {size_s} file (CLI)", "MB", peaks_small),
            figure(
                f"peak RSS growth {size_s} -> {size_b}",
                "MB",
                growth,
                f"< {FLAT_MB:.0f} MB (flat)",
                lambda v: v < FLAT_MB,
            ),
            figure(
                "uploader CPU per GiB (CLI, user+sys)",
                "s/GiB",
                cpu_gib,
                note="includes interpreter start-up and imports",
            ),
            figure("md5sum CPU per GiB", "s/GiB", md5_gib),
            figure("uploader CPU / md5sum CPU", "ratio", cpu_ratio),
        ),
        params={"file": size_b, "small_file": size_s, "chunk": "1 MiB", "discard_bytes": True},
        notes=(
            "Files are deterministic bytes generated once per run in a temp dir and are in "
            "the page cache for every contender (no disk reads measured).",
            "CPU seconds come from RUSAGE_CHILDREN deltas around each child process.",
        ),
    )
