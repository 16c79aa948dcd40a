"""The chat window's page weight and first render, measured in Chromium (``make bench-chat``).

Page weight is the uncompressed size of the HTML, JS and CSS the page loads (goal: 150 KB).
First render is read from the browser's own timeline on loopback, for a fresh browser context
each time (no cache): first contentful paint, and ``chat-ready``, the mark chat.js sets once
the window is drawn and listening to the feed (goal: 500 ms). It is a benchmark, not a test:
the numbers depend on the machine.

Run::

    python -m benchmarks.chat_page [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from typing import Any, Dict, List

from benchmarks.chromium import launch
from dingsync.testing import FakeDingTalk

__all__ = ["measure", "main"]

WEIGHT_GOAL = 150 * 1024
RENDER_GOAL_MS = 500.0
_TIMING = """() => {
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    const ready = performance.getEntriesByName("chat-ready")[0];
    const nav = performance.getEntriesByType("navigation")[0];
    return {fcp: paint ? paint.startTime : null, ready: ready ? ready.startTime : null,
            dcl: nav.domContentLoadedEventEnd};
}"""


def measure(runs: int) -> Dict[str, Any]:
    """Load the page ``runs`` times; returns its weight and the timings of each load (ms)."""
    weights: Dict[str, int] = {}
    timings: List[Dict[str, float]] = []
    with FakeDingTalk() as fake, launch() as browser:
        for run in range(runs):
            context = browser.new_context()
            page = context.new_page()
            if run == 0:

                def count(response: Any) -> None:
                    kind = response.request.resource_type
                    if kind in ("document", "script", "stylesheet"):
                        weights[response.url] = len(response.body())

                page.on("response", count)
            page.goto(fake.api_base + "/", wait_until="load")
            page.wait_for_function("performance.getEntriesByName('chat-ready').length > 0")
            page.wait_for_function(
                "performance.getEntriesByName('first-contentful-paint').length > 0"
            )
            timings.append(page.evaluate(_TIMING))
            context.close()
    return {"weights": weights, "timings": timings}


def _row(name: str, values: List[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return (
        f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} | {p95:.1f}"
        f" | {max(values):.1f} |"
        f" {'yes' if p95 <= RENDER_GOAL_MS else 'NO'} |"
    )


def main(argv: List[str]) -> int:
    """Print the results as Markdown tables; exit 1 when a goal is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)
    result = measure(args.runs)
    weights: Dict[str, int] = result["weights"]
    total = sum(weights.values())
    print("| file | bytes |\n|---|---:|")
    for url, size in sorted(weights.items(), key=lambda item: -item[1]):
        print(f"| {url.split('/', 3)[-1] or '/'} | {size:,} |")
    print(f"| **total** (goal {WEIGHT_GOAL:,}) | **{total:,}** |\n")
    timings: List[Dict[str, float]] = result["timings"]
    # The machine's load says how much of the time was spent waiting for a CPU.
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.runs} loads, fresh context each, loopback; load average {load}:\n")
    print("| ms | min | median | p95 | max | p95 within 500 ms |")
    print("|---|---:|---:|---:|---:|---|")
    print(_row("first contentful paint", [t["fcp"] for t in timings]))
    print(_row("DOMContentLoaded", [t["dcl"] for t in timings]))
    print(_row("chat-ready (window drawn, feed open)", [t["ready"] for t in timings]))
    late = statistics.median(t["ready"] for t in timings) > RENDER_GOAL_MS
    return 1 if total > WEIGHT_GOAL or late else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
