"""The shared rate limiter's policy, as tables driven by a fake clock (no real sleeping)."""

from __future__ import annotations

import anyio
import pytest

from async_uploader.ratelimit import (
    RateLimiter,
    RatePolicy,
    ServerLimit,
    route_class,
    window_reading,
)


def schedule(policy: RatePolicy, times: list[float]) -> list[float]:
    """When each request at the given arrival times would actually go out."""
    return [round(t + policy.reserve(t), 4) for t in times]


@pytest.mark.parametrize(
    ("rate", "burst", "arrivals", "departures"),
    [
        (None, 10, [0, 0, 0, 0], [0, 0, 0, 0]),  # no budget known: no waiting
        (2.0, 1, [0, 0, 0, 0], [0, 0.5, 1.0, 1.5]),  # spaced at 1/rate
        (2.0, 3, [0, 0, 0, 0, 0], [0, 0, 0, 0.5, 1.0]),  # a burst, then the rate
        (2.0, 1, [0, 10, 10], [0, 10, 10.5]),  # idle time does not pile up credit beyond burst
    ],
)
def test_gcra_schedule(
    rate: float | None, burst: int, arrivals: list[float], departures: list[float]
) -> None:
    assert schedule(RatePolicy(rate, burst, low_water=0), arrivals) == departures


@pytest.mark.parametrize(
    ("limit", "remaining", "reset_in", "user_rate", "rate", "burst"),
    [
        # Flask-Limiter: Reset = int(1 + first hit + W), so Reset - now is in (W, W + 1]
        (20, 19, 1.0, None, 0.95 * 20, 1),  # fresh 1 s window: learn 20/s, no burst
        (20, 19, 1.9, None, 0.95 * 20, 1),
        (100, 99, 60.4, None, 0.95 * 100 / 60, 1),  # Zenodo: 100 per minute
        (1000, 999, 60.7, None, 0.95 * 1000 / 60, 1),
        (1000, 999, 60.0, 5.0, 5.0, 1),  # --rate lower than the server's: keep it
        (20, 12, 0.4, None, None, 10),  # not a fresh window: cannot learn the length
    ],
)
def test_learning_from_headers(
    limit: int,
    remaining: int,
    reset_in: float,
    user_rate: float | None,
    rate: float | None,
    burst: int,
) -> None:
    policy = RatePolicy(user_rate, 10)
    policy.on_headers(100.0, 5000.0, ServerLimit(limit, remaining, 5000.0 + reset_in))
    assert policy.rate == (pytest.approx(rate) if rate is not None else None)
    assert policy.burst == burst


def test_window_is_the_median_of_recent_readings() -> None:
    policy = RatePolicy(None, 10)
    for t, reset_in in enumerate([60.5, 60.98, 60.2]):  # the middle one reads as 61
        policy.on_headers(float(t), 5000.0, ServerLimit(100, 99, 5000.0 + reset_in))
    assert policy.window == 60
    assert policy.rate == pytest.approx(0.95 * 100 / 60)


def test_slows_down_before_the_server_refuses() -> None:
    policy = RatePolicy(None, 10, low_water=4)
    # 4 left for the next 2 seconds: spread them, then wait for the reset.
    policy.on_headers(0.0, 1000.0, ServerLimit(100, 4, 1002.0))
    assert schedule(policy, [0, 0, 0, 0, 0]) == [0.5, 0.6667, 1.0, 2.0, 2.0]


def test_exhausted_budget_waits_for_reset() -> None:
    policy = RatePolicy(None, 10)
    policy.on_headers(0.0, 1000.0, ServerLimit(100, 0, 1003.0))
    assert policy.reserve(0.0) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("retry_after", "jitter", "pause"),
    [(5.0, 0.0, 5.0), (5.0, 1.0, 5.5), (0.0, 0.0, 0.5), (None, 0.0, 0.5)],
)
def test_429_pauses_everyone(retry_after: float | None, jitter: float, pause: float) -> None:
    policy = RatePolicy(4.0, 4)
    assert policy.on_429(10.0, retry_after, jitter) == pytest.approx(pause)
    # Every request, from any task, waits for the end of the pause, then goes out at half
    # the rate it was sent at (4/s), with no burst.
    departures = schedule(policy, [10.0, 10.0, 10.0])
    assert departures == [pytest.approx(10.0 + pause + i * 0.5) for i in range(3)]
    assert policy.pauses == 1


