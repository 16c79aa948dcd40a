"""Figure 8: the gateway stops reading in the middle of a burst.

The emulator stops reading the client's socket (``fake.stall()``: no pongs, acks no longer
taken) 5 ms after it starts pushing a 5,000-frame burst, while the client is writing acks.
Measured: the stall -> the next connection opened (emulator clock). dingsync with
``dead_after=2`` and with the default (25 s); the official SDK with its defaults (one run, it
takes about a minute). "never" = not replaced within the limit.
"""

from __future__ import annotations

import time
from typing import Dict, List, Optional, Tuple

from .._context import BenchContext
from .._emulator import Gateway, wait_until
from .._proc import ClientProcess
from .._results import Row, summarize


def measure(ctx: BenchContext, kind: str, dead_after: Optional[float], tag: str) -> float:
    """Seconds from the stall to the next connection; infinity if none came within the limit."""
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
        time.sleep(1.0)
        fake = gw.fake
        frames = fake.prepare_chatbot(5000, text="hello bench {i}")
        fake.push_many(frames)
        time.sleep(0.005)
        stuck = fake.stall()
        stalled_at = fake.now()
        if not wait_until(
            lambda: any(c is not stuck and c.alive for c in fake.connections), limit, 0.02
        ):
            return float("inf")
        new = min((c for c in fake.connections if c is not stuck), key=lambda c: c.opened_at)
        return new.opened_at - stalled_at


def run(ctx: BenchContext) -> List[Row]:
    plans: List[Tuple[str, Optional[float], int]] = []
    if "dingsync" in ctx.clients:
        plans.append(("dingsync", 2.0, ctx.zombie_runs))
        if ctx.zombie_default_dead_after:
            plans.append(("dingsync", None, 1))
    if "official" in ctx.clients and ctx.zombie_default_dead_after:
        plans.append(("official", None, 1))
    samples: Dict[str, List[float]] = {}
    for kind, dead_after, runs in plans:
        key = f"{kind}/dead_after={dead_after if dead_after is not None else 'default'}"
        samples[key] = []
        for i in range(runs):
            seconds = measure(ctx, kind, dead_after, f"stall-{kind}-{dead_after}-run{i}")
            samples[key].append(seconds)
            ctx.log(f"stall mid-burst {key} run {i + 1}/{runs}: replaced after {seconds:.2f} s")
    ctx.raw["stalls"] = samples
    skipped = "" if ctx.zombie_default_dead_after else "skipped in --quick; "
    return [
        Row(
            "8",
            "Peer stops reading mid-burst: connection replaced after, default settings",
            "s",
            dingsync=summarize(samples.get("dingsync/dead_after=default", [])),
            official=summarize(samples.get("official/dead_after=default", [])),
            target="dingsync ≤ 26 s (dead_after + 1)",
            check=lambda d, o: d <= 26.0,
            note=f"{skipped}one run each (≈ 1 min for the official SDK)",
        ),
        Row(
            "8",
            "Peer stops reading mid-burst: connection replaced after, dingsync dead_after=2",
            "s",
            dingsync=summarize(samples.get("dingsync/dead_after=2.0", [])),
            target="≤ 3 s (dead_after + 1)",
            check=lambda d, o: d <= 3.0,
            note="the write deadline and the watchdog are both dead_after",
        ),
    ]
