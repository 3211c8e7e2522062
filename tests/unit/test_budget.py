"""Shared rate budget: the pure GCRA booking as tables, the file shell with real files and
real processes (booked times are checked, never measured durations)."""

from __future__ import annotations

import errno
import fcntl
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from async_uploader import budget
from async_uploader.budget import (
    DEPTH,
    LIMIT_TTL,
    MAX_MEMBERS,
    MAX_PAUSE,
    MEMBER_TTL,
    SLACK,
    BudgetState,
    SharedLimit,
    SharedSchedule,
    active_members,
    add_limit,
    add_pause,
    announce,
    book,
    budget_dir,
    budget_key,
    budget_path,
    current_limit,
    decode,
    encode,
    open_shared_schedule,
    settle,
)
from tests.unit.conftest import run_unprivileged

REPO = Path(__file__).resolve().parents[2]
NOW = 1_700_000_000.0
KEY = budget_key("https://archive.example:443", "async-uploader/1.0", "default")


def members(*ages: float) -> tuple[tuple[str, float], ...]:
    return tuple((f"p{i}", NOW - age) for i, age in enumerate(ages))


# -- pure booking ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "interval", "start", "tat"),
    [
        (BudgetState(), 1.0, NOW, NOW + 1),  # nothing booked: go now
        (BudgetState(tat=NOW - 50), 1.0, NOW, NOW + 1),  # idle: no credit saved up
        (BudgetState(tat=NOW + 0.5), 1.0, NOW + 0.5, NOW + 1.5),  # queue behind the last
        (BudgetState(tat=NOW + 1, pause_until=NOW + 5), 1.0, NOW + 5, NOW + 6),  # paused
        (BudgetState(tat=NOW + 3, pause_until=NOW + 2), 1.0, NOW + 3, NOW + 4),  # booked past it
        (BudgetState(tat=NOW + 2, pause_until=NOW - 9), 1.0, NOW + 2, NOW + 3),  # pause over
        (BudgetState(tat=NOW + 2), 0.0, NOW + 2, NOW + 2),  # no rate of ours: still queue
        (BudgetState(tat=NOW + 1e9), 1.0, NOW, NOW + 1),  # garbage far ahead: reset
        (BudgetState(tat=NOW + DEPTH + SLACK), 1.0, NOW + DEPTH + SLACK, NOW + DEPTH + SLACK + 1),
        (BudgetState(tat=NOW + DEPTH + SLACK + 1), 1.0, NOW, NOW + 1),  # beyond the horizon
        # three members: the horizon widens to interval * DEPTH * 4 + SLACK
        (BudgetState(tat=NOW + 4 * DEPTH + SLACK, members=members(0, 1, 2)), 1.0,
         NOW + 4 * DEPTH + SLACK, NOW + 4 * DEPTH + SLACK + 1),
        (BudgetState(tat=NOW + 4 * DEPTH + SLACK, members=members(0, 1, 999)), 1.0, NOW, NOW + 1),
    ],
)  # fmt: skip
def test_book(state: BudgetState, interval: float, start: float, tat: float) -> None:
    after, got = book(state, NOW, interval)
    assert (got, after.tat) == (start, tat)
    assert after.pause_until == state.pause_until and after.members == state.members


def test_bookings_at_one_instant_are_spaced_by_the_interval() -> None:
    state, starts = BudgetState(), []
    for _ in range(100):
        state, start = book(state, NOW, 0.25)
        starts.append(start)
    assert starts == [NOW + 0.25 * i for i in range(100)]


