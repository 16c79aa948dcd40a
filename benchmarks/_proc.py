"""Client processes: start, observe (CPU, RSS from /proc) and always clean up.

Every client runs in its own interpreter so that CPU and memory figures are its own and the
emulator (in the harness process) never shares a GIL with it. Observation is done from outside,
the same way for every client kind, so no client reports on itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Dict, Iterator, List, Mapping, Optional, Sequence

from ._emulator import BenchError

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
CLIENT_MODULES = {
    "dingsync": "benchmarks.clients.dingsync_client",
    "official": "benchmarks.clients.official_client",
    "raw": "benchmarks.clients.raw_client",
}
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def child_env(extra: Mapping[str, str]) -> Dict[str, str]:
    """The harness's environment plus ``extra``; proxies off, so loopback stays loopback.

    Bytecode caching stays on whatever the harness's shell says: an installed package has its
    ``.pyc`` files (pip writes them), so start-up figures measured without them would charge
    every import a compile that no deployment pays.
    """
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all its threads, dead ones included), from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    fields = raw[raw.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process, from /proc/<pid>/statm."""
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


class ClientProcess:
    """One benchmark client (``kind`` in :data:`CLIENT_MODULES`) in its own process.

    Use as a context manager: the process is terminated (then killed) on exit, whatever happens.
    Its stdout and stderr go to ``log_path``.
    """

    def __init__(
        self,
        kind: str,
        env: Mapping[str, str],
        log_path: Path,
        args: Sequence[str] = (),
        max_seconds: float = 600.0,
    ) -> None:
        self.kind = kind
        self.log_path = log_path
        self._cmd: List[str] = [
            PYTHON,
            "-m",
            CLIENT_MODULES[kind],
            "--max-seconds",
            str(max_seconds),
            *args,
        ]
        self._env = child_env(env)
        self._log: Optional[IO[bytes]] = None
        self.proc: Optional[subprocess.Popen[bytes]] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    def start(self) -> ClientProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self._cmd,
            cwd=REPO,
            env=self._env,
            stdin=subprocess.PIPE,  # closed when the harness goes: the client's watchdog exits
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def stop(self, timeout: float = 5.0) -> Optional[int]:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode

    def __enter__(self) -> ClientProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def blamed(self) -> Iterator[None]:
        """A :class:`BenchError` raised inside names this client and ends with its log."""
        try:
            yield
        except BenchError as exc:
            raise BenchError(f"{self.kind}: {exc}\n--- client log ---\n{self.tail()}") from None

    def tail(self, lines: int = 20) -> str:
        """The end of the client's log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def timed_run(
    cmd: Sequence[str], env: Mapping[str, str], timeout: float = 60.0
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Run ``cmd`` to completion (killed after ``timeout``); returns (wall seconds, result)."""
    started = time.perf_counter()
    result = subprocess.run(
        list(cmd), cwd=REPO, env=child_env(env), capture_output=True, timeout=timeout, check=False
    )
    return time.perf_counter() - started, result
