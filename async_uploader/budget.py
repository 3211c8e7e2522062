"""One server rate budget shared by the uploader processes of one node.

InvenioRDM (Flask-Limiter) counts requests per client address + User-Agent, so the uploader
processes of one HPC node (Slurm job-array tasks) draw on ONE server budget. Each process
budgeting alone would send N times the allowed rate and earn 429s. So they book their requests
in one GCRA schedule kept in a small file, share a 429's pause, share what they learned about
the limit (a process starting later runs at the learned rate at once), and announce themselves
(``members`` says how many share the budget, for logging and for splitting it).

The decisions are pure functions on ``BudgetState`` (state in, state out; time passed in);
``SharedSchedule`` is the thin file shell. ``open_shared_schedule`` returns None where a
shared file cannot be used; the caller then keeps a process-local schedule.

Where: ``$XDG_RUNTIME_DIR/async-uploader/budgets/`` if set and writable, else
``/tmp/async-uploader-<uid>/budgets/`` (directories 0700, file 0600), one file per budget:
``<sha256(origin, User-Agent, route class)[:32]>.v1.json``. Node-local because flock on NFS or
Lustre is absent, slow or local to one client, and only the processes of one node share a
client address anyway. Per-user because another user's processes could garble or stall a
file they can write; so different users on one node (who share the server's budget too when
they send the same User-Agent) do not coordinate: a known limit. ``$TMPDIR`` is not used on
purpose: Slurm often sets it per job, which would give every array task its own file.

File: compact JSON, rewritten whole at each operation::

    {"tat": 1712345678.25, "pause": 0.0, "limit": [100, 60.0, 1712345600.0],
     "members": {"4711-1a2b3c4d": 1712345678.2}}

``tat`` is the GCRA theoretical arrival time (epoch seconds: the earliest start of the next
request), ``pause`` the end of a shared 429 pause, ``limit`` [requests, window seconds, when
seen], ``members`` id ("pid-random") -> last call. The format version is in the file name, so
another version never reads this one.

Locking: every operation takes ``flock(LOCK_EX)`` on the file, reads it, decides, writes the
new content with one ``pwrite`` and an ``ftruncate``, and unlocks: microseconds, no fsync
(this is coordination, not durable state; a reboot may forget it).

Hazards:
- Clock skew between processes is nil (one node, one clock), but ``time.time()`` can step.
  Whatever is read is clamped: a ``tat`` beyond a horizon of ``interval * depth * (members +
  1) + SLACK`` or a pause more than ``MAX_PAUSE`` ahead is reset, so garbage or a clock step
  back never stalls us for long.
- Garbage, an empty file, or a writer killed mid-write: unreadable content is an empty state
  (at worst each process sends one request early and a shared pause or limit is forgotten;
  values that parse but cannot be true are dropped one by one). A writer killed between
  pwrite and ftruncate leaves its whole new content followed by stale bytes: the reader
  parses the first JSON value only.
- A holder stopped with the lock (SIGSTOP, Slurm suspend) would block everyone: a process
  waits at most ``lock_wait`` and then books on its own copy of the schedule for that call.
- flock belongs to the open file description: after a fork the child reopens the file.
- A job with a private /tmp (Slurm job_container/tmpfs), or processes that disagree about
  ``$XDG_RUNTIME_DIR``, get separate files: each process then budgets alone, as before.
  Likewise when logind removes ``$XDG_RUNTIME_DIR`` as the user's last session ends: running
  processes keep the unlinked file, new ones make another.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import stat
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

FORMAT = "v1"
SLACK = 60.0  # seconds added to the horizon beyond which a booked time is distrusted
DEPTH = 8  # bookings one process may hold at once (its concurrent requests), for the horizon
MAX_PAUSE = 900.0  # a shared pause further ahead than this is distrusted (a 429 re-pauses)
LIMIT_TTL = 600.0  # a shared limit not seen again for this long is forgotten
MEMBER_WINDOW = 60.0  # members(now) counts processes heard from within this many seconds
MEMBER_TTL = 600.0  # members silent this long leave the file
MAX_MEMBERS = 256  # the file stays small even if ids pile up
READ_MAX = 65536  # more is garbage: its head may still parse, the rest is rewritten away
T = TypeVar("T")


@dataclass(frozen=True)
class SharedLimit:
    """A server limit some process learned: ``limit`` requests per ``window_s`` seconds."""

    limit: int
    window_s: float
    seen_at: float


@dataclass(frozen=True)
class BudgetState:
    """The shared file's content."""

    tat: float = 0.0
    pause_until: float = 0.0
    limit: SharedLimit | None = None
    members: tuple[tuple[str, float], ...] = ()  # (id, last seen), sorted by id


