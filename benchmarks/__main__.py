"""``python -m benchmarks [--quick] [--out DIR] [--only NAME ...]``: run, then write results.

Every figure is a ratio or a rate measured in the same run as its reference, repeated
(3 runs in full mode, 1 with ``--quick``), reported as median and min-max.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from . import concurrency, large_file, rate_limited, resume, small_records
from .harness import machine
from .report import BenchResult, fmt, verdict, write_outputs

Runner = Callable[[Path, bool, int], BenchResult]
BENCHMARKS: dict[str, Runner] = {
    "small": small_records.run,
    "rate": rate_limited.run,
    "large": large_file.run,
    "resume": resume.run,
    "sweep": concurrency.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run (CI)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME")
    parser.add_argument("--repeats", type=int, help="runs per figure (default 3, --quick 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    names = args.only or list(BENCHMARKS)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    results: list[BenchResult] = []
    failures: dict[str, str] = {}
    load: dict[str, list[float]] = {}
    tmp = tempfile.mkdtemp(prefix="au-bench-")
    try:
        for name in names:
            print(f"== {name} ...", flush=True)
            b0 = time.perf_counter()
            work = Path(tmp) / name
            work.mkdir()
            load[name] = [round(os.getloadavg()[0], 2)]
            try:
                result = BENCHMARKS[name](work, args.quick, repeats)
            except Exception:  # one broken benchmark must not hide the others' figures
                failures[name] = traceback.format_exc()
                print(failures[name], file=sys.stderr, flush=True)
                continue
            result = BenchResult(
                result.name,
                result.title,
                result.figures,
                result.params,
                result.notes,
                result.extra,
                time.perf_counter() - b0,
            )
            load[name].append(round(os.getloadavg()[0], 2))
            results.append(result)
            for f in result.figures:
                print(
                    f"   {f.name}: {fmt(f.median)} {f.unit} "
                    f"[{fmt(f.low)}-{fmt(f.high)}] {f.target} {verdict(f)}".rstrip(),
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"kept the temporary data in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    doc = {
        "mode": "quick" if args.quick else "full",
        "repeats": repeats,
        "started": started,
        "seconds": time.perf_counter() - t0,
        "machine": machine(),
        "load_average": load,
        "failures": failures,
    }
    for path in write_outputs(args.out, doc, results):
        print(f"wrote {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
