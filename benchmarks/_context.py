"""What every figure receives: sizes for this mode, where to log, and a progress printer."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List


@dataclass
class BenchContext:
    quick: bool = False
    runs: int = 5
    throughput_runs: int = 5
    throughput_cycles: int = 4  # interleaved bursts per client and run: the noisiest figure
    log_dir: Path = Path("benchmarks/results/logs")
    verbose: bool = True
    # figure sizes (run.py fills them from the mode; tests shrink them)
    frames: int = 5000
    warmup: int = 200
    blocking_messages: int = 100
    reconnect_seconds: float = 15.0
    reconnect_runs: int = 3
    zombie_runs: int = 3
    zombie_default_dead_after: bool = True  # the ~25 s dingsync and ~60 s official runs
    import_runs: int = 15
    growth_warmup: int = 200_000  # twice StreamConfig().dedupe_max_entries (footprint.py)
    idle_runs: int = 1
    idle_seconds: float = 30.0
    growth_messages: int = 100_000
    clients: List[str] = field(default_factory=lambda: ["dingsync", "official", "raw"])
    raw: Dict[str, Any] = field(default_factory=dict)  # raw samples, saved in the JSON

    def log(self, message: str) -> None:
        if self.verbose:
            stamp = time.strftime("%H:%M:%S")
            print(f"[{stamp}] {message}", file=sys.stderr, flush=True)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"
