"""Figure 5: start-up and memory.

- Import time: wall time of a fresh ``python -c "import X"`` (interpreter start included, as a
  user's script pays it), median of ``import_runs``, the statements interleaved; one warm-up run
  each first so that bytecode caches exist. ``-X importtime`` names the top offenders.
- Idle RSS: a connected client that has handled nothing, 3 s after it connected (/proc statm).
- RSS growth: after a warm-up of ``growth_warmup`` messages, RSS before and after
  ``growth_messages`` more (chunks of 10,000, each acked before the next). The warm-up is
  twice ``dedupe_max_entries`` (200,000): the first half fills dingsync's memory dedupe store
  to its bound, and in the second the store's hash table resizes once as entries start to
  come and go (+5.7 MiB at 100,000 entries, then flat through 500,000 messages: a table
  reaching its steady size, not a leak). Growth after that is what a long run would show.
"""

from __future__ import annotations

import re
import time
from statistics import median
from typing import Any, Dict, List, Tuple

from .._context import BenchContext
from .._emulator import BenchError, Gateway
from .._proc import PYTHON, ClientProcess, timed_run
from .._results import Row, summarize

MiB = 1024 * 1024
IMPORTS = {
    "bare interpreter": "pass",
    "dingsync": "import dingsync",
    "dingsync receive path": "from dingsync import StreamClient, Router",
    "official": "import dingtalk_stream",
}
_IMPORTTIME = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def import_times(ctx: BenchContext) -> Dict[str, List[float]]:
    out: Dict[str, List[float]] = {name: [] for name in IMPORTS}
    names = list(IMPORTS)
    for i in range(ctx.import_runs + 1):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            wall, result = timed_run([PYTHON, "-c", IMPORTS[name]], {})
            if result.returncode != 0:
                raise BenchError(f"{IMPORTS[name]!r} failed: {result.stderr.decode()[-500:]}")
            if i:  # run 0 warms the bytecode caches
                out[name].append(wall)
    return out


def _importtime(statement: str) -> List[Tuple[int, str, float, float]]:
    """``-X importtime`` rows: (depth, module, cumulative ms, self ms)."""
    _, result = timed_run([PYTHON, "-X", "importtime", "-c", statement], {})
    rows = []
    for line in result.stderr.decode().splitlines():
        m = _IMPORTTIME.match(line)
        if m:
            depth = (len(m.group(3)) + 1) // 2
            rows.append((depth, m.group(4), int(m.group(2)) / 1000, int(m.group(1)) / 1000))
    return rows


def import_offenders(statement: str, top: int = 10) -> Tuple[float, List[Tuple[str, float, float]]]:
    """(total ms, [(module, cumulative ms, self ms)]): the heaviest packages ``statement`` imports
    (top-level packages at any depth, plus the modules of the measured package itself), without
    what the bare interpreter imports at start-up (site, encodings...)."""
    startup = {name for _, name, _, _ in _importtime("pass")}
    rows = [r for r in _importtime(statement) if r[1] not in startup]
    total = sum(cum for depth, _, cum, _ in rows if depth == 1)
    roots = {name for depth, name, _, _ in rows if depth == 1}
    wanted = [
        (name, cum, own)
        for _, name, cum, own in rows
        if "." not in name or name.split(".")[0] in roots
    ]
    wanted.sort(key=lambda r: -r[1])
    return total, wanted[:top]


def idle_rss(ctx: BenchContext, kind: str, tag: str) -> float:
    with Gateway() as gw, ClientProcess(kind, gw.env(), ctx.log_path(f"{tag}-{kind}")) as client:
        with client.blamed():
            gw.wait_connected(timeout=30, alive=client.alive)
        time.sleep(3.0)
        return client.rss() / MiB


def rss_growth(ctx: BenchContext, kind: str, tag: str) -> Dict[str, Any]:
    total = ctx.growth_messages
    chunk = min(10_000, total)
    with Gateway() as gw, ClientProcess(kind, gw.env(), ctx.log_path(f"{tag}-{kind}")) as client:
        with client.blamed():
            gw.wait_connected(timeout=30, alive=client.alive)
            for _ in range(0, ctx.growth_warmup, chunk):  # bounded caches reach their steady size
                gw.burst(chunk).wait_acked(timeout=120)
            time.sleep(1.0)
            before = client.rss() / MiB
            trace = [before]
            done = 0
            while done < total:
                n = min(chunk, total - done)
                gw.burst(n).wait_acked(timeout=120)
                done += n
                trace.append(client.rss() / MiB)
            time.sleep(1.0)
            after = client.rss() / MiB
    return {"before": before, "after": after, "growth": after - before, "trace": trace}


