"""Benchmark 2: how close to a server's rate limit the uploader runs without being refused.

The sandbox enforces a moving window of 50 requests per second (keyed like InvenioRDM's, on
client address + User-Agent); the uploader is given no ``--rate`` and must learn the limit
from the ``X-RateLimit-*`` headers.
"""

from __future__ import annotations

from pathlib import Path

import anyio

from .harness import bench_config, make_records, run_library, sandbox
from .report import BenchResult, figure

LIMIT = 50  # requests per second
RATE_LIMIT = f"{LIMIT} per 1 second"


def predicted_seconds(config: object) -> float:
    """What ``upload --dry-run`` says the limit allows at best for this batch."""
    from async_uploader.inspect import inspect_records

    async def ask() -> float | None:
        report = await inspect_records(config, ask_server=True)  # type: ignore[arg-type]
        return report.estimate.min_seconds

    least = anyio.run(ask)
    if least is None:
        raise RuntimeError("the dry run found no rate limit on a rate-limited sandbox")
    return least


def run(work: Path, quick: bool, repeats: int) -> BenchResult:
    n = 60 if quick else 300
    records = make_records(work / "records", n, 1, 1000, prefix="rate")
    fractions, accepted_fractions, shares, rates, predicted = [], [], [], [], []
    pauses: list[float] = []
    with sandbox(rate_limit=RATE_LIMIT) as sb:
        for _ in range(repeats):
            least = predicted_seconds(bench_config(records, sb, work))
            sb.reset_stats()
            seconds, result = run_library(records, sb, work)
            predicted.append(least / seconds)
            stats = sb.stats()
            total = stats["requests_total"]
            refused = stats["status_429"]
            fractions.append(total / seconds / LIMIT)
            accepted_fractions.append((total - refused) / seconds / LIMIT)
            shares.append(100.0 * refused / total)
            rates.append(total / seconds)
            pauses.append(result.counters.paused_seconds)
    return BenchResult(
        "rate",
        f"{n} records x 1 file under a {RATE_LIMIT} limit",
        (
            figure(
                "accepted request rate / limit",
                "fraction",
                accepted_fractions,
                ">= 0.9",
                lambda v: v >= 0.9,
                note="requests the server answered with anything but 429, per wall second",
            ),
            figure("all requests (incl. 429) / limit", "fraction", fractions),
            figure("requests answered 429", "%", shares, "< 1%", lambda v: v < 1.0),
            figure("request rate", "req/s", rates),
            figure("uploader paused after 429", "s", pauses),
            figure(
                "dry run's least time / measured time",
                "ratio",
                predicted,
                note="upload --dry-run's estimate (requests / the limit read from one probe's "
                "headers) against the batch's wall time; 1.0 would be a batch at the limit",
            ),
        ),
        params={"records": n, "files_per_record": 1, "rate_limit": RATE_LIMIT},
        notes=(
            "Wall time covers the whole batch (discovery to links file), so the first "
            "window, spent learning the limit, is included.",
        ),
    )
