"""The records-in-flight controller, as tables over simple server models (no real time)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from async_uploader.concurrency import INITIAL, ConcurrencyPolicy

# A server model: records in flight -> (round trip of one call in s, answers per second).
Model = Callable[[int], tuple[float, float]]


def latency_bound(latency: float) -> Model:
    """A far server that never queues: each record waits its round trips, nothing more."""
    return lambda n: (latency, n / latency)


def workers(count: int, service: float) -> Model:
    """A local server with ``count`` workers: beyond them, calls queue (M/D/c, roughly)."""
    return lambda n: (service * max(1.0, n / count), min(n, count) / service)


def client_bound(most: float, latency: float) -> Model:
    """The answers per second stop rising at ``most`` (our own CPU), latency unchanged."""
    return lambda n: (latency, min(n / latency, most))


def run(policy: ConcurrencyPolicy, model: Model, windows: int) -> list[int]:
    """Feed answers as the model gives them until ``windows`` windows have closed; the limit
    after each."""
    now, seen = 0.0, []
    for _ in range(windows):
        closed = policy.windows
        while policy.windows == closed:
            rtt, rate = model(policy.current)
            now += 1 / rate
            policy.sample(now, "POST /records", rtt)
        seen.append(policy.current)
    return seen


@pytest.mark.parametrize(
    ("model", "cap", "settles_in"),
    [
        (latency_bound(0.020), 128, (128, 128)),  # sandbox, 20 ms: to the cap
        (latency_bound(0.150), 128, (128, 128)),  # a remote archive, 150 ms: to the cap
        (latency_bound(0.150), 16, (16, 16)),  # --records-in-flight 16 is a ceiling
        (workers(2, 0.05), 128, (2, 5)),  # one small server, two workers: a few at once
        (workers(8, 0.05), 128, (8, 16)),
        (client_bound(400.0, 0.02), 128, (8, 24)),  # more work stopped buying answers
    ],
)
def test_settles_where_more_work_stops_paying(
    model: Model, cap: int, settles_in: tuple[int, int]
) -> None:
    seen = run(ConcurrencyPolicy(cap=cap), model, 60)
    low, high = settles_in
    assert all(low <= n <= high for n in seen[-10:]), seen


def test_slow_start_doubles_while_answers_rise() -> None:
    seen = run(ConcurrencyPolicy(), latency_bound(0.02), 5)
    assert seen[:4] == [2 * INITIAL, 4 * INITIAL, 8 * INITIAL, 16 * INITIAL]


def test_congestion_halves_then_grows_back() -> None:
    policy = ConcurrencyPolicy()
    run(policy, latency_bound(0.05), 10)
    assert policy.current == 128
    policy.congestion(100.0)
    policy.congestion(100.5)  # the same episode: no second halving
    assert policy.current == 64 and not policy.slow_start
    seen = run(policy, latency_bound(0.05), 40)
    assert seen[-1] == 128 and seen == sorted(seen)  # never stuck, back up steadily


def test_a_busy_server_sheds_records_and_recovers_when_it_frees_up() -> None:
    policy = ConcurrencyPolicy()
    busy = run(policy, workers(2, 0.05), 40)
    assert busy[-1] <= 5
    free = run(policy, latency_bound(0.05), 40)
    assert free[-1] == 128


def test_each_kind_of_call_has_its_own_unloaded_time() -> None:
    policy = ConcurrencyPolicy()
    now = 0.0
    for i in range(64):  # publish takes 10x a create, unloaded: no queueing in that
        now += 0.01
        policy.sample(now, "publish" if i % 2 else "create", 0.4 if i % 2 else 0.04)
    assert not policy.slow_start or policy.current > INITIAL
    assert policy.current >= INITIAL


def test_stays_within_floor_and_cap() -> None:
    policy = ConcurrencyPolicy(cap=3, limit=8)
    assert policy.current == 3
    for i in range(10):
        policy.congestion(i * 10.0)
    assert policy.current == 1


def test_network_jitter_is_not_queueing() -> None:
    """Round trips of 3 to 15 ms at random, whatever the load (a jittery network): the
    median per window stays put, so the limit still grows to the cap."""
    rng = random.Random(7)

    def jittery(n: int) -> tuple[float, float]:
        return rng.uniform(0.003, 0.015), n / 0.009

    assert run(ConcurrencyPolicy(), jittery, 30)[-1] == 128