def test_429_without_headers_halves_the_observed_rate() -> None:
    policy = RatePolicy(None, 10)
    for i in range(40):  # 40 requests in 4 s = 10/s
        policy.reserve(i * 0.1)
    policy.on_429(4.0, 1.0, 0.0)
    assert policy.rate == pytest.approx(5.0, rel=0.1)


def send_at(policy: RatePolicy, rate: float, start: float, seconds: float) -> float:
    """Book requests as they come at ``rate`` for ``seconds``; the time reached."""
    t = start
    while t < start + seconds:
        policy.reserve(t)
        t += 1 / rate
    return t


@pytest.mark.parametrize(
    ("user_rate", "learned", "text", "after_429", "steps", "rates"),
    [
        # A storm with nothing to go by, at 100/s: half, then x2 every clean 0.5 s, and
        # dropped (None) once 4x the low point: a storm costs seconds, not the batch.
        (None, None, "Too Many Requests", 50.0, 0.5, [100.0, None]),
        # The message names a limit under what we sent: that limit, probed gently (5 s).
        (None, None, "10 per 1 second", 9.5, 5.0, [19.0, None]),
        # A gateway's 429 under a limit learned from headers (20/s): back up to it, no more.
        (None, 20, None, 9.5, 0.5, [19.0, 19.0]),
        # --rate 60 is a cap: recovery stops there.
        (60.0, None, None, 30.0, 0.5, [60.0, 60.0]),
    ],
)
def test_decrease_then_recover(
    user_rate: float | None,
    learned: int | None,
    text: str | None,
    after_429: float,
    steps: float,
    rates: list[float | None],
) -> None:
    policy = RatePolicy(user_rate, 10)
    if learned:  # a fresh 1 s window read from the headers: L/s
        policy.on_headers(0.0, 1000.0, ServerLimit(learned, learned - 1, 1001.0))
    t = send_at(policy, 100.0, 0.0, 2.0)
    policy.on_429(t, None, 0.0, text)
    assert policy.rate == pytest.approx(after_429, rel=0.1)  # bursts and edges: about
    t = policy.pause_until
    for rate in rates:
        t += steps
        policy.reserve(t)
        assert policy.rate == (pytest.approx(rate, rel=0.1) if rate is not None else None)


def test_a_new_429_restarts_the_recovery() -> None:
    policy = RatePolicy(None, 10)
    t = send_at(policy, 100.0, 0.0, 2.0)
    policy.on_429(t, None, 0.0)
    policy.reserve(policy.pause_until + 0.5)  # one step: 100
    policy.on_429(policy.pause_until + 0.6, None, 0.0)
    assert policy.rate is not None and policy.rate < 100.0
    assert policy.decreases == 2


def test_headers_naming_another_limit_are_learned_again() -> None:
    policy = RatePolicy(None, 10)
    policy.on_headers(0.0, 1000.0, ServerLimit(20, 19, 1001.0))
    assert policy.rate == pytest.approx(19.0)
    for i in range(5):  # the server's limit was raised: every fresh window says 100
        policy.on_headers(10.0 + i, 1010.0 + i, ServerLimit(100, 99, 1011.0 + i))
    assert policy.rate == pytest.approx(95.0)


