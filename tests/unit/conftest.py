"""Running a check as an unprivileged user: as root, permission bits are not enforced."""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def run_unprivileged(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child as user nobody: as root, permission bits are not enforced."""
    if os.geteuid() != 0:
        return fn()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        os.close(read_fd)
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            payload = pickle.dumps(("ok", fn()))
        except BaseException as exc:
            payload = pickle.dumps(("error", repr(exc)))
        with os.fdopen(write_fd, "wb") as pipe:
            pipe.write(payload)
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        status, value = pickle.loads(pipe.read())
    os.waitpid(pid, 0)
    assert status == "ok", value
    return value


@pytest.fixture
def open_tmp(tmp_path: Path) -> Iterator[Path]:
    """A directory user nobody can traverse (pytest's own tmp root is private to root)."""
    if os.geteuid() != 0:
        yield tmp_path
        return
    path = Path(tempfile.mkdtemp(prefix="discover-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub, dirs, _ in os.walk(path):
            for d in dirs:
                os.chmod(os.path.join(sub, d), 0o755)
        shutil.rmtree(path)
