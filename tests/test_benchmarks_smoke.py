"""The benchmark harness works end to end in a tiny mode. No timing is asserted: timing goals are
measured by ``python -m benchmarks.run``, never in tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ is a top-level directory, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks._report import replace_between  # noqa: E402

pytestmark = pytest.mark.timeout(60)


def test_tiny_throughput_run_measures_every_client(tmp_path: Path) -> None:
    """200 frames, one run of two cycles: dingsync, the official SDK and the raw loop each get
    two bursts, paired by cycle."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--only",
            "throughput",
            "--runs",
            "1",
            "--frames",
            "200",
            "--cycles",
            "2",
            "--results",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "| 1 | Throughput, trivial handler, 200 frames (msgs/s) |" in out
    (saved,) = tmp_path.glob("run-*.json")
    payload = json.loads(saved.read_text())
    samples = payload["raw"]["throughput"]
    for kind in ("dingsync", "official", "raw"):
        assert len(samples[kind]) == 2
        for sample in samples[kind]:
            assert sample["msgs_per_s"] > 0
            assert sample["cpu_us_per_msg"] >= 0
            assert sample["push_rate"] > 0
    assert not (tmp_path / "latest.md").exists()  # partial runs never replace the committed table


def test_readme_section_is_replaced_between_markers_only() -> None:
    """Only the text between the bench markers changes; absent markers are appended at the end."""
    text = "intro\n<!-- bench:start -->\nold\n<!-- bench:end -->\noutro\n"
    new = replace_between(text, "<!-- bench:start -->", "<!-- bench:end -->", "table")
    assert new == "intro\n<!-- bench:start -->\ntable\n<!-- bench:end -->\noutro\n"
    appended = replace_between("intro\n", "<!-- bench:start -->", "<!-- bench:end -->", "t")
    assert appended == "intro\n\n<!-- bench:start -->\nt\n<!-- bench:end -->\n"


def test_hot_path_profile_times_every_stage() -> None:
    """benchmarks.hotpath prints one positive per-message figure for each stage."""
    from benchmarks import hotpath

    raw = hotpath._frames(30)
    results = [(name, hotpath.measure(stage, len(raw), 1)) for name, stage in hotpath.stages(raw)]
    names = [name for name, _ in results]
    assert "dingsync, handler thread's part (decode, dedupe, handler, ack)" in names
    assert any(name.startswith("raw loop") for name in names)
    assert all(us > 0 for _, us in results), results
    assert hotpath.table(results).count("\n") == len(results) + 1


def test_a_paired_target_is_judged_on_the_ratio_the_table_prints() -> None:
    """With paired runs the verdict follows the median per-run ratio, not the medians: equal
    medians but a 0.95× ratio do not meet "≥ 1.0× official"."""
    from benchmarks._results import Row, Summary

    row = Row(
        "1",
        "Throughput",
        "msgs/s",
        dingsync=Summary([100.0, 100.0, 100.0]),
        official=Summary([90.0, 100.0, 110.0]),
        ratios=[1.05, 0.95, 0.9],
        check=lambda d, o: d >= o,
    )
    assert row.ratio == 0.95 and row.met is False
    unpaired = Row(
        "1", "x", "s", dingsync=Summary([1.0]), official=Summary([2.0]), check=lambda d, o: d <= o
    )
    assert unpaired.met is True


def test_callbacks_figure_runs_alone(tmp_path: Path) -> None:
    """``--only callbacks``: dingworker --http answers every signed robot message and
    encrypted event the emulator sends, and each row of figure 7 gets a value."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--only", "callbacks", "--quick", "--runs", "1"]
        + ["--results", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=55,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 7 |")]
    assert len(rows) == 5 and all("| — | — | — |" not in row for row in rows)
    (saved,) = tmp_path.glob("run-*.json")
    raw = json.loads(saved.read_text())["raw"]["callbacks"]
    assert min(raw["rates"]["chatbot"] + raw["rates"]["event"]) > 0
    assert len(raw["cold_start_ms"]) == 3 and len(raw["fc_cold_start_ms"]) == 3
    assert min(raw["cold_start_cpu_ms"] + raw["fc_cold_start_cpu_ms"]) > 0


def test_idle_figure_helpers_measure_a_live_process() -> None:
    """Figure 8's parts: context switches of every thread of a process, and stop() of a
    connected client that receives nothing."""
    import os
    import threading

    from benchmarks._emulator import Gateway
    from benchmarks.figures.idle import stop_ms, wakeups

    before = wakeups(os.getpid())
    threading.Event().wait(0.01)  # blocks, so this thread switches out at least once
    assert wakeups(os.getpid()) > before
    with Gateway() as gw:
        assert 0 < stop_ms(gw) < 30_000