@pytest.mark.parametrize("interval", [-1.0, float("nan"), float("inf")])
def test_book_refuses_a_meaningless_interval(interval: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        book(BudgetState(), NOW, interval)


@pytest.mark.parametrize(
    ("stored", "until", "kept"),
    [
        (0.0, NOW + 5, NOW + 5),
        (NOW + 9, NOW + 5, NOW + 9),  # the later pause wins
        (NOW + 5, NOW + 9, NOW + 9),
        (0.0, NOW + 3600, NOW + MAX_PAUSE),  # stored no further than others trust
    ],
)
def test_add_pause(stored: float, until: float, kept: float) -> None:
    assert add_pause(BudgetState(pause_until=stored), until, NOW).pause_until == kept


def limit_at(count: int, window: float, age: float = 0.0) -> SharedLimit:
    return SharedLimit(count, window, NOW - age)


@pytest.mark.parametrize(
    ("old", "new", "kept"),
    [
        (None, (100, 60.0), (100, 60.0)),
        (limit_at(100, 60.0), (10, 60.0), (10, 60.0)),  # stricter replaces
        (limit_at(10, 60.0), (100, 60.0), (10, 60.0)),  # laxer waits while the old is fresh
        (limit_at(100, 60.0), (5000, 3600.0), (5000, 3600.0)),  # per hour is stricter here
        (limit_at(100, 60.0), (0, 60.0), (100, 60.0)),  # nonsense ignored
        (limit_at(100, 60.0), (10, 0.0), (100, 60.0)),
        (None, (10, float("nan")), None),
    ],
)
def test_add_limit(
    old: SharedLimit | None, new: tuple[int, float], kept: tuple[int, float] | None
) -> None:
    assert current_limit(add_limit(BudgetState(limit=old), *new, NOW)) == kept


def test_a_laxer_limit_wins_once_the_stricter_one_expired() -> None:
    state = settle(BudgetState(limit=limit_at(10, 60.0, age=LIMIT_TTL + 1)), NOW)
    assert current_limit(add_limit(state, 100, 60.0, NOW)) == (100, 60.0)


@pytest.mark.parametrize(
    ("state", "pause", "limit", "kept_members"),
    [
        (BudgetState(pause_until=NOW + MAX_PAUSE), NOW + MAX_PAUSE, None, ()),
        (BudgetState(pause_until=NOW + MAX_PAUSE + 1), 0.0, None, ()),  # distrusted
        (BudgetState(limit=limit_at(10, 1.0, age=LIMIT_TTL - 1)), 0.0, (10, 1.0), ()),
        (BudgetState(limit=limit_at(10, 1.0, age=LIMIT_TTL + 1)), 0.0, None, ()),  # too old
        (BudgetState(limit=limit_at(10, 1.0, age=-SLACK - 1)), 0.0, None, ()),  # from the future
        (BudgetState(members=members(0, MEMBER_TTL - 1, MEMBER_TTL + 1, -SLACK - 1)), 0.0, None,
         ("p0", "p1")),
    ],
)  # fmt: skip
def test_settle(
    state: BudgetState, pause: float, limit: tuple[int, float] | None, kept_members: tuple[str]
) -> None:
    settled = settle(state, NOW)
    assert settled.pause_until == pause
    assert current_limit(settled) == limit
    assert tuple(m for m, _ in settled.members) == kept_members


@pytest.mark.parametrize(
    ("ages", "within", "count"),
    [((), 60.0, 0), ((0, 59, 61), 60.0, 2), ((0, 59, 61), 10.0, 1), ((5, 500), 600.0, 2)],
)
def test_active_members(ages: tuple[float, ...], within: float, count: int) -> None:
    assert active_members(BudgetState(members=members(*ages)), NOW, within) == count


def test_announce_refreshes_and_keeps_the_member_table_small() -> None:
    state = BudgetState(members=members(*range(MAX_MEMBERS)))
    state = announce(announce(state, "p3", NOW), "new", NOW)
    assert len(state.members) == MAX_MEMBERS
    assert dict(state.members)["p3"] == NOW and dict(state.members)["new"] == NOW
    assert f"p{MAX_MEMBERS - 1}" not in dict(state.members)  # the longest silent left


# -- the file format ------------------------------------------------------------------------
FULL = BudgetState(
    tat=NOW + 0.1, pause_until=NOW + 3, limit=limit_at(100, 60.0), members=members(0, 1.5)
)


def test_encode_decode_round_trip() -> None:
    assert decode(encode(FULL)) == FULL
    assert decode(encode(BudgetState())) == BudgetState()
    assert json.loads(encode(FULL))["limit"] == [100, 60.0, NOW]


@pytest.mark.parametrize(
    ("raw", "state"),
    [
        (b"", BudgetState()),
        (b"\0\0\0\0", BudgetState()),
        (b"\xff\xfe{", BudgetState()),
        (encode(FULL)[:25], BudgetState()),  # truncated
        (b"null", BudgetState()),
        (b"[1, 2]", BudgetState()),
        (b'{"tat": "soon", "pause": true}', BudgetState()),
        (b'{"tat": NaN, "pause": Infinity}', BudgetState()),
        (b'{"tat": 1e999, "pause": -1e999}', BudgetState()),
        (b'{"tat": 1' + b"0" * 400 + b"}", BudgetState()),  # too big for a float
        (b'{"tat": 5, "limit": [0, 60, 5]}', BudgetState(tat=5.0)),
        (b'{"limit": [true, 60, 5]}', BudgetState()),
        (b'{"limit": [10, -60, 5]}', BudgetState()),
        (b'{"limit": [10, 60]}', BudgetState()),
        (b'{"limit": [10, 60, 5]}', BudgetState(limit=SharedLimit(10, 60.0, 5.0))),
        (b'{"members": {"a": 1, "b": "x", "c": null}}', BudgetState(members=(("a", 1.0),))),
        (b'{"members": {"' + b"x" * 65 + b'": 1}}', BudgetState()),
        (b'{"members": [1, 2]}', BudgetState()),
        (encode(FULL) + b'ale": 1}}', FULL),  # a writer killed before its ftruncate
    ],
)
def test_decode_never_raises(raw: bytes, state: BudgetState) -> None:
    assert decode(raw) == state


# -- where the file lives -------------------------------------------------------------------
def test_budget_key_and_path() -> None:
    keys = {
        budget_key("https://a.example:443", "ua/1", "default"),
        budget_key("https://b.example:443", "ua/1", "default"),
        budget_key("https://a.example:443", "ua/2", "default"),
        budget_key("https://a.example:443", "ua/1", "search"),
    }
    assert len(keys) == 4
    assert budget_key("https://a.example:443/", "ua/1") == budget_key(
        "https://a.example:443", "ua/1"
    )
    path = budget_path(KEY, Path("/x"))
    assert path.parent == Path("/x") and path.name.endswith(".v1.json") and len(path.stem) == 35
    assert path == budget_path(KEY, Path("/x"))


def test_budget_dir(tmp_path: Path) -> None:
    fallback = Path(f"/tmp/async-uploader-{os.geteuid()}/budgets")
    assert budget_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "async-uploader/budgets"
    assert budget_dir({}) == fallback
    assert budget_dir({"XDG_RUNTIME_DIR": "run/user"}) == fallback  # relative: ignored
    assert budget_dir({"XDG_RUNTIME_DIR": str(tmp_path / "gone")}) == fallback


# -- the file shell -------------------------------------------------------------------------
def shared(tmp_path: Path, **kwargs: float) -> SharedSchedule:
    schedule = open_shared_schedule(KEY, directory=tmp_path / "budgets", **kwargs)
    assert schedule is not None
    return schedule


def test_two_schedules_on_one_file_share_bookings_pause_limit_and_members(
    tmp_path: Path,
) -> None:
    with shared(tmp_path) as a, shared(tmp_path) as b:
        assert a.path == b.path and a.member != b.member
        assert [a.reserve(NOW, 0.5), b.reserve(NOW, 0.5), a.reserve(NOW, 0.5)] == [
            NOW,
            NOW + 0.5,
            NOW + 1.0,
        ]
        b.pause(NOW + 10, NOW)
        assert a.reserve(NOW + 1, 0.5) == NOW + 10
        assert a.read_limit(NOW) is None
        assert b.share_limit(100, 60.0, NOW) == (100, 60.0)
        assert a.read_limit(NOW + LIMIT_TTL - 1) == (100, 60.0)
        assert a.read_limit(NOW + LIMIT_TTL + 1) is None
        assert b.read_limit(NOW + LIMIT_TTL + 1) is None
        assert a.members(NOW + LIMIT_TTL + 2) == 2  # both called within the last minute
        b.close()
        assert a.members(NOW + LIMIT_TTL + 3) == 1
        assert a.fallbacks == b.fallbacks == 0
    assert (tmp_path / "budgets").stat().st_mode & 0o777 == 0o700
    assert a.path.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage\n", encode(FULL)[:30], b"\0" * 70000, encode(BudgetState(tat=NOW + 1e7))],
)
def test_a_bad_file_is_read_as_empty_and_rewritten(tmp_path: Path, content: bytes) -> None:
    with shared(tmp_path) as schedule:
        schedule.path.write_bytes(content)
        assert schedule.reserve(NOW, 1.0) == NOW
        state = decode(schedule.path.read_bytes())
        assert state.tat == NOW + 1 and dict(state.members) == {schedule.member: NOW}
        assert json.loads(schedule.path.read_bytes())["tat"] == NOW + 1  # no stale tail
        assert schedule.fallbacks == 0


