"""What every benchmark client shares: its command line and a watchdog that bounds its life."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
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

    Checked once a second from a daemon thread, so a crashed harness never leaves clients behind.
    """
    parent = os.getppid()
    deadline = time.monotonic() + max_seconds

    def watch() -> None:
        while time.monotonic() < deadline and os.getppid() == parent:
            time.sleep(1.0)
        sys.stderr.write("benchmark client: watchdog exit\n")
        sys.stderr.flush()
        os._exit(3)

    threading.Thread(target=watch, name="bench-watchdog", daemon=True).start()