def run(ctx: BenchContext) -> List[Row]:
    rows: List[Row] = []
    imports = import_times(ctx)
    ctx.raw["imports"] = imports
    offenders = {name: import_offenders(IMPORTS[name]) for name in ("dingsync", "official")}
    offenders["dingsync receive path"] = import_offenders(IMPORTS["dingsync receive path"])
    ctx.raw["import_offenders"] = offenders
    ctx.log("import: " + ", ".join(f"{k} {median(v) * 1000:.0f} ms" for k, v in imports.items()))
    rows.append(
        Row(
            "5",
            '`python -c "import …"` wall time, fresh process',
            "ms",
            dingsync=summarize([t * 1000 for t in imports["dingsync"]]),
            official=summarize([t * 1000 for t in imports["official"]]),
            target="≤ 0.5× official",
            check=lambda d, o: d <= 0.5 * o,
            note=(
                f"bare interpreter {median(imports['bare interpreter']) * 1000:.0f} ms; "
                "`from dingsync import StreamClient, Router` "
                f"{median(imports['dingsync receive path']) * 1000:.0f} ms"
            ),
        )
    )

    kinds = [k for k in ("dingsync", "official", "raw") if k in ctx.clients]
    idle: Dict[str, List[float]] = {k: [] for k in kinds}
    for i in range(max(1, min(ctx.runs, 3))):
        for kind in kinds:
            idle[kind].append(idle_rss(ctx, kind, f"idle-run{i}"))
    ctx.raw["idle_rss_mib"] = idle
    ctx.log("idle RSS: " + ", ".join(f"{k} {median(v):.1f} MiB" for k, v in idle.items()))
    raw_idle = summarize(idle.get("raw", []))
    rows.append(
        Row(
            "5",
            "Idle RSS of a connected client",
            "MiB",
            dingsync=summarize(idle.get("dingsync", [])),
            official=summarize(idle.get("official", [])),
            target="≤ 0.9× official",
            check=lambda d, o: d <= 0.9 * o,
            note=f"raw websocket-client loop: {raw_idle.median:.1f} MiB" if raw_idle else "",
        )
    )

    growth: Dict[str, Dict[str, Any]] = {}
    for kind in (k for k in ("dingsync", "official") if k in ctx.clients):
        growth[kind] = rss_growth(ctx, kind, "growth")
        g = growth[kind]
        ctx.log(
            f"RSS growth {kind}: {g['before']:.1f} → {g['after']:.1f} MiB "
            f"over {ctx.growth_messages:,} messages"
        )
    ctx.raw["rss_growth"] = growth
    rows.append(
        Row(
            "5",
            f"RSS growth over {ctx.growth_messages:,} messages (after warm-up)",
            "MiB",
            dingsync=summarize([growth["dingsync"]["growth"]] if "dingsync" in growth else []),
            official=summarize([growth["official"]["growth"]] if "official" in growth else []),
            target="dingsync < 5 MiB",
            show_ratio=False,
            check=lambda d, o: d < 5.0,
            note="one run each; "
            + "; ".join(
                f"{k}: {g['before']:.0f} → {g['after']:.0f} MiB" for k, g in growth.items()
            ),
        )
    )
    return rows


def offenders_markdown(offenders: Dict[str, Any]) -> str:
    """The ``-X importtime`` findings as markdown, for benchmarks/README.md."""
    parts = []
    for name, (total, top) in offenders.items():
        statement = IMPORTS[name]
        parts.append(f"`{statement}` — {total:.0f} ms of imports (`-X importtime`, one run):\n")
        parts.append("| module | cumulative | self |\n|---|---|---|")
        parts.extend(f"| `{mod}` | {cum:.1f} ms | {own:.1f} ms |" for mod, cum, own in top)
        parts.append("")
    return "\n".join(parts)
