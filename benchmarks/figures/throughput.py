"""Figure 1: throughput of a trivial chatbot handler, and client CPU per message.

Per run and client: a fresh emulator and client process; once connected, a warm-up burst, then
``frames`` pre-serialised chatbot frames pushed back to back from the emulator's sender thread.
Throughput = frames / (first push -> last ack seen by the emulator). CPU per message = the
client process's user+system CPU over that window (from /proc) / frames. The emulator's push rate
and its process CPU over the window are reported beside, to show it is not the bottleneck.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional

from .._context import BenchContext
from .._emulator import BenchError, Gateway
from .._proc import ClientProcess
from .._results import Row, Summary, summarize


def measure(ctx: BenchContext, kind: str, frames: int, tag: str) -> Dict[str, float]:
    """One run of one client: returns msgs/s, client CPU µs/msg and emulator figures."""
    with Gateway() as gw, ClientProcess(kind, gw.env(), ctx.log_path(f"{tag}-{kind}")) as client:
        try:
            gw.wait_connected(timeout=30, alive=client.alive)
            if ctx.warmup:
                gw.burst(ctx.warmup).wait_acked(timeout=30)
            time.sleep(0.3)  # let the warm-up's tail (GC, thread wake-ups) settle
            cpu0 = client.cpu()
            burst = gw.burst(frames)
            burst.wait_acked(timeout=max(30.0, frames / 500))
            cpu1 = client.cpu()
        except BenchError as exc:
            raise BenchError(f"{kind}: {exc}\n--- client log ---\n{client.tail()}") from None
        sample = {
            "msgs_per_s": frames / burst.elapsed,
            "cpu_us_per_msg": (cpu1 - cpu0) / frames * 1e6,
            "elapsed_s": burst.elapsed,
        }
        sample.update(burst.emulator_figures())
    return sample


def collect(
    ctx: BenchContext, frames: int, runs: int, label: str
) -> Dict[str, List[Dict[str, float]]]:
    """``runs`` rounds over every client, the order rotated each round to spread drift."""
    samples: Dict[str, List[Dict[str, float]]] = {kind: [] for kind in ctx.clients}
    for run in range(runs):
        order = ctx.clients[run % len(ctx.clients) :] + ctx.clients[: run % len(ctx.clients)]
        for kind in order:
            sample = measure(ctx, kind, frames, f"{label}-run{run}")
            samples[kind].append(sample)
            ctx.log(
                f"{label} run {run + 1}/{runs} {kind:8s} {sample['msgs_per_s']:9,.0f} msgs/s "
                f"{sample['cpu_us_per_msg']:6.1f} µs/msg | emulator push "
                f"{sample['push_rate']:,.0f}/s, CPU {sample['emulator_cpu_pct']:.0f} %"
            )
    return samples


def _field(samples: Dict[str, List[Dict[str, float]]], kind: str, key: str) -> Optional[Summary]:
    return summarize([s[key] for s in samples.get(kind, [])])


def _paired(
    samples: Dict[str, List[Dict[str, float]]], a: str, b: str, key: str
) -> Optional[List[float]]:
    if not samples.get(a) or not samples.get(b):
        return None
    # A tiny run can take less CPU than one /proc tick (10 ms): no ratio for that pair.
    return [x[key] / y[key] for x, y in zip(samples[a], samples[b]) if y[key]] or None


def _runs_note(ctx: BenchContext) -> str:
    """Say so when this figure ran a different number of times than the table's header says."""
    return f"{ctx.throughput_runs} runs; " if ctx.throughput_runs != ctx.runs else ""


def _bound_note(samples: Dict[str, List[Dict[str, float]]]) -> str:
    """Say so when the emulator, not the raw loop, was the limit (a core nearly saturated)."""
    busy = summarize([s["emulator_cpu_pct"] for s in samples.get("raw", [])])
    if busy is None or busy.median < 85:
        return ""
    return (
        f"; the emulator used {busy.median:.0f} % of a core while serving it, so the true "
        "ceiling is at least this"
    )


def run(ctx: BenchContext) -> List[Row]:
    samples = collect(ctx, ctx.frames, ctx.throughput_runs, "throughput")
    ctx.raw["throughput"] = samples
    every = [s for kind in samples for s in samples[kind]]
    push = summarize([s["push_rate"] for s in every])
    emu_cpu = summarize([s["emulator_cpu_pct"] for s in every])
    emu_us = summarize([s["emulator_cpu_us_per_frame"] for s in every])
    emulator_note = ""
    if push and emu_cpu and emu_us:
        emulator_note = (
            f"{_runs_note(ctx)}emulator: push {push.lo:,.0f}–{push.hi:,.0f} frames/s, process CPU "
            f"{emu_cpu.median:.0f} % of a core ({emu_us.median:.0f} µs/frame incl. ack intake)"
        )
    raw_rate = _field(samples, "raw", "msgs_per_s")
    raw_cpu = _field(samples, "raw", "cpu_us_per_msg")
    rows = [
        Row(
            "1",
            f"Throughput, trivial handler, {ctx.frames:,} frames",
            "msgs/s",
            dingsync=_field(samples, "dingsync", "msgs_per_s"),
            official=_field(samples, "official", "msgs_per_s"),
            ratios=_paired(samples, "dingsync", "official", "msgs_per_s"),
            target="≥ 1.0× official",
            check=lambda d, o: d >= o,
            note=emulator_note,
        )
    ]
    if raw_rate is not None:
        of_raw = _paired(samples, "dingsync", "raw", "msgs_per_s")
        official_of_raw = _paired(samples, "official", "raw", "msgs_per_s")
        rows.append(
            Row(
                "1",
                "Throughput as % of the raw websocket-client loop",
                "%",
                dingsync=summarize([100 * r for r in of_raw or []]),
                official=summarize([100 * r for r in official_of_raw or []]),
                target="dingsync ≥ 85 %",
                show_ratio=False,
                check=lambda d, o: d >= 85,
                note=f"raw loop: {raw_rate.median:,.0f} msgs/s ({raw_rate.lo:,.0f}–{raw_rate.hi:,.0f})"
                + _bound_note(samples),
            )
        )
    cpu_note = (
        f"raw loop: {raw_cpu.median:.0f} µs/msg; client CPU from /proc over the push→last-ack window"
        if raw_cpu
        else "client CPU from /proc over the push→last-ack window"
    )
    rows.append(
        Row(
            "1",
            "Client CPU per message",
            "µs/msg",
            dingsync=_field(samples, "dingsync", "cpu_us_per_msg"),
            official=_field(samples, "official", "cpu_us_per_msg"),
            ratios=_paired(samples, "dingsync", "official", "cpu_us_per_msg"),
            target="≤ official",
            check=lambda d, o: d <= o,
            note=cpu_note,
        )
    )
    return rows