def test_a_stopped_lock_holder_stalls_no_one(tmp_path: Path) -> None:
    with shared(tmp_path, lock_wait=0.01) as schedule:
        assert schedule.reserve(NOW, 1.0) == NOW
        with open(schedule.path, "rb") as holder:  # another open file description
            fcntl.flock(holder, fcntl.LOCK_EX)
            # Decided on its own copy: it still spaces its own requests.
            assert schedule.reserve(NOW, 1.0) == NOW + 1
            assert schedule.fallbacks == 1
        assert schedule.reserve(NOW, 1.0) == NOW + 1  # the file never saw the fallback
        assert schedule.fallbacks == 1


def test_a_forked_child_locks_on_its_own_file_description(tmp_path: Path) -> None:
    with shared(tmp_path) as schedule:
        assert schedule.reserve(NOW, 1.0) == NOW
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: never return into pytest
            try:
                start = schedule.reserve(NOW, 1.0)
                os.write(write_fd, json.dumps([start, schedule.member]).encode())
            finally:
                os._exit(0)
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            start, member = json.loads(pipe.read())
        os.waitpid(pid, 0)
        assert start == NOW + 1 and member != schedule.member
        assert schedule.reserve(NOW, 1.0) == NOW + 2
        assert schedule.members(NOW) == 2