@pytest.mark.parametrize(
    ("statuses", "paused"),
    [
        ([503] * 10 + [200] * 10, True),  # half of the last 20 shed: congestion
        ([200, 502, 504, 503] * 5, True),
        ([503] * 9 + [200] * 11, False),  # under half
        ([200] * 19 + [503], False),  # a flaky node: each retried alone
        ([500] * 20, False),  # an application error, not load
        ([503] * 5, False),  # too few answers to tell yet
    ],
)
def test_congestion_is_most_answers_shed(statuses: list[int], paused: bool) -> None:
    policy = RatePolicy(None, 10)
    send_at(policy, 100.0, -2.0, 2.0)
    pauses = [policy.on_answer(0.01 * i, status, 0.0) for i, status in enumerate(statuses)]
    assert (max(pauses) > 0) is paused
    assert (policy.rate is not None) is paused
    assert sum(p > 0 for p in pauses) <= 1  # one pause per episode


@pytest.mark.parametrize(
    ("method", "path", "cls"),
    [
        ("GET", "/api/records", "search"),
        ("GET", "/api/user/records", "search"),
        ("GET", "/api/communities", "search"),
        ("GET", "/api/communities/", "search"),
        ("POST", "/api/records", "default"),  # a create, not a search
        ("GET", "/api/records/abc12-def34", "default"),
        ("GET", "/api/communities/my-slug", "default"),
        ("PUT", "/api/records/x/draft/files/a.csv/content", "default"),
    ],
)
def test_route_classes(method: str, path: str, cls: str) -> None:
    assert route_class(method, path) == cls


def test_a_rate_limited_search_does_not_pause_the_uploads() -> None:
    now = [0.0]

    async def fake_sleep(seconds: float) -> None:
        now[0] += seconds

    limiter = RateLimiter(
        RatePolicy(None, 10), clock=lambda: now[0], sleep=fake_sleep, rand=lambda: 0.0
    )
    limiter.too_many_requests(30.0, "30 per 1 minute", "search")

    async def main() -> None:
        await limiter.acquire("default")
        assert now[0] == 0.0  # an upload goes at once
        await limiter.acquire("search")
        assert now[0] == pytest.approx(30.0)  # a search waits for its own budget

    anyio.run(main)
    assert limiter.policy.pauses == 0 and limiter.pauses == 1


def test_429_uses_reset_when_retry_after_missing() -> None:
    policy = RatePolicy(None, 10)
    policy.on_headers(0.0, 1000.0, ServerLimit(100, 3, 1007.0))
    assert policy.on_429(0.0, None, 0.0) == pytest.approx(7.0)


