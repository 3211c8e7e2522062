"""The shared rate limiter's policy, as tables driven by a fake clock (no real sleeping)."""

from __future__ import annotations

import anyio
import pytest

from async_uploader.ratelimit import RateLimiter, RatePolicy, ServerLimit


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
    # Every request, from any task, waits for the end of the pause, then goes out at the
    # rate with no burst.
    departures = schedule(policy, [10.0, 10.0, 10.0])
    assert departures == [pytest.approx(10.0 + pause + i * 0.25) for i in range(3)]
    assert policy.pauses == 1


def test_429_without_headers_halves_the_observed_rate() -> None:
    policy = RatePolicy(None, 10)
    for i in range(40):  # 40 requests in 4 s = 10/s
        policy.reserve(i * 0.1)
    policy.on_429(4.0, 1.0, 0.0)
    assert policy.rate == pytest.approx(5.0, rel=0.1)


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
        ("Too Many Requests", None, None),  # a proxy's text: nothing to learn
        (None, None, None),
    ],
)
def test_learning_from_a_429_message(
    message: str | None, rate: float | None, window: float | None
) -> None:
    policy = RatePolicy(None, 10)
    policy.on_limit_text(message)
    assert policy.rate == (pytest.approx(rate) if rate is not None else None)
    assert policy.window == window
