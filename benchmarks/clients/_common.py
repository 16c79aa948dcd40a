"""What every benchmark client shares: its command line and a watchdog that bounds its life."""

from __future__ import annotations

import argparse
import os
import select
import sys
import threading
from typing import Optional, Sequence


def parse_args(description: str, argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--handler",
        choices=("trivial", "sleep"),
        default="trivial",
        help="trivial: parse the message and return; sleep: also time.sleep(--sleep)",
    )
    parser.add_argument(
        "--sleep", type=float, default=0.05, help="seconds the sleep handler blocks"
    )
    parser.add_argument(
        "--dead-after", type=float, default=None, help="dingsync StreamConfig.dead_after"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="dingsync StreamConfig.concurrency"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="exit by itself after this long"
    )
    return parser.parse_args(argv)


def start_watchdog(max_seconds: float) -> None:
    """Exit the process when the harness (our parent) is gone or ``max_seconds`` have passed.

    A daemon thread waits on stdin, a pipe from the harness that closes when the harness goes
    (crashed or not), so no client is left behind, and the thread never wakes meanwhile (the
    idle figure counts wake-ups).
    """

    def watch() -> None:
        select.select([sys.stdin], [], [], max_seconds)
        sys.stderr.write("benchmark client: watchdog exit\n")
        sys.stderr.flush()
        os._exit(3)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()
