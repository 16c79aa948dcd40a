"""Figure 3: a push every 50 ms while the gateway (a) sends SYSTEM disconnect, (b) drops the TCP
connection abruptly, half-way through.

(a) ``fake.disconnect(close_after=10)``: the real gateway's behaviour (disconnect, then close
after 10 s); the emulator routes new pushes away from the draining connection at once.
(b) ``fake.drop()``: TCP shut down, no close frame.

While no connection exists the emulator keeps pushes pending and delivers them on the next
connection (as the real gateway is assumed to do), so a gap shows up as *delay*; *lost* = pushed
but never acked by the end (frames in flight on a dying socket, or acks sent to a dead one).
Reported per run: time from the fault to the next connection, pushes lost, pushes delayed
(> 1 s from push to ack), and lost pushes made after the new connection was up.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Tuple

from .._context import BenchContext
from .._emulator import BenchError, Gateway, wait_until
from .._proc import ClientProcess
from .._results import Row, summarize

INTERVAL = 0.05
DELAYED = 1.0  # a push acked later than this counts as delayed


def _push_steadily(
    gw: Gateway, duration: float, fault: Any
) -> Tuple[List[Tuple[str, float]], float]:
    """Push every ``INTERVAL`` for ``duration`` s, calling ``fault()`` half-way; returns
    [(messageId, pushed_at)] and the fault time (emulator clock)."""
    fake = gw.fake
    pushed: List[Tuple[str, float]] = []
    fault_at = 0.0
    start = time.monotonic()
    ticks = int(duration / INTERVAL)
    for i in range(ticks):
        delay = start + i * INTERVAL - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if i == ticks // 2:
            fault_at = fake.now()
            fault()
        at = fake.now()
        pushed.append((fake.push_chatbot(f"tick {i}"), at))
    return pushed, fault_at


def measure(ctx: BenchContext, kind: str, scenario: str, tag: str) -> Dict[str, float]:
    duration = ctx.reconnect_seconds
    with Gateway() as gw, ClientProcess(kind, gw.env(), ctx.log_path(f"{tag}-{kind}")) as client:
        with client.blamed():
            gw.wait_connected(timeout=30, alive=client.alive)
            fake = gw.fake
            first = fake.live_connections[-1]
            if scenario == "disconnect":
                pushed, fault_at = _push_steadily(
                    gw, duration, lambda: fake.disconnect(close_after=10.0)
                )
            else:
                pushed, fault_at = _push_steadily(gw, duration, lambda: fake.drop())
            # Grace: the official SDK waits 10 s after a connection error before reconnecting.
            mids = [m for m, _ in pushed]
            wait_until(lambda: all(gw.acked(m) for m in mids), timeout=15.0, interval=0.05)
            wait_until(lambda: len(fake.connections) > 1, timeout=1.0)
        later = [c for c in fake.connections if c is not first and c.opened_at >= fault_at]
        if not later:
            raise BenchError(f"{kind}: never reconnected after {scenario}\n{client.tail()}")
        new = min(later, key=lambda c: c.opened_at)
        old_closed = first.closed_at if first.closed_at is not None else float("inf")
        lost = [(m, at) for m, at in pushed if not gw.acked(m)]
        delays = [gw.ack_at(m) - at for m, at in pushed if gw.acked(m)]  # type: ignore[operator]
        return {
            "reconnect_s": new.opened_at - fault_at,
            "gap_s": max(0.0, new.opened_at - min(old_closed, new.opened_at)),
            "pushed": float(len(pushed)),
            "lost": float(len(lost)),
            "lost_after_reconnect": float(sum(1 for _, at in lost if at >= new.opened_at)),
            "delayed": float(sum(1 for d in delays if d > DELAYED)),
            "max_delay_s": max(delays) if delays else 0.0,
        }


def run(ctx: BenchContext) -> List[Row]:
    kinds = [k for k in ("dingsync", "official") if k in ctx.clients]
    rows: List[Row] = []
    runs = ctx.reconnect_runs
    for scenario in ("disconnect", "drop"):
        samples: Dict[str, List[Dict[str, float]]] = {k: [] for k in kinds}
        for i in range(runs):
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                s = measure(ctx, kind, scenario, f"reconnect-{scenario}-run{i}")
                samples[kind].append(s)
                ctx.log(
                    f"reconnect/{scenario} run {i + 1}/{runs} {kind:8s} new connection after "
                    f"{s['reconnect_s']:.2f} s (gap {s['gap_s']:.2f} s), {s['pushed']:.0f} pushed, "
                    f"{s['lost']:.0f} lost ({s['lost_after_reconnect']:.0f} after reconnect), "
                    f"{s['delayed']:.0f} delayed (max {s['max_delay_s']:.2f} s)"
                )
        ctx.raw[f"reconnect_{scenario}"] = samples
        rows.extend(_rows(ctx, scenario, samples))
    return rows


def _rows(
    ctx: BenchContext, scenario: str, samples: Dict[str, List[Dict[str, float]]]
) -> List[Row]:
    def pick(kind: str, key: str) -> Any:
        return summarize([s[key] for s in samples.get(kind, [])])

    def max_delay(kind: str) -> str:
        values = [s["max_delay_s"] for s in samples.get(kind, [])]
        return f"{kind} {max(values):.2f} s" if values else f"{kind} —"

    pushes = int(ctx.reconnect_seconds / INTERVAL)
    label = "(a) SYSTEM disconnect" if scenario == "disconnect" else "(b) abrupt drop"
    dingsync = samples.get("dingsync", [])
    rows = []
    if scenario == "disconnect":
        rows.append(
            Row(
                "3",
                f"Reconnect {label}: gap without a connection",
                "s",
                dingsync=pick("dingsync", "gap_s"),
                official=pick("official", "gap_s"),
                target="(reported; 0 = make-before-break)",
                show_ratio=False,
                note="the emulator closes the old connection 10 s after the disconnect",
            )
        )
    else:
        rows.append(
            Row(
                "3",
                f"Reconnect {label}: new connection after",
                "s",
                dingsync=pick("dingsync", "reconnect_s"),
                official=pick("official", "reconnect_s"),
                target="dingsync ≤ 1 s",
                check=lambda d, o: d <= 1.0,
            )
        )
    rows.append(
        Row(
            "3",
            f"Reconnect {label}: pushes lost, of {pushes} (one per 50 ms for "
            f"{ctx.reconnect_seconds:g} s)",
            "",
            dingsync=pick("dingsync", "lost"),
            official=pick("official", "lost"),
            target="0 lost" if scenario == "disconnect" else "none lost once reconnected",
            check=(lambda d, o: d == 0)
            if scenario == "disconnect"
            else (lambda d, o: all(s["lost_after_reconnect"] == 0 for s in dingsync)),
            show_ratio=False,
            note="lost = pushed, never acked",
        )
    )
    rows.append(
        Row(
            "3",
            f"Reconnect {label}: pushes delayed > {DELAYED:g} s",
            "",
            dingsync=pick("dingsync", "delayed"),
            official=pick("official", "delayed"),
            target="(reported)",
            show_ratio=False,
            note=f"longest push → ack: {max_delay('dingsync')}, {max_delay('official')}; "
            "pushes made while no connection exists wait in the emulator",
        )
    )
    return rows
