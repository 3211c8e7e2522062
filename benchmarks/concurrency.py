"""Benchmark 5: records per second against ``records_in_flight``, at a fixed latency.

Two series: ``file_streams`` left at its default (a batch-wide cap on concurrent file
transfers) and ``file_streams`` = ``records_in_flight`` (the cap out of the way), against
the ideal records_in_flight / (requests per record x latency).
"""

from __future__ import annotations

import statistics
from pathlib import Path

from async_uploader import UploadConfig

from .harness import make_records, run_library, sandbox
from .report import BenchResult, figure

LATENCY_MS = 20.0
LEVELS = (1, 2, 4, 8, 16, 32)


def run(work: Path, quick: bool, repeats: int) -> BenchResult:
    n = 40 if quick else 100
    records = make_records(work / "records", n, 1, 1000, prefix="sweep")
    default_streams = UploadConfig.__dataclass_fields__["file_streams"].default
    labels = {
        f"file_streams={default_streams} (default)": lambda _rif: default_streams,
        "file_streams=records_in_flight": lambda rif: rif,
    }
    runs: dict[str, dict[int, list[float]]] = {k: {r: [] for r in LEVELS} for k in labels}
    per_record: list[float] = []
    with sandbox(latency_ms=LATENCY_MS) as sb:
        for _ in range(repeats):
            for rif in LEVELS:
                for label, streams in labels.items():
                    sb.reset_stats()
                    seconds, _ = run_library(
                        records, sb, work, records_in_flight=rif, file_streams=streams(rif)
                    )
                    runs[label][rif].append(n / seconds)
                    per_record.append(sb.stats()["requests_total"] / n)
    req_per_record = statistics.median(per_record)
    ideal = [rif / (req_per_record * LATENCY_MS / 1000) for rif in LEVELS]
    series = {
        label: {
            "records_in_flight": list(LEVELS),
            "median": [statistics.median(v[r]) for r in LEVELS],
            "min": [min(v[r]) for r in LEVELS],
            "max": [max(v[r]) for r in LEVELS],
            "runs": {str(r): v[r] for r in LEVELS},
        }
        for label, v in runs.items()
    }
    figures = []
    for label, v in runs.items():
        short = "default streams" if "default" in label else "streams=rif"
        for rif, best in zip(LEVELS, ideal, strict=True):
            figures.append(
                figure(
                    f"rif={rif}, {short}",
                    "records/s",
                    v[rif],
                    note="" if rif != LEVELS[0] else f"ideal at rif=1: {best:.1f} records/s",
                )
            )
    for rif, best in zip(LEVELS, ideal, strict=True):
        eff = [x / best for x in runs["file_streams=records_in_flight"][rif]]
        figures.append(figure(f"rif={rif}, streams=rif, fraction of ideal", "ratio", eff))
    return BenchResult(
        "sweep",
        f"records/s against records_in_flight ({n} records x 1 file, {LATENCY_MS:.0f} ms)",
        tuple(figures),
        params={"records": n, "latency_ms": LATENCY_MS, "levels": list(LEVELS)},
        notes=(
            f"Ideal = records_in_flight / ({req_per_record:.0f} requests per record x "
            f"{LATENCY_MS:.0f} ms); plot: concurrency_sweep.png.",
        ),
        extra={
            "series": series,
            "ideal": {"records_in_flight": list(LEVELS), "records_per_s": ideal},
        },
    )
