"""Figure 8: an idle connected client, and how often its threads wake up.

A client that waits for messages should cost nothing: no polling, no timers beyond its
keepalive. Measured: the context switches of every thread of the client process
(``voluntary_ctxt_switches + nonvoluntary_ctxt_switches`` in ``/proc/<pid>/task/*/status``)
over ``idle_seconds`` (30 s), after a 2 s settle, divided by the seconds. The harness's own
watchdog thread in the client blocks on its stdin pipe, so it adds nothing. Also: how long
``stop()`` takes on such a client (nothing to drain), in the harness's own process.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List

from .._context import BenchContext
from .._emulator import Gateway
from .._proc import ClientProcess
from .._results import Row, summarize


def wakeups(pid: int) -> int:
    """Context switches of every thread of ``pid`` so far."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        try:
            text = status.read_text()
        except OSError:  # the thread ended meanwhile
            continue
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def measure(ctx: BenchContext, kind: str, tag: str) -> float:
    """Wake-ups per second of an idle, connected ``kind`` client."""
    with (
        Gateway() as gw,
        ClientProcess(
            kind, gw.env(), ctx.log_path(tag), max_seconds=ctx.idle_seconds + 90
        ) as client,
    ):
        with client.blamed():
            gw.wait_connected(timeout=30, alive=client.alive)
        time.sleep(2.0)
        before, started = wakeups(client.pid), time.monotonic()
        time.sleep(ctx.idle_seconds)
        after, ended = wakeups(client.pid), time.monotonic()
    return (after - before) / (ended - started)


def stop_ms(gw: Gateway) -> float:
    """How long ``stop()`` takes on a connected client that is receiving nothing (ms)."""
    import dingsync

    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: None)
    fake = gw.fake
    client = dingsync.StreamClient(fake.credentials, route, endpoints=fake.endpoints).start()
    time.sleep(0.5)
    started = time.perf_counter()
    client.stop()
    return (time.perf_counter() - started) * 1000


def run(ctx: BenchContext) -> List[Row]:
    samples: Dict[str, List[float]] = {kind: [] for kind in ("dingsync", "official")}
    for kind in samples:
        if kind not in ctx.clients:
            continue
        for i in range(ctx.idle_runs):
            rate = measure(ctx, kind, f"idle-{kind}-run{i}")
            samples[kind].append(rate)
            ctx.log(f"idle {kind} run {i + 1}/{ctx.idle_runs}: {rate:.2f} wake-ups/s")
    stops: List[float] = []
    if "dingsync" in ctx.clients:
        with Gateway() as gw:
            stops = [stop_ms(gw) for _ in range(ctx.runs)]
        ctx.log(f"idle dingsync stop(): {', '.join(f'{ms:.1f} ms' for ms in stops)}")
    ctx.raw["idle"] = {**samples, "stop_ms": stops}
    return [
        Row(
            "8",
            f"Idle connected client: wake-ups per second over {ctx.idle_seconds:.0f} s",
            "/s",
            dingsync=summarize(samples["dingsync"]),
            official=summarize(samples["official"]),
            target="dingsync ≤ 0.2/s",
            check=lambda d, o: d <= 0.2,
            note="context switches of all the client's threads; dingsync pings a quiet "
            "connection every 12 s (its pong wakes the reader); nothing polls",
        ),
        Row(
            "8",
            "Idle connected client: stop() returns after",
            "ms",
            dingsync=summarize(stops),
            target="dingsync ≤ 100 ms",
            check=lambda d, o: d <= 100.0,
            note="in the harness's process, after 0.5 s connected; the official SDK has no stop()",
        ),
    ]