# -- pure decisions -------------------------------------------------------------------------
def settle(state: BudgetState, now: float) -> BudgetState:
    """Drop what time has made meaningless or what cannot be true (clock step, garbage)."""
    members = tuple((m, t) for m, t in state.members if now - MEMBER_TTL <= t <= now + SLACK)
    pause = state.pause_until if state.pause_until <= now + MAX_PAUSE else 0.0
    limit = state.limit
    if limit is not None and not now - LIMIT_TTL <= limit.seen_at <= now + SLACK:
        limit = None
    return replace(state, pause_until=pause, limit=limit, members=members)


def announce(state: BudgetState, member: str, now: float) -> BudgetState:
    """Every call says "still here", so a process that stopped drops out of the count."""
    seen = dict(state.members)
    seen[member] = now
    if len(seen) > MAX_MEMBERS:  # keep the most recently heard
        seen = dict(sorted(seen.items(), key=lambda kv: kv[1])[-MAX_MEMBERS:])
    return replace(state, members=tuple(sorted(seen.items())))


def active_members(state: BudgetState, now: float, within: float = MEMBER_WINDOW) -> int:
    """How many processes share the budget now; a silent one is counted no longer."""
    return sum(1 for _, t in state.members if t >= now - within)


def book(
    state: BudgetState, now: float, interval: float, depth: int = DEPTH
) -> tuple[BudgetState, float]:
    """GCRA without burst: the start of one request and the state after booking it.

    The spacing after a booking is the booker's ``interval``: processes that agree on the
    budget (the shared limit) agree on it; a stricter one slows the others only after its own
    bookings.
    """
    if not (math.isfinite(interval) and interval >= 0):
        raise ValueError(f"interval must be a finite number >= 0, not {interval!r}")
    horizon = interval * max(1, depth) * (active_members(state, now) + 1) + SLACK
    tat = state.tat if state.tat <= now + horizon else 0.0
    start = max(now, state.pause_until, tat)
    return replace(state, tat=start + interval), start


def add_pause(state: BudgetState, until: float, now: float) -> BudgetState:
    """Keep the later pause; never store one further ahead than MAX_PAUSE (others distrust it)."""
    return replace(state, pause_until=max(state.pause_until, min(until, now + MAX_PAUSE)))


def add_limit(state: BudgetState, limit: int, window_s: float, now: float) -> BudgetState:
    """The strictest limit seen within LIMIT_TTL wins; a laxer one waits for it to expire."""
    if limit <= 0 or not (math.isfinite(window_s) and window_s > 0):
        return state
    old = state.limit
    if old is None or limit / window_s <= old.limit / old.window_s:
        return replace(state, limit=SharedLimit(limit, window_s, now))
    return state


def current_limit(state: BudgetState) -> tuple[int, float] | None:
    """(requests, window seconds) of the limit in force; ``settle`` first drops a stale one."""
    return None if state.limit is None else (state.limit.limit, state.limit.window_s)


