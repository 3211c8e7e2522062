"""Benchmark 1: many small records against the sequential baseline and against the ideal.

Ideal = requests the uploader sent x latency / records_in_flight: the time the batch would
take if every request slot were always busy and the uploader itself cost nothing.
"""

from __future__ import annotations

from pathlib import Path

from . import baseline
from .harness import Stopwatch, make_records, run_library, sandbox
from .report import BenchResult, figure

LATENCY_MS = 20.0
FILES = 3
FILE_SIZE = 4000
RECORDS_IN_FLIGHT = 16
FILE_STREAMS = 16


def run(work: Path, quick: bool, repeats: int) -> BenchResult:
    n = 60 if quick else 500
    subset = 20 if quick else 50
    records = make_records(work / "records", n, FILES, FILE_SIZE, prefix="small")
    base_dir = make_records(work / "baseline", subset, FILES, FILE_SIZE, prefix="small-base")
    folders = sorted((p for p in base_dir.iterdir() if p.is_dir()), key=lambda p: int(p.name))
    settings = {"records_in_flight": RECORDS_IN_FLIGHT, "file_streams": FILE_STREAMS}
    speedups, ratios, efficiencies, up_rates, base_rates = [], [], [], [], []
    up_requests: list[float] = []
    with sandbox(latency_ms=LATENCY_MS) as sb:
        for _ in range(repeats):
            sb.reset_stats()
            with Stopwatch() as sw:
                baseline.upload_all(folders, sb.url, sb.token)
            base_stats = sb.stats()
            base_time = sw.seconds * n / subset  # scaled linearly to the full batch
            sb.reset_stats()
            up_time, result = run_library(records, sb, work, **settings)
            stats = sb.stats()
            ideal = stats["requests_total"] * LATENCY_MS / 1000 / RECORDS_IN_FLIGHT
            speedups.append(base_time / up_time)
            ratios.append(up_time / ideal)
            efficiencies.append(ideal / up_time)
            up_rates.append(n / up_time)
            base_rates.append(subset / sw.seconds)
            up_requests.append(stats["requests_total"] / n)
            if result.counters.retries:
                raise RuntimeError(f"unexpected retries: {result.counters.to_json()}")
    base_per_record = base_stats["requests_total"] / subset
    return BenchResult(
        "small",
        f"{n} records x {FILES} files of {FILE_SIZE} B, {LATENCY_MS:.0f} ms latency per request",
        (
            figure(
                "speed-up vs sequential baseline",
                "x",
                speedups,
                ">= 20x",
                lambda v: v >= 20,
                note=f"baseline timed on {subset} records and scaled linearly to {n}",
            ),
            figure(
                "efficiency (ideal / uploader time)",
                "ratio",
                efficiencies,
                ">= 0.8",
                lambda v: v >= 0.8,
            ),
            figure("uploader time / ideal", "ratio", ratios),
            figure("uploader throughput", "records/s", up_rates),
            figure("baseline throughput", "records/s", base_rates),
            figure("uploader requests per record", "requests", up_requests),
        ),
        params={
            "records": n,
            "baseline_records": subset,
            "files_per_record": FILES,
            "file_bytes": FILE_SIZE,
            "latency_ms": LATENCY_MS,
            "records_in_flight": RECORDS_IN_FLIGHT,
            "file_streams": FILE_STREAMS,
        },
        notes=(
            f"Baseline: sequential, a new connection per request, {base_per_record:.0f} "
            f"requests per record; timed on {subset} records and scaled linearly to {n} "
            "(running all of them one at a time would take minutes).",
            "Ideal = requests the uploader sent x latency / records_in_flight.",
        ),
    )
