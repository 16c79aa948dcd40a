"""Run the benchmarks: dingsync vs the official ``dingtalk-stream`` SDK on the local emulator.

Usage::

    python -m benchmarks.run                  # everything (several minutes)
    python -m benchmarks.run --quick          # smaller and fewer runs, < 2 minutes
    python -m benchmarks.run --only throughput,blocking --runs 3
    python -m benchmarks.run --write-readme   # also refresh README.md between the bench markers

Prints one markdown table. Writes ``benchmarks/results/run-<time>.json`` (every sample) and, after
a complete full run, ``benchmarks/results/latest.md`` and ``chart.png``. Client logs go to a
temporary directory, kept and named when something fails.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from . import _report
from ._context import BenchContext
from ._emulator import BenchError
from ._results import Row
from .figures import (
    blocking,
    callbacks,
    cron,
    footprint,
    idle,
    reconnect,
    throughput,
    zombie,
)

FIGURES: Dict[str, Callable[[BenchContext], List[Row]]] = {
    "throughput": throughput.run,
    "blocking": blocking.run,
    "reconnect": reconnect.run,
    "zombie": zombie.run,
    "footprint": footprint.run,
    "cron": cron.run,
    "callbacks": callbacks.run,
    "idle": idle.run,
    "stalls": zombie.run_mid_burst,
}
HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE.parent / "README.md"
METHOD = HERE / "README.md"


def make_context(quick: bool, runs: Optional[int], log_dir: Path) -> BenchContext:
    ctx = BenchContext(quick=quick, log_dir=log_dir)
    if quick:
        ctx.runs = ctx.throughput_runs = ctx.throughput_cycles = 2
        ctx.reconnect_seconds = 5.0
        ctx.reconnect_runs = 1
        ctx.zombie_runs = 1
        ctx.zombie_default_dead_after = False
        ctx.import_runs = 5
        ctx.growth_messages = 20_000
        ctx.idle_seconds = 10.0
    if runs is not None:
        ctx.runs = ctx.throughput_runs = ctx.reconnect_runs = ctx.zombie_runs = runs
    return ctx


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="smaller, fewer runs (< 2 min)")
    parser.add_argument(
        "--only", default="", help=f"comma-separated subset of {', '.join(FIGURES)}"
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs per figure (default 5; quick 2)",
    )
    parser.add_argument(
        "--cycles",
        type=int,
        default=None,
        help="throughput bursts per client and run, interleaved (default 4; quick 2)",
    )
    parser.add_argument("--frames", type=int, default=None, help="throughput frames (default 5000)")
    parser.add_argument(
        "--clients",
        default="dingsync,official,raw",
        help="comma-separated subset of dingsync, official, raw (for debugging)",
    )
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="replace the table between the bench markers in README.md",
    )
    parser.add_argument("--results", type=Path, default=RESULTS, help="where JSON/MD/PNG go")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(FIGURES)
    unknown = [n for n in names if n not in FIGURES]
    if unknown:
        print(
            f"unknown figure(s): {', '.join(unknown)}; choose from {', '.join(FIGURES)}",
            file=sys.stderr,
        )
        return 2
    log_dir = Path(tempfile.mkdtemp(prefix="dingsync-bench-logs-"))
    ctx = make_context(args.quick, args.runs, log_dir)
    if args.frames is not None:
        ctx.frames = args.frames
    if args.cycles is not None:
        ctx.throughput_cycles = args.cycles
    ctx.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    mode = "quick" if args.quick else "full"
    started = time.monotonic()
    rows: List[Row] = []
    failed: List[str] = []
    for name in names:
        ctx.log(f"== {name}")
        try:
            rows.extend(FIGURES[name](ctx))
        except BenchError as exc:  # report and go on with the other figures
            failed.append(name)
            print(f"\n!! {name} failed: {exc}\n", file=sys.stderr)
    elapsed = time.monotonic() - started

    complete = not failed and names == list(FIGURES) and len(ctx.clients) == 3
    chart_path: Optional[Path] = None
    if complete and not args.quick:
        chart_path = _report.chart(rows, ctx.raw, args.results / "chart.png")
    table = _report.table_markdown(
        rows, mode, ctx.runs, "benchmarks/results/chart.png" if chart_path else None
    )
    print("\n" + table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = {
        "mode": mode,
        "runs": ctx.runs,
        "figures": names,
        "failed": failed,
        "seconds": round(elapsed, 1),
        "machine": _report.machine_note(),
        "versions": _report.versions(),
        "date": stamp,
    }
    _report.write_json(args.results / f"run-{stamp}.json", rows, ctx.raw, meta)
    if complete and not args.quick:
        relative = table.replace("](benchmarks/results/", "](").replace(
            "](benchmarks/README.md)", "](../README.md)"
        )
        (args.results / "latest.md").write_text(relative, encoding="utf-8")
    if "footprint" in names and "import_offenders" in ctx.raw and not args.quick:
        _report.update_file(
            METHOD,
            "<!-- importtime:start -->",
            "<!-- importtime:end -->",
            footprint.offenders_markdown(ctx.raw["import_offenders"]),
        )
    if args.write_readme:
        _report.update_file(README, _report.START, _report.END, table)
        print(f"README.md updated between {_report.START} and {_report.END}", file=sys.stderr)
    ctx.log(f"done in {elapsed:.0f} s; results in {args.results}")
    if failed:
        print(f"client logs kept in {log_dir}", file=sys.stderr)
        return 1
    shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
