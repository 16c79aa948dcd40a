"""Child processes that tests start (redis-server, dingworker replicas) and must never leak."""

from __future__ import annotations

import shutil
import subprocess
from typing import List

SETPRIV = shutil.which("setpriv")


def die_with_parent(argv: List[str]) -> List[str]:
    """``argv`` run so that the kernel kills it if the test process dies (Linux ``setpriv
    --pdeathsig``); teardown kills it anyway, this covers a test process killed hard."""
    if SETPRIV is None:
        return argv
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Terminate, then kill; never raises, never leaves a zombie."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL always ends it
        pass
