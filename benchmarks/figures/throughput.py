"""Figure 1: throughput of a trivial chatbot handler, and client CPU per message.

Per run: a fresh emulator and client process for every client kind, all started and warmed up
(a 200-frame burst) before any measuring. Then ``cycles`` cycles: in each, every client in turn
receives one burst of ``frames`` pre-serialised chatbot frames, pushed back to back from its
emulator's sender thread, while the other clients sit idle. Throughput = frames / (first push ->
last ack seen by the emulator). CPU per message = the client process's user+system CPU over that
window (from /proc) / frames. The emulator's push rate and its process CPU over the window are
reported beside, to show it is not the bottleneck.

Why bursts interleave across live processes: on a shared virtual machine the speed of a core
drifts by tens of percent over seconds (the raw loop's own CPU per message varies up to 2x). A
client's burst and its rival's are then a fraction of a second apart, instead of the few seconds
a fresh process costs, so each ratio compares the clients at nearly the same machine speed.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Dict, List, Optional, Tuple

from .._context import BenchContext
from .._emulator import Gateway
from .._proc import ClientProcess
from .._results import Row, Summary, summarize

Live = Dict[str, Tuple[Gateway, ClientProcess]]


def measure(gw: Gateway, client: ClientProcess, frames: int) -> Dict[str, float]:
    """One burst to one connected, warm client: msgs/s, client CPU µs/msg, emulator figures."""
    time.sleep(0.3)  # let the previous burst's tail (GC, thread wake-ups, acks) settle
    cpu0 = client.cpu()
    burst = gw.burst(frames)
    burst.wait_acked(timeout=max(30.0, frames / 500))
    cpu1 = client.cpu()
    sample = {
        "msgs_per_s": frames / burst.elapsed,
        "cpu_us_per_msg": (cpu1 - cpu0) / frames * 1e6,
        "elapsed_s": burst.elapsed,
    }
    sample.update(burst.emulator_figures())
    return sample


def start_all(ctx: BenchContext, stack: ExitStack, tag: str) -> Live:
    """Start every client with its own emulator, then wait until each is connected and warm."""
    live: Live = {}
    for kind in ctx.clients:
        gw = stack.enter_context(Gateway())
        log = ctx.log_path(f"{tag}-{kind}")
        live[kind] = gw, stack.enter_context(ClientProcess(kind, gw.env(), log))
    for gw, client in live.values():
        with client.blamed():
            gw.wait_connected(timeout=30, alive=client.alive)
            if ctx.warmup:
                gw.burst(ctx.warmup).wait_acked(timeout=30)
    return live


def collect(
    ctx: BenchContext, frames: int, runs: int, label: str
) -> Dict[str, List[Dict[str, float]]]:
    """``runs`` runs of ``ctx.throughput_cycles`` cycles; the clients' order rotates each cycle
    to spread drift. Samples of the same index belong to the same cycle (the pairs)."""
    samples: Dict[str, List[Dict[str, float]]] = {kind: [] for kind in ctx.clients}
    cycles = ctx.throughput_cycles
    for run in range(runs):
        with ExitStack() as stack:
            live = start_all(ctx, stack, f"{label}-run{run}")
            for cycle in range(cycles):
                turn = (run * cycles + cycle) % len(ctx.clients)
                for kind in ctx.clients[turn:] + ctx.clients[:turn]:
                    gw, client = live[kind]
                    with client.blamed():
                        sample = measure(gw, client, frames)
                    samples[kind].append(sample)
                    ctx.log(
                        f"{label} run {run + 1}/{runs} cycle {cycle + 1}/{cycles} {kind:8s} "
                        f"{sample['msgs_per_s']:9,.0f} msgs/s "
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
    """How many bursts each client got (the table's header counts runs, not bursts)."""
    return (
        f"{ctx.throughput_runs} runs × {ctx.throughput_cycles} interleaved bursts; "
        if ctx.throughput_cycles > 1 or ctx.throughput_runs != ctx.runs
        else ""
    )


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
