"""Shared fixtures: record trees on disk, the sandbox server, running the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEED_RECORDS = ROOT.parent / "shared" / "seed-records"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def private_state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Per-user state (read-only record folders) goes to the test's own folder, also for
    the CLI processes the tests start (they inherit the environment)."""
    home = tmp_path / "xdg-state"
    monkeypatch.setenv("XDG_STATE_HOME", str(home))
    return home


def metadata(title: str, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "access": {"record": "public", "files": "public"},
        "files": {"enabled": True},
        "metadata": {
            "title": title,
            "resource_type": {"id": "dataset"},
            "publication_date": "2026-11-26",
            "publisher": "async-uploader tests",
            "description": f"Test record {title}",
            "creators": [
                {
                    "person_or_org": {
                        "type": "personal",
                        "family_name": "Lovelace",
                        "given_name": "Ada",
                    }
                }
            ],
        },
    }
    body["metadata"].update(extra)  # type: ignore[union-attr]
    return body


RecordFactory = Callable[..., Path]


def journal_dir(root: Path, url: str) -> Path:
    """Where a run against ``url`` keeps the journal of the records folder ``root``."""
    from async_uploader.state import server_folder

    return server_folder(root / ".upload_state", url)


def filler(size: int, seed: int = 0) -> bytes:
    """Deterministic, folder-specific bytes (so identical files do not hide mix-ups)."""
    block = bytes((seed * 7 + j) % 251 for j in range(4096))
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def make_records(tmp_path: Path) -> RecordFactory:
    """Write ``n`` record folders under tmp_path/records; returns the root.

    ``files`` maps key -> bytes (or an int size for deterministic filler bytes).
    """

    def make(
        n: int = 3,
        files: dict[str, bytes | int] | None = None,
        root: Path | None = None,
        title: str = "Simulation run",
    ) -> Path:
        base = root or tmp_path / "records"
        files = files if files is not None else {"data.csv": b"a,b\n1,2\n", "out/log.txt": 300}
        for i in range(n):
            folder = base / str(i)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "record_metadata.json").write_text(json.dumps(metadata(f"{title} {i}")))
            for key, content in files.items():
                path = folder / key
                path.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, int):
                    content = filler(content, seed=i)
                path.write_bytes(content)
        return base

    return make


@pytest.fixture
def sandbox_thread() -> Iterator[object]:
    """A sandbox served from a background thread (for tests that run the CLI as a process)."""
    from async_uploader.sandbox import Sandbox, SandboxConfig

    with Sandbox.in_thread(SandboxConfig()) as sb:
        yield sb


def cli_env(token: str | None) -> dict[str, str]:
    """This process's environment without server settings, plus the token if given."""
    env = {k: v for k, v in os.environ.items() if k not in ("INVENIO_TOKEN", "INVENIO_URL")}
    if token is not None:
        env["INVENIO_TOKEN"] = token
    return env


def run_cli(
    args: Sequence[str], *, token: str | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m async_uploader ARGS`` to completion, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "async_uploader", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(token),
        cwd=ROOT,
        check=False,
    )


def start_cli(args: Sequence[str], token: str) -> subprocess.Popen[str]:
    """Start the CLI without waiting (for tests that signal or kill it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "async_uploader", *args],
        cwd=ROOT,
        env=cli_env(token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
