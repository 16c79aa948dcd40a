"""Outputs: the markdown table with its header, the chart, the JSON file and the README sections."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ._results import Row, Summary, markdown_table, summarize

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def machine_note() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = os.cpu_count() or 0
    return (
        f"{cores} cores{f' ({model})' if model else ''}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("dingsync", "dingtalk-stream", "websocket-client", "websockets", "requests"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def header(mode: str, runs: int) -> str:
    v = versions()
    return (
        f"dingsync {v['dingsync']} vs the official `dingtalk-stream` {v['dingtalk-stream']} SDK "
        f"on the local emulator (`dingsync.testing.FakeDingTalk`), each client in its own process "
        f"(websocket-client {v['websocket-client']}, websockets {v['websockets']}). "
        f"{time.strftime('%Y-%m-%d')}, {machine_note()}; {mode} mode, medians of {runs} runs "
        f"(min–max) unless a row says otherwise; ratio = dingsync ÷ official. "
        f"Method: [benchmarks/README.md](benchmarks/README.md). Regenerate: `make bench`."
    )


def table_markdown(rows: Sequence[Row], mode: str, runs: int, chart: Optional[str]) -> str:
    parts = [header(mode, runs), "", markdown_table(rows)]
    if chart:
        parts += ["", f"![dingsync vs the official SDK]({chart})"]
    return "\n".join(parts) + "\n"


def write_json(path: Path, rows: Sequence[Row], raw: Dict[str, Any], meta: Dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "rows": [r.to_dict() for r in rows], "raw": raw}
    path.write_text(json.dumps(payload, indent=1, default=str, ensure_ascii=False))


def replace_between(text: str, start: str, end: str, body: str) -> str:
    """Replace what lies between the markers (appending them at the end when absent)."""
    block = f"{start}\n{body.rstrip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def update_file(path: Path, start: str, end: str, body: str) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    path.write_text(replace_between(text, start, end, body), encoding="utf-8")


def chart(rows: Sequence[Row], raw: Dict[str, Any], path: Path) -> Optional[Path]:
    """A PNG of figures 1-4, dingsync vs official (the raw loop beside figure 1)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart (pip install matplotlib)", file=sys.stderr)
        return None

    def find(fig: str, starts: str) -> Optional[Row]:
        return next((r for r in rows if r.figure == fig and r.metric.startswith(starts)), None)

    panels: List[Tuple[str, List[Tuple[str, Optional[Summary]]]]] = []
    tp = find("1", "Throughput, trivial")
    if tp:
        bars: List[Tuple[str, Optional[Summary]]] = [
            ("dingsync", tp.dingsync),
            ("official", tp.official),
        ]
        raw_rate = raw.get("throughput", {}).get("raw")
        if raw_rate:
            bars.append(("raw loop", summarize([s["msgs_per_s"] for s in raw_rate])))
        panels.append(("1. Throughput, trivial handler\n(msgs/s, higher is better)", bars))
    for fig, starts, title in (
        ("2", "Blocking handler", "2. Blocking handler, 100 × 50 ms\n(wall s, lower is better)"),
        (
            "3",
            "Reconnect (b) abrupt drop: new connection",
            "3. Abrupt drop → new connection\n(s, lower is better)",
        ),
        (
            "4",
            "Zombie connection replaced after, default",
            "4. Zombie connection replaced\n(s, defaults, lower is better)",
        ),
    ):
        row = find(fig, starts)
        if row:
            panels.append((title, [("dingsync", row.dingsync), ("official", row.official)]))
    if not panels:
        return None
    colors = {"dingsync": "#2b7bb9", "official": "#d9822b", "raw loop": "#8a8a8a"}
    figure, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.6))
    if len(panels) == 1:
        axes = [axes]
    for ax, (title, bars) in zip(axes, panels):
        names = [n for n, s in bars if s is not None and s.median != float("inf")]
        sums = [s for n, s in bars if s is not None and s.median != float("inf")]
        meds = [s.median for s in sums]
        errs = [[m - s.lo for m, s in zip(meds, sums)], [s.hi - m for m, s in zip(meds, sums)]]
        ax.bar(names, meds, yerr=errs, capsize=4, color=[colors[n] for n in names])
        for x, (m, summary) in enumerate(zip(meds, sums)):
            ax.annotate(
                f"{m:,.0f}" if m >= 100 else f"{m:.3g}",
                (x, summary.hi),
                ha="center",
                va="bottom",
                fontsize=8,
                xytext=(0, 3),
                textcoords="offset points",
            )
        ax.margins(y=0.12)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    figure.suptitle(f"dingsync vs dingtalk-stream — {machine_note()}", fontsize=9)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
