"""State lock: one run per state directory, checked with real processes and real files."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from async_uploader.errors import ConfigError, StateLocked
from async_uploader.statelock import MODE_FILE, MODE_FLOCK, StateLock, _peek

REPO = Path(__file__).resolve().parents[2]
USE = {"flock": True, "file": False}

# A run in its own process: says "ready", waits for "go", tries the lock, reports, and holds
# it until its stdin closes.
RUN = """
import sys
from pathlib import Path
from async_uploader.errors import StateLocked
from async_uploader.statelock import StateLock
lock = StateLock(Path(sys.argv[1]), purpose=sys.argv[3], use_flock=sys.argv[2] == "flock")
print("ready", flush=True)
sys.stdin.readline()
try:
    lock.acquire()
except StateLocked as exc:
    print("refused", exc, flush=True)
    sys.exit(3)
print("acquired", lock.mode, flush=True)
sys.stdin.read()
lock.release()
"""


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        for stream in (p.stdin, p.stdout):
            if stream:
                stream.close()


def start(procs: list[subprocess.Popen[str]], state: Path, mode: str, purpose: str = "run"):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.Popen(
        [sys.executable, "-c", RUN, str(state), mode, purpose],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    procs.append(p)
    assert p.stdout and p.stdout.readline() == "ready\n"
    return p


def go(p: subprocess.Popen[str]) -> str:
    assert p.stdin and p.stdout
    p.stdin.write("go\n")
    p.stdin.flush()
    return p.stdout.readline().strip()


def hold(procs: list[subprocess.Popen[str]], state: Path, mode: str) -> subprocess.Popen[str]:
    p = start(procs, state, mode, "holder-purpose")
    assert go(p) == f"acquired {MODE_FLOCK if mode == 'flock' else MODE_FILE}"
    return p


def other_process_result(procs: list[subprocess.Popen[str]], state: Path, mode: str) -> str:
    return go(start(procs, state, mode))


def write_held(state: Path, age: float = 0, **info: object) -> Path:
    """A lock.held as another run would have left it, last refreshed ``age`` seconds ago."""
    state.mkdir(parents=True, exist_ok=True)
    path = state / "lock.held"
    content = {"host": socket.gethostname(), "pid": 1, "started": "2026-12-03T16:50:02+00:00"}
    path.write_text(json.dumps({**content, "purpose": "upload", "token": "theirs", **info}))
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("mode", ["flock", "file"])
def test_second_process_is_refused_with_the_holders_details(tmp_path, procs, mode) -> None:
    holder = hold(procs, tmp_path / "state", mode)
    result = other_process_result(procs, tmp_path / "state", mode)
    assert result.startswith(f"refused another run holds the state in {tmp_path / 'state'} (")
    assert f"pid {holder.pid} on host {socket.gethostname()}, started 20" in result
    assert "UTC, purpose 'holder-purpose'" in result
    assert result.endswith("wait for it to end, or stop it")
    assert procs[-1].wait(timeout=10) == 3


def test_a_sigkilled_holder_does_not_block_the_next_run(tmp_path, procs) -> None:
    holder = hold(procs, tmp_path, "flock")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=10)
    with StateLock(tmp_path, use_flock=True) as lock:
        assert lock.mode == MODE_FLOCK
        info = json.loads((tmp_path / "lock").read_text())
        assert (info["pid"], info["purpose"], info["mode"]) == (os.getpid(), "upload", "flock")


def test_flock_release_lets_another_process_in(tmp_path, procs) -> None:
    lock = StateLock(tmp_path, use_flock=True).acquire()
    assert other_process_result(procs, tmp_path, "flock").startswith("refused")
    lock.release()
    assert other_process_result(procs, tmp_path, "flock") == f"acquired {MODE_FLOCK}"


def test_a_second_lock_in_the_same_process_is_refused_too(tmp_path) -> None:
    with StateLock(tmp_path, use_flock=True), pytest.raises(StateLocked, match="another run"):
        StateLock(tmp_path, use_flock=True).acquire()


def test_dead_pid_on_this_host_is_taken_over(tmp_path) -> None:
    write_held(tmp_path, pid=dead_pid())
    with StateLock(tmp_path, use_flock=False) as lock:
        info = json.loads((tmp_path / "lock.held").read_text())
        assert (info["pid"], info["token"], info["mode"]) == (os.getpid(), lock.token, MODE_FILE)
    assert not (tmp_path / "lock.held").exists()


def test_live_pid_on_this_host_refuses_however_old(tmp_path, procs) -> None:
    live = start(procs, tmp_path / "unused", "file")
    write_held(tmp_path, age=10_000, pid=live.pid)
    with pytest.raises(StateLocked, match=f"pid {live.pid} on host"):
        StateLock(tmp_path, use_flock=False).acquire()


@pytest.mark.parametrize("age,taken", [(30, False), (601, True)])
def test_another_hosts_lock_is_stale_only_after_stale_after(tmp_path, age, taken) -> None:
    held = write_held(tmp_path, age=age, host="node7", pid=os.getpid())
    lock = StateLock(tmp_path, use_flock=False)
    if taken:
        lock.acquire()
        assert json.loads(held.read_text())["token"] == lock.token
        lock.release()
        return
    with pytest.raises(StateLocked) as refused:
        lock.acquire()
    message = str(refused.value)
    assert f"(pid {os.getpid()} on host node7, started 2026-12-03 16:50:02 UTC" in message
    assert "refreshed 30 s ago and counts as abandoned after 600 s" in message
    assert json.loads(held.read_text())["token"] == "theirs"


@pytest.mark.parametrize("age,taken", [(5, False), (601, True)])
def test_an_unreadable_lock_goes_by_its_age(tmp_path, age, taken) -> None:
    held = write_held(tmp_path, age=age)
    held.write_bytes(b'{"host": "no')  # torn: its writer died mid-write
    os.utime(held, (time.time() - age,) * 2)
    lock = StateLock(tmp_path, use_flock=False)
    if taken:
        assert lock.acquire().mode == MODE_FILE
    else:
        with pytest.raises(StateLocked, match="holder details unreadable"):
            lock.acquire()


def test_a_takeover_in_progress_is_not_raced(tmp_path) -> None:
    held = write_held(tmp_path, age=10_000, host="node7")
    (tmp_path / "lock.takeover").touch()  # another contender is replacing the stale lock
    with pytest.raises(StateLocked):
        StateLock(tmp_path, use_flock=False).acquire()
    assert json.loads(held.read_text())["token"] == "theirs"
    # A marker left by a contender that died mid-takeover is itself stale after a while.
    os.utime(tmp_path / "lock.takeover", (time.time() - 601,) * 2)
    assert StateLock(tmp_path, use_flock=False).acquire().mode == MODE_FILE
    assert not (tmp_path / "lock.takeover").exists()


def test_concurrent_takeovers_of_a_stale_lock_have_one_winner(tmp_path, procs) -> None:
    write_held(tmp_path, age=10_000, host="node7")
    runs = [start(procs, tmp_path, "file") for _ in range(5)]
    for p in runs:
        assert p.stdin
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.stdout.readline().split()[0] for p in runs if p.stdout]
    assert sorted(results) == ["acquired"] + ["refused"] * 4


def test_release_removes_only_our_own_lock_file(tmp_path) -> None:
    lock = StateLock(tmp_path, use_flock=False).acquire()
    held = write_held(tmp_path, host="node7")  # ours was taken over while we stalled
    lock.release()
    assert json.loads(held.read_text())["token"] == "theirs"
    held.unlink()
    StateLock(tmp_path, use_flock=False).acquire().release()
    assert not held.exists()


@pytest.mark.parametrize("mode", ["flock", "file"])
def test_release_is_idempotent(tmp_path, procs, mode) -> None:
    lock = StateLock(tmp_path, use_flock=USE[mode])
    lock.release()  # never acquired
    lock.acquire()
    lock.release()
    lock.release()
    other = StateLock(tmp_path, use_flock=USE[mode]).acquire()  # must not be released by ...
    lock.release()  # ... a stale handle's extra release
    assert other_process_result(procs, tmp_path, mode).startswith("refused")
    other.release()
    assert lock.acquire().mode is not None
    lock.release()


@pytest.mark.parametrize("mode", ["flock", "file"])
def test_context_manager_releases_on_exceptions(tmp_path, procs, mode) -> None:
    with pytest.raises(ZeroDivisionError), StateLock(tmp_path, use_flock=USE[mode]):
        assert other_process_result(procs, tmp_path, mode).startswith("refused")
        1 / 0  # noqa: B018
    assert other_process_result(procs, tmp_path, mode).startswith("acquired")


def test_refresh_keeps_the_lock_fresh_and_notices_a_takeover(tmp_path) -> None:
    lock = StateLock(tmp_path, use_flock=False, stale_after=100).acquire()
    assert lock.refresh_interval == 10
    held = tmp_path / "lock.held"
    os.utime(held, (time.time() - 90,) * 2)
    lock.refresh()
    assert time.time() - held.stat().st_mtime < 5
    write_held(tmp_path, host="node7")
    with pytest.raises(StateLocked, match=r"lost the lock .* now held by pid 1 on host node7"):
        lock.refresh()
    assert StateLock(tmp_path).refresh_interval == 60
    with StateLock(tmp_path / "f", use_flock=True) as flocked:
        flocked.refresh()  # flock: nothing to do, the kernel knows the holder is alive


def test_falls_back_where_the_file_system_cannot_flock(tmp_path, monkeypatch) -> None:
    def no_flock(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with StateLock(tmp_path / "auto") as lock:
        assert lock.mode == MODE_FILE
        assert (tmp_path / "auto" / "lock.held").exists()
    with pytest.raises(ConfigError, match="No locks available"):
        StateLock(tmp_path / "forced", use_flock=True).acquire()


def test_creates_the_directory_and_reports_an_unusable_one(tmp_path) -> None:
    with StateLock(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / "lock").is_file()
    (tmp_path / "file").touch()
    with pytest.raises(ConfigError, match="cannot lock the state in"):
        StateLock(tmp_path / "file").acquire()


def test_a_takeover_rechecks_the_file_it_judged_stale(tmp_path) -> None:
    held = write_held(tmp_path, age=10_000, host="node7")
    judged = _peek(held)  # a slow contender judged this file stale ...
    assert judged is not None
    winner = StateLock(tmp_path, use_flock=False).acquire()  # ... then a faster one took over
    assert not StateLock(tmp_path, use_flock=False)._take_over(judged)
    assert json.loads(held.read_text())["token"] == winner.token
    assert not (tmp_path / "lock.takeover").exists()
    winner.release()