def test_no_shared_schedule_under_a_regular_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert open_shared_schedule(KEY, directory=tmp_path / "file" / "budgets") is None


def test_no_shared_schedule_in_a_directory_we_cannot_write(open_tmp: Path) -> None:
    locked = open_tmp / "locked"
    locked.mkdir(mode=0o500)
    directory = locked / "budgets"
    assert run_unprivileged(lambda: open_shared_schedule(KEY, directory=directory) is None)


def test_no_shared_schedule_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert open_shared_schedule(KEY, directory=tmp_path / "link") is None


@pytest.mark.parametrize("code", [errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL])
def test_no_shared_schedule_where_flock_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    def refuse(fd: int, operation: int) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(budget.fcntl, "flock", refuse)
    assert open_shared_schedule(KEY, directory=tmp_path / "budgets") is None


# -- real processes -------------------------------------------------------------------------
# A process that books SLOTS requests in rounds, as an uploader's concurrent tasks would: each
# round books GROUP at once, and sleeps until the last booked time. Then it prints them.
# All start at the time the test sends.
WORKER = """
import json, sys, time
from pathlib import Path
from async_uploader.budget import open_shared_schedule
schedule = open_shared_schedule(sys.argv[1], directory=Path(sys.argv[2]))
slots, interval, group = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print("ready", flush=True)
time.sleep(max(0.0, float(sys.stdin.readline()) - time.time()))  # start together
starts = []
while len(starts) < slots:
    for _ in range(min(group, slots - len(starts))):
        starts.append(schedule.reserve(time.time(), interval))
    time.sleep(max(0.0, starts[-1] - time.time()))
print(json.dumps({"starts": starts, "fallbacks": schedule.fallbacks}), flush=True)
"""


def test_processes_sharing_a_file_never_book_closer_than_the_interval(tmp_path: Path) -> None:
    procs, slots, interval, group = 4, 50, 0.004, 10
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [KEY, str(tmp_path / "budgets"), str(slots), str(interval), str(group)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(procs)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
        go = time.time() + 0.05
        for worker in workers:  # all start booking at once
            assert worker.stdin is not None
            worker.stdin.write(f"{go}\n")
            worker.stdin.flush()
        reports = [json.loads(worker.communicate(timeout=60)[0]) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert [report["fallbacks"] for report in reports] == [0] * procs
    starts = sorted(start for report in reports for start in report["starts"])
    assert len(starts) == procs * slots
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= interval - 1e-6  # epoch floats carry ~2e-7 s of rounding
    assert all(len(report["starts"]) == slots for report in reports)
    assert time.time() >= starts[-1]