def test_async_limiter_with_fake_clock() -> None:
    """The async shell sleeps exactly what the policy says, and re-books after a pause."""
    now = [0.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(round(seconds, 4))
        now[0] += seconds

    limiter = RateLimiter(
        RatePolicy(2.0, 1),
        clock=lambda: now[0],
        wall=lambda: 1000 + now[0],
        sleep=fake_sleep,
        rand=lambda: 0.0,
    )

    async def main() -> None:
        for _ in range(3):
            await limiter.acquire()
        limiter.too_many_requests(3.0)
        await limiter.acquire()

    anyio.run(main)
    assert slept == [0.5, 0.5, 3.0]  # at 0, .5, 1.0; then the pause ends at 1.0 + 3.0


@pytest.mark.parametrize(
    ("message", "rate", "window"),
    [
        ("10 per 1 second", 0.95 * 10, 1.0),
        ("1000 per 1 minute", 0.95 * 1000 / 60, 60.0),
        ("100 per minute", 0.95 * 100 / 60, 60.0),
        ("25000 per 1 hour; 1000 per 1 minute", 0.95 * 25000 / 3600, 3600.0),  # strictest
        ("Too Many Requests", 50.0, None),  # a proxy's text: half of what was sent
        (None, 50.0, None),
    ],
)
def test_learning_from_a_429_message(
    message: str | None, rate: float | None, window: float | None
) -> None:
    policy = RatePolicy(None, 10)
    t = send_at(policy, 100.0, 0.0, 2.0)
    policy.on_429(t, None, 0.0, message)
    assert policy.rate == pytest.approx(rate, rel=0.02)
    assert policy.window == window


@pytest.mark.parametrize(
    ("reset", "sent", "arrived", "window"),
    [
        # Reset = int(1 + first hit + W); from the send time it lies in (W, W + 1 + rtt].
        (1002.0, 1000.30, 1000.31, 1.0),  # x = 1.70: W = 1
        (1002.0, 1000.02, 1000.03, 1.0),  # x = 1.98: W = 1 (the old reading said 2)
        (1003.0, 1000.99, 1000.992, 2.0),  # x = 2.01, rtt 2 ms: W = 2, just past the edge
        (1002.0, 999.998, 1000.01, 1.0),  # x = 2.002, rtt 12 ms: 1 or 2; the smaller
        (1061.0, 1000.40, 1000.45, 60.0),  # Zenodo's minute
        (1061.0, 1000.99, 1001.10, 59.0),  # x = 60.01, rtt 110 ms: 59 or 60; the smaller
    ],
)
def test_window_reading(reset: float, sent: float, arrived: float, window: float) -> None:
    assert window_reading(reset, arrived, sent) == window


def test_an_unsure_reading_is_corrected_by_the_429_it_causes() -> None:
    """x = 2.002 s with a 12 ms round trip: W is 1 or 2. Read as 1; the server's limit is
    really 50 per 2 seconds, and its first 429 says so."""
    policy = RatePolicy(None, 10)
    policy.on_headers(0.0, 1000.01, ServerLimit(50, 49, 1002.0), sent_wall=999.998)
    assert policy.rate == pytest.approx(0.95 * 50)
    t = send_at(policy, 47.5, 0.0, 2.0)
    policy.on_429(t, None, 0.0, "50 per 2 second")
    assert policy.window == 2.0 and policy.rate == pytest.approx(0.95 * 25)


def test_a_429_naming_the_limit_corrects_the_headers() -> None:
    policy = RatePolicy(None, 10)
    policy.on_headers(0.0, 1000.31, ServerLimit(50, 49, 1002.0), sent_wall=1000.30)
    policy.window_readings.clear()
    policy._adopt_server_rate(50, 0.5)  # a misreading: believed 100/s
    t = send_at(policy, 95.0, 0.0, 2.0)
    policy.on_429(t, None, 0.0, "50 per 1 second")
    assert policy.server_rate == 50 and policy.window == 1.0
    assert policy.rate == pytest.approx(0.95 * 50)


def test_one_decrease_per_pause() -> None:
    """The answers of requests in flight when a storm began are the same refusal."""
    policy = RatePolicy(None, 10)
    t = send_at(policy, 100.0, 0.0, 2.0)
    policy.on_429(t, 1.0, 0.0)
    first = policy.rate
    for i in range(10):
        policy.on_429(t + 0.01 * i, 1.0, 0.0)
    assert policy.rate == first and policy.decreases == 1 and policy.pauses == 11


def test_search_answers_teach_the_main_budget_until_it_learns_its_own() -> None:
    limiter = RateLimiter(RatePolicy(None, 10), clock=lambda: 0.0, wall=lambda: 1000.3)
    fresh = {"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "29", "X-RateLimit-Reset": ""}
    fresh["X-RateLimit-Reset"] = "1061"  # Zenodo's search limit: 30 a minute
    limiter.observe(fresh, "search", sent_wall=1000.29)
    assert limiter.policy_for("search").rate == pytest.approx(0.95 * 30 / 60)
    assert limiter.policy.rate == pytest.approx(0.95 * 30 / 60)  # a start, not the truth
    # The first upload's answer names the main limit (100 a minute): learned at once.
    limiter.observe({**fresh, "X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "97"})
    assert limiter.policy.rate == pytest.approx(0.95 * 100 / 60)
    assert limiter.policy_for("search").rate == pytest.approx(0.95 * 30 / 60)