# -- the file format ------------------------------------------------------------------------
def encode(state: BudgetState) -> bytes:
    """Compact JSON: a few hundred bytes, so one pwrite writes it whole."""
    limit = state.limit
    obj = {
        "tat": state.tat,
        "pause": state.pause_until,
        "limit": None if limit is None else [limit.limit, limit.window_s, limit.seen_at],
        "members": dict(state.members),
    }
    return json.dumps(obj, separators=(",", ":")).encode()


def decode(raw: bytes) -> BudgetState:
    """The state in ``raw``; an empty state for anything unreadable. Never raises."""
    try:
        obj, _ = json.JSONDecoder().raw_decode(raw.decode())  # stale bytes may follow
    except ValueError:
        return BudgetState()
    if not isinstance(obj, dict):
        return BudgetState()
    limit = None
    if isinstance(lim := obj.get("limit"), list) and len(lim) == 3:
        count, window, seen = lim[0], _number(lim[1]), _number(lim[2])
        if _is_int(count) and count > 0 and window and window > 0 and seen is not None:
            limit = SharedLimit(count, window, seen)
    members: dict[str, float] = {}
    if isinstance(raw_members := obj.get("members"), dict):
        for member, seen in raw_members.items():
            if len(member) <= 64 and (t := _number(seen)) is not None:
                members[member] = t
    state = BudgetState(
        tat=_number(obj.get("tat")) or 0.0,
        pause_until=_number(obj.get("pause")) or 0.0,
        limit=limit,
    )
    return replace(state, members=tuple(sorted(members.items()))) if members else state


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: object) -> float | None:
    """A finite float, or None for anything else (bools, strings, NaN, 1e999, 10**400)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


# -- where the file lives -------------------------------------------------------------------
def budget_key(origin: str, user_agent: str, route_class: str = "default") -> str:
    """What one server budget is counted by: origin (scheme://host:port), User-Agent, route."""
    return json.dumps([origin.rstrip("/"), user_agent, route_class])


def budget_dir(env: Mapping[str, str] | None = None) -> Path:
    """The node-local, per-user directory of budget files (see the module docstring)."""
    env = os.environ if env is None else env
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(runtime) and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return Path(runtime) / "async-uploader" / "budgets"
    return Path("/tmp") / f"async-uploader-{os.geteuid()}" / "budgets"


def budget_path(key: str, directory: Path | None = None) -> Path:
    """A hash names the file: keys hold URLs and User-Agents, unfit for file names."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return (directory or budget_dir()) / f"{digest}.{FORMAT}.json"


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` and its parent (0700); refuse one another user could swap or write.

    Both must be real directories owned by us (or root) and writable by no one else unless
    sticky like /tmp: else a squatter's ``/tmp/async-uploader-<uid>`` would hold our file.
    """
    directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.mkdir(mode=0o700, exist_ok=True)
    for path in (directory, directory.parent):
        st = os.lstat(path)
        shared = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (os.geteuid(), 0) or shared:
            raise PermissionError(errno.EPERM, "not a private directory", str(path))


def open_shared_schedule(
    key: str, *, directory: Path | None = None, lock_wait: float = 0.25
) -> SharedSchedule | None:
    """The shared schedule of budget ``key``, or None if this node cannot share one.

    None, never an exception, when the directory cannot be made or written or is not
    private, or its file system refuses flock (ENOLCK, EOPNOTSUPP, EINVAL): the caller then
    budgets alone, as before.
    """
    try:
        path = budget_path(key, directory)
        make_private_dir(path.parent)
        return SharedSchedule(path, lock_wait=lock_wait)
    except OSError:
        return None


# -- the file shell -------------------------------------------------------------------------
class SharedSchedule:
    """One budget file; each call locks it, reads, decides (the pure functions), writes back.

    Raises OSError only when opened (``open_shared_schedule`` turns that into None). After
    that a call never raises: when the file fails it (the lock not ours within ``lock_wait``,
    an I/O error) the call decides on the state this process saw last, i.e. budgets alone
    for that call, and ``fallbacks`` counts it.
    """

    def __init__(self, path: Path, *, lock_wait: float = 0.25) -> None:
        self.path = Path(path)
        self.lock_wait = lock_wait
        self.fallbacks = 0
        self.member = ""
        self._state = BudgetState()  # the last state read or decided
        self._fd = -1
        self._pid = -1
        self._open()

    def _open(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(self.path, flags, 0o600)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(self.path))
            try:  # refused at once where the file system cannot flock
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                fcntl.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:  # another process holds it: flock works
                pass
        except OSError:
            os.close(fd)
            raise
        self._fd, self._pid = fd, os.getpid()
        self.member = f"{self._pid}-{uuid.uuid4().hex[:8]}"

    # -- operations -----------------------------------------------------------------------
    def reserve(self, now: float, interval: float, *, depth: int = DEPTH) -> float:
        """Book one request at spacing ``interval``; the epoch time it may go (>= now).

        ``depth``: how many bookings this process may hold at once (its concurrent requests);
        it widens the horizon beyond which a booked time is distrusted.
        """
        return self._update(now, lambda s: book(s, now, interval, depth))

    def pause(self, until: float, now: float | None = None) -> None:
        """Pause every process of this budget until ``until`` (a 429 seen by one)."""
        at = time.time() if now is None else now
        self._update(at, lambda s: (add_pause(s, until, at), None))

    def share_limit(self, limit: int, window_s: float, now: float) -> tuple[int, float] | None:
        """Tell the others the server's limit; returns the one in force (the strictest)."""
        return self._update(now, lambda s: _with_limit(add_limit(s, limit, window_s, now)))

    def read_limit(self, now: float) -> tuple[int, float] | None:
        """The limit some process learned in the last LIMIT_TTL seconds, if any."""
        return self._update(now, lambda s: (s, current_limit(s)))

    def members(self, now: float, within: float = MEMBER_WINDOW) -> int:
        """How many processes (this one included) used this budget in the last ``within`` s."""
        return self._update(now, lambda s: (s, active_members(s, now, within)))

    def close(self) -> None:
        """Leave the budget (others stop counting us at once) and close the file."""
        if self._fd < 0 or os.getpid() != self._pid:
            return
        if self._lock():
            try:
                state = self._read()
                if state is not None:
                    members = tuple(m for m in state.members if m[0] != self.member)
                    self._write(replace(state, members=members))
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> SharedSchedule:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the shell ------------------------------------------------------------------------
    def _update(self, now: float, decide: Callable[[BudgetState], tuple[BudgetState, T]]) -> T:
        held = self._lock()
        try:
            state = self._read() if held else None
            shared = state is not None
            seen = state if state is not None else self._state
            new, result = decide(announce(settle(seen, now), self.member, now))
            if not (shared and self._write(new)):
                self.fallbacks += 1
            self._state = new
            return result
        finally:
            if held:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _lock(self) -> bool:
        """LOCK_EX, waiting at most ``lock_wait`` (a stopped holder must not stall us)."""
        if self._fd >= 0 and os.getpid() != self._pid:
            # Forked: the inherited open file description (and its lock) is the parent's too.
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(OSError):  # then this process budgets alone
                self._open()
        if self._fd < 0:
            return False
        deadline, delay = time.monotonic() + self.lock_wait, 1e-5
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
            except OSError:
                return False
            time.sleep(delay)
            delay = min(2 * delay, 1e-3)

    def _read(self) -> BudgetState | None:
        try:
            return decode(os.pread(self._fd, READ_MAX, 0))
        except OSError:
            return None

    def _write(self, state: BudgetState) -> bool:
        data = encode(state)
        try:  # pwrite first: a writer killed before ftruncate leaves a readable head
            os.pwrite(self._fd, data, 0)
            os.ftruncate(self._fd, len(data))
        except OSError:
            return False
        return True


def _with_limit(state: BudgetState) -> tuple[BudgetState, tuple[int, float] | None]:
    return state, current_limit(state)
