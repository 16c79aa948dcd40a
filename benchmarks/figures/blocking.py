"""Figure 2: a handler that blocks (``time.sleep(0.05)``, a stand-in for a ``requests`` call).

Per run and client (default settings): ``blocking_messages`` chatbot frames pushed at once, then a
SYSTEM ping right behind them. Wall time = first push -> last chatbot ack (emulator clock). Ping
latency = ping pushed -> its echo received. The official SDK runs handlers on its event loop, so
a blocking handler blocks everything, the ping's answer included.
"""

from __future__ import annotations

from typing import Dict, List

from dingsync import StreamConfig

from .._context import BenchContext
from .._emulator import Gateway
from .._proc import ClientProcess
from .._results import Row, summarize

SLEEP = 0.05


def measure(ctx: BenchContext, kind: str, tag: str) -> Dict[str, float]:
    count = ctx.blocking_messages
    args = ["--handler", "sleep", "--sleep", str(SLEEP)]
    with (
        Gateway() as gw,
        ClientProcess(kind, gw.env(), ctx.log_path(f"{tag}-{kind}"), args) as client,
    ):
        with client.blamed():
            gw.wait_connected(timeout=30, alive=client.alive)
            burst = gw.burst(count)
            ping_at = gw.fake.now()
            ping = gw.fake.ping()
            budget = count * SLEEP * 3 + 30
            burst.wait_acked(timeout=budget)
            gw.wait_acked([ping], timeout=budget)
        pong_at = gw.ack_at(ping)
        assert pong_at is not None
    sample = {"wall_s": burst.elapsed, "ping_ms": (pong_at - ping_at) * 1000}
    sample.update(burst.emulator_figures())
    return sample


def run(ctx: BenchContext) -> List[Row]:
    kinds = [k for k in ("dingsync", "official") if k in ctx.clients]
    samples: Dict[str, List[Dict[str, float]]] = {k: [] for k in kinds}
    runs = ctx.runs
    for i in range(runs):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            sample = measure(ctx, kind, f"blocking-run{i}")
            samples[kind].append(sample)
            ctx.log(
                f"blocking run {i + 1}/{runs} {kind:8s} wall {sample['wall_s']:.2f} s, "
                f"ping answered after {sample['ping_ms']:.0f} ms"
            )
    ctx.raw["blocking"] = samples

    def pick(kind: str, key: str) -> List[float]:
        return [s[key] for s in samples.get(kind, [])]

    ratios = None
    if samples.get("dingsync") and samples.get("official"):
        ratios = [d / o for d, o in zip(pick("dingsync", "wall_s"), pick("official", "wall_s"))]
    n = ctx.blocking_messages
    threads = StreamConfig().concurrency
    return [
        Row(
            "2",
            f"Blocking handler ({n} msgs × 50 ms sleep, defaults): wall time",
            "s",
            dingsync=summarize(pick("dingsync", "wall_s")),
            official=summarize(pick("official", "wall_s")),
            ratios=ratios,
            target="≤ 0.125× official (≥ 8× shorter)",
            check=lambda d, o: d * 8 <= o,
            note=f"serial floor {n * SLEEP:.2f} s; with {threads} handler threads (the default) ≥ "
            f"{-(-n // threads) * SLEEP:.2f} s ({-(-n // threads)} waves); emulator: push "
            f"{min(pick('dingsync', 'push_rate') + pick('official', 'push_rate') or [0]):,.0f}"
            "+ frames/s, CPU "
            f"{max(pick('dingsync', 'emulator_cpu_pct') + pick('official', 'emulator_cpu_pct') or [0]):.0f} % of a core at most",
        ),
        Row(
            "2",
            "SYSTEM ping pushed right after the burst: answered after",
            "ms",
            dingsync=summarize(pick("dingsync", "ping_ms")),
            official=summarize(pick("official", "ping_ms")),
            target="dingsync ≤ 10 ms",
            check=lambda d, o: d <= 10,
            note="ping push → its echo at the emulator",
        ),
    ]
