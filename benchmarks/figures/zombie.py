"""Figures 4 and 9: a zombie connection (TCP open, no pongs, no frames; in figure 9 it stops
reading in the middle of a burst, while the client writes acks) and how long until it is
replaced.

``fake.stall()`` stops the emulator reading the socket (so websocket pings get no pong) and
pushing to it; the client only finds out by its own liveness checks. Measured: stall -> the next
connection opened (emulator clock). dingsync runs with the default ``dead_after`` (25 s) and with
``dead_after=2``; the official SDK has no such setting (websockets' 20 s ping + 20 s timeout, then
its 10 s sleep after a connection error), and a run takes about a minute, so it runs once.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

from .._context import BenchContext
from .._emulator import Gateway, wait_until
from .._proc import ClientProcess
from .._results import Row, summarize


def measure(
    ctx: BenchContext, kind: str, dead_after: Optional[float], tag: str, *, burst: bool = False
) -> float:
    """Seconds from the stall to the next connection; infinity if none came within the limit.
    ``burst``: stall 5 ms into a 5,000-frame burst, while the client writes acks (figure 9)."""
    args = ["--dead-after", str(dead_after)] if dead_after is not None else []
    limit = 3 * dead_after + 10 if dead_after is not None else 120.0
    with (
        Gateway() as gw,
        ClientProcess(
            kind, gw.env(), ctx.log_path(f"{tag}-{kind}"), args, max_seconds=limit + 60
        ) as client,
    ):
        with client.blamed():
            gw.wait_connected(timeout=30, alive=client.alive)
        time.sleep(1.0)  # a settled, healthy connection first
        fake = gw.fake
        if burst:
            fake.push_many(fake.prepare_chatbot(5000, text="hello bench {i}"))
            time.sleep(0.005)
        zombie = fake.stall()
        stalled_at = fake.now()
        replaced = wait_until(
            lambda: any(c is not zombie and c.alive for c in fake.connections), limit, 0.02
        )
        if not replaced:
            return float("inf")
        new = min((c for c in fake.connections if c is not zombie), key=lambda c: c.opened_at)
        return new.opened_at - stalled_at


def _samples(
    ctx: BenchContext, figure: str, *, burst: bool, default_runs: int
) -> Dict[str, List[float]]:
    """Replacement times by ``kind/dead_after=…``: dingsync with dead_after=2 and (but in
    --quick) its default, the official SDK (one run: it takes about a minute)."""
    samples: Dict[str, List[float]] = {}
    plans: List[Tuple[str, Optional[float], int]] = []
    if "dingsync" in ctx.clients:
        plans.append(("dingsync", 2.0, ctx.zombie_runs))
        if ctx.zombie_default_dead_after:
            plans.append(("dingsync", None, default_runs))
    if "official" in ctx.clients and ctx.zombie_default_dead_after:
        plans.append(("official", None, 1))
    for kind, dead_after, runs in plans:
        key = f"{kind}/dead_after={dead_after if dead_after is not None else 'default'}"
        samples[key] = []
        for i in range(runs):
            tag = f"{figure}-{kind}-{dead_after}-run{i}"
            seconds = measure(ctx, kind, dead_after, tag, burst=burst)
            samples[key].append(seconds)
            shown = f"{seconds:.2f} s" if seconds != float("inf") else "never (limit reached)"
            ctx.log(f"{figure} {key} run {i + 1}/{runs}: replaced after {shown}")
    ctx.raw[figure] = samples
    return samples


def run(ctx: BenchContext) -> List[Row]:
    samples = _samples(ctx, "zombie", burst=False, default_runs=ctx.zombie_runs)
    skipped = "" if ctx.zombie_default_dead_after else "skipped in --quick; "
    rows = [
        Row(
            "4",
            "Zombie connection replaced after, default settings",
            "s",
            dingsync=summarize(samples.get("dingsync/dead_after=default", [])),
            official=summarize(samples.get("official/dead_after=default", [])),
            target="dingsync ≤ 25 s (default dead_after)",
            check=lambda d, o: d <= 25.0,
            note=f"{skipped}official SDK: one run (≈ 1 min each); never = not replaced within the limit",
        ),
        Row(
            "4",
            "Zombie connection replaced after, dingsync dead_after=2",
            "s",
            dingsync=summarize(samples.get("dingsync/dead_after=2.0", [])),
            target="≤ 3 s",
            check=lambda d, o: d <= 3.0,
            note="the official SDK has no equivalent setting",
        ),
    ]
    return rows


def run_mid_burst(ctx: BenchContext) -> List[Row]:
    """Figure 9: the same, but the gateway stops reading 5 ms into a 5,000-frame burst."""
    samples = _samples(ctx, "stalls", burst=True, default_runs=1)
    skipped = "" if ctx.zombie_default_dead_after else "skipped in --quick; "
    return [
        Row(
            "9",
            "Peer stops reading mid-burst: connection replaced after, default settings",
            "s",
            dingsync=summarize(samples.get("dingsync/dead_after=default", [])),
            official=summarize(samples.get("official/dead_after=default", [])),
            target="dingsync ≤ 26 s (dead_after + 1)",
            check=lambda d, o: d <= 26.0,
            note=f"{skipped}one run each (≈ 1 min for the official SDK)",
        ),
        Row(
            "9",
            "Peer stops reading mid-burst: connection replaced after, dingsync dead_after=2",
            "s",
            dingsync=summarize(samples.get("dingsync/dead_after=2.0", [])),
            target="≤ 3 s (dead_after + 1)",
            check=lambda d, o: d <= 3.0,
            note="the write deadline and the watchdog are both dead_after",
        ),
    ]
