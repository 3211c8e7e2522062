"""Constant memory whatever the file size: the uploader's peak RSS for a 1 GiB file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT, metadata

pytestmark = pytest.mark.slow


def start_sandbox(token: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "async_uploader.sandbox",
            "--port",
            "0",
            "--token",
            token,
            "--discard-bytes",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "http://127.0.0.1:" in line:
            url = line[line.index("http://") :].split()[0].rstrip("/")
            return proc, url
    raise AssertionError(f"sandbox did not start: {proc.stderr.read() if proc.stderr else ''}")


def peak_rss_of(cmd: list[str], env: dict[str, str]) -> tuple[int, int, str]:
    proc = psutil.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    out, err = proc.communicate()
    return proc.returncode, peak, out + err


def test_one_gib_file_uploads_in_constant_memory(tmp_path: Path) -> None:
    root = tmp_path / "records"
    (root / "0").mkdir(parents=True)
    (root / "0" / "record_metadata.json").write_text(json.dumps(metadata("One big file")))
    with open(root / "0" / "big.bin", "wb") as fh:  # sparse: every byte is still read and hashed
        fh.truncate(1024**3)
    token = "memory-test-token"
    sandbox, url = start_sandbox(token)
    try:
        env = dict(os.environ, INVENIO_TOKEN=token)
        code, peak, output = peak_rss_of(
            [sys.executable, "-m", "async_uploader", "upload", str(root), "--url", url, "-q"], env
        )
    finally:
        sandbox.terminate()
        sandbox.communicate(timeout=30)
    assert code == 0, output
    assert "published" in output
    print(f"uploader peak RSS for a 1 GiB file: {peak / 2**20:.1f} MiB")
    assert peak < 100 * 10**6
