"""Figures (median and min-max of repeated runs, with their target) and the output files."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One reported number: every run's value, the median shown, and the goal it serves."""

    name: str
    unit: str
    runs: tuple[float, ...]
    target: str = ""  # e.g. ">= 20x"; empty = informative only
    met: bool | None = None  # judged on the median
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    @property
    def low(self) -> float:
        return min(self.runs)

    @property
    def high(self) -> float:
        return max(self.runs)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "runs": list(self.runs),
            "target": self.target or None,
            "met": self.met,
            "note": self.note or None,
        }


def figure(
    name: str,
    unit: str,
    runs: Sequence[float],
    target: str = "",
    check: Callable[[float], bool] | None = None,
    note: str = "",
) -> Figure:
    values = tuple(float(v) for v in runs)
    met = None if check is None else bool(check(statistics.median(values)))
    return Figure(name, unit, values, target, met, note)


@dataclass(frozen=True)
class BenchResult:
    name: str
    title: str
    figures: tuple[Figure, ...]
    params: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)  # raw series (e.g. the sweep)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "params": self.params,
            "figures": [f.to_json() for f in self.figures],
            "notes": list(self.notes),
            "extra": self.extra,
            "seconds": round(self.seconds, 1),
        }


def fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 0.01:
        return f"{value:.3g}"
    return f"{value:.2e}"


def verdict(f: Figure) -> str:
    if f.met is None:
        return ""
    return "met" if f.met else "**missed**"


def markdown(doc: dict[str, Any], results: Sequence[BenchResult]) -> str:
    m = doc["machine"]
    lines = [
        "# async_uploader benchmarks",
        "",
        f"Mode: {doc['mode']} ({doc['repeats']} run(s) per figure; median, min-max shown). "
        f"Started {doc['started']}, took {doc['seconds']:.0f} s.",
        "",
        f"Machine: {m['cores']} cores, {m['cpu_model']}, {m['memory_gib']} GiB RAM, "
        f"{m['platform']}; Python {m['python']}, aiohttp {m['aiohttp']}, anyio {m['anyio']}, "
        f"async-uploader {m['async_uploader']}. The sandbox server runs in its own process "
        "on 127.0.0.1.",
        "",
        "1-minute load average before/after each benchmark (the machine may be shared; "
        "load above what the benchmark itself brings, about 2, skews the figures): "
        + ", ".join(f"{k} {v[0]}/{v[-1]}" for k, v in doc.get("load_average", {}).items())
        + ".",
        "",
        "| Benchmark | Figure | Median | Min-max | Unit | Target | Verdict |",
        "|---|---|---:|---:|---|---|---|",
    ]
    for r in results:
        for f in r.figures:
            spread = f"{fmt(f.low)}-{fmt(f.high)}" if len(f.runs) > 1 else "(1 run)"
            lines.append(
                f"| {r.name} | {f.name} | {fmt(f.median)} | {spread} | {f.unit} | "
                f"{f.target} | {verdict(f)} |"
            )
    lines.append("")
    for r in results:
        lines.append(f"## {r.name}: {r.title}")
        lines.append("")
        params = ", ".join(f"{k}={v}" for k, v in r.params.items())
        lines.append(f"Parameters: {params}. Took {r.seconds:.0f} s.")
        lines.append("")
        for note in r.notes:
            lines.append(f"- {note}")
        for f in r.figures:
            if f.note:
                lines.append(f"- {f.name}: {f.note}")
        lines.append("")
    return "\n".join(lines)


def write_outputs(out: Path, doc: dict[str, Any], results: Sequence[BenchResult]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    full = {**doc, "benchmarks": [r.to_json() for r in results]}
    written = [out / "latest.json", out / "latest.md"]
    written[0].write_text(json.dumps(full, indent=1) + "\n", encoding="utf-8")
    written[1].write_text(markdown(doc, results) + "\n", encoding="utf-8")
    for r in results:
        if r.name == "sweep":
            written.append(plot_sweep(out / "concurrency_sweep.png", r, doc))
    return written


def plot_sweep(path: Path, result: BenchResult, doc: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, dict[str, Any]] = result.extra["series"]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for label, s in series.items():
        xs = s["records_in_flight"]
        med = s["median"]
        lo = [m - a for m, a in zip(med, s["min"], strict=True)]
        hi = [b - m for m, b in zip(med, s["max"], strict=True)]
        ax.errorbar(xs, med, yerr=[lo, hi], marker="o", capsize=3, label=label)
    ideal = result.extra["ideal"]
    ax.plot(ideal["records_in_flight"], ideal["records_per_s"], "k--", lw=1, label="ideal")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(ideal["records_in_flight"], [str(x) for x in ideal["records_in_flight"]])
    ax.set_xlabel("records_in_flight")
    ax.set_ylabel("records per second")
    p = result.params
    ax.set_title(
        f"{p['records']} records x 1 file, {p['latency_ms']:.0f} ms latency "
        f"({doc['machine']['cores']} cores)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
