"""Figure 7: HTTP callbacks through ``dingworker --http`` (reference/http-callbacks.md).

A ``dingworker --http`` process serves ``clients/http_app.py`` (trivial handlers) with
waitress; the emulator in the harness POSTs to it as DingTalk does: robot messages signed,
events encrypted, each answer checked (an event's must decrypt to ``success``).

- **Throughput**: a burst of robot messages, then one of events, queued at once; the emulator's
  8 sender threads POST them (one keep-alive connection each). Rate = burst size / (last
  answer - first push). The emulator signs and encrypts in the harness process, so the figure
  is a floor for the worker.
- **Event answer latency**: events sent one at a time; the time from the emulator's POST to the
  answer read back (p50 and p99 over the samples).
- **Cold start**: a fresh ``dingworker --http`` process, spawned with the emulator already
  trying to deliver one event (retrying every 10 ms while the port refuses, as DingTalk
  retries); the time from the spawn to the answered event. Interpreter start included. And
  the Function Compute way (``clients/fc_cold.py``): a fresh interpreter imports
  ``examples/serverless_fc.py`` and its ``handler`` answers one encrypted event, no server.
  Both run on dingsync laid out as an install is: a fresh venv whose path file names a
  directory holding the ``dingsync`` and ``dingworker`` packages, then the harness's
  packages. So the development checkout's editable-install hook, which costs every
  interpreter start about 25 ms here and no deployment has, does not run. The notes give the
  checkout's figures too, measured interleaved.

No Stream client is involved: there is no official SDK column.
"""

from __future__ import annotations

import resource
import socket
import subprocess
import sysconfig
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from statistics import median, quantiles
from typing import Dict, Iterator, List, Tuple

from .._context import BenchContext
from .._emulator import BenchError, Gateway
from .._proc import PYTHON, REPO, child_env, cpu_seconds, timed_run
from .._results import Row, summarize

APP = "benchmarks.clients.http_app:route"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _installed() -> Iterator[str]:
    """A fresh venv laid out as an install (``pip install``, or a function's code package):
    dingsync and dingworker are plain package directories on its path, and the harness's
    packages follow through a path file. No editable-install hook runs. Yields its python."""
    with tempfile.TemporaryDirectory(prefix="dingsync-installed-") as home:
        subprocess.run([PYTHON, "-m", "venv", "--without-pip", f"{home}/venv"], check=True)
        python = f"{home}/venv/bin/python"
        purelib = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        packages = Path(home) / "packages"
        packages.mkdir()
        (packages / "dingsync").symlink_to(REPO / "dingsync")
        (packages / "dingworker").symlink_to(REPO / "worker")
        # plain path lines: the harness's .pth files (the editable hook among them) are not run
        paths = f"{packages}\n{sysconfig.get_paths()['purelib']}\n"
        (Path(purelib) / "installed.pth").write_text(paths)
        yield python


def _spawn(gw: Gateway, port: int, log: object, python: str = PYTHON) -> subprocess.Popen[bytes]:
    env = gw.env()
    env["DINGTALK_EVENT_TOKEN"] = gw.fake.event_token
    env["DINGTALK_EVENT_AES_KEY"] = gw.fake.event_aes_key
    cmd = [python, "-m", "dingworker", "--http", f"127.0.0.1:{port}", "--log-level", "warning"]
    return subprocess.Popen(
        [*cmd, APP],
        cwd=REPO,
        env=child_env(env),
        stdout=log,
        stderr=log,  # type: ignore[arg-type]
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _burst(gw: Gateway, kind: str, count: int) -> float:
    """Callbacks per second for ``count`` robot messages or events pushed at once."""
    fake = gw.fake
    if kind == "chatbot":
        prepared = fake.prepare_chatbot(count)
        started = time.monotonic()
        ids = fake.push_many(prepared)
    else:
        started = time.monotonic()
        ids = [fake.push_event("user_add_org", {"userId": [f"u{i}"]}) for i in range(count)]
    deliveries = [fake.wait_for_delivery(mid, timeout=120) for mid in ids]
    failed = [d for d in deliveries if not d.ok]
    if failed:
        raise BenchError(f"{len(failed)} {kind} callback(s) not answered right: {failed[0]}")
    finished = max(d.finished_at or 0.0 for d in deliveries)
    return count / (finished - started)


def _latencies(gw: Gateway, count: int) -> List[float]:
    samples = []
    for i in range(count):
        delivery = gw.fake.wait_for_delivery(gw.fake.push_event("user_add_org", {"n": i}))
        if not delivery.ok or delivery.latency is None:
            raise BenchError(f"event not answered right: {delivery}")
        samples.append(delivery.latency * 1000)
    return samples


def _cold_start(ctx: BenchContext, run: int, python: str) -> Tuple[float, float]:
    """(wall seconds from the spawn to the answered event, the process's CPU seconds then)."""
    with Gateway() as gw:
        fake = gw.fake
        port = _free_port()
        fake.register_callback_url(f"http://127.0.0.1:{port}/")
        fake.redeliver_events_after = 0.01
        with open(ctx.log_path(f"callbacks-cold-{run}"), "wb") as log:
            started = time.monotonic()
            proc = _spawn(gw, port, log, python)
            try:
                delivery = fake.wait_for_delivery(fake.push_event("check_url", {}), timeout=30)
                cpu = cpu_seconds(proc.pid)
            finally:
                _stop(proc)
        if not delivery.ok or delivery.finished_at is None:
            raise BenchError(f"cold start: the first event was not answered: {delivery}")
        return delivery.finished_at - started, cpu


def _fc_cold_start(python: str) -> Tuple[float, float]:
    """(the process's wall seconds, its CPU seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with Gateway() as gw:
        env = gw.env()
        env["DINGTALK_EVENT_TOKEN"] = gw.fake.event_token
        env["DINGTALK_EVENT_AES_KEY"] = gw.fake.event_aes_key
        wall, result = timed_run([python, str(REPO / "benchmarks" / "clients" / "fc_cold.py")], env)
    if result.returncode != 0:
        raise BenchError("fc_cold failed:\n" + result.stderr.decode(errors="replace")[-1500:])
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def run(ctx: BenchContext) -> List[Row]:
    count = 300 if ctx.quick else 2000
    latency_count = 100 if ctx.quick else 500
    rates: Dict[str, List[float]] = {"chatbot": [], "event": []}
    latency: List[float] = []
    p99s: List[float] = []
    for i in range(ctx.runs):
        with Gateway() as gw, open(ctx.log_path(f"callbacks-{i}"), "wb") as log:
            port = _free_port()
            proc = _spawn(gw, port, log)
            try:
                gw.fake.register_callback_url(f"http://127.0.0.1:{port}/")
                gw.fake.redeliver_events_after = gw.fake.redeliver_callbacks_after = 0.05
                _burst(gw, "event", 20)  # warm-up; also waits until the worker listens
                gw.fake.redeliver_events_after = gw.fake.redeliver_callbacks_after = None
                for kind in rates:
                    rates[kind].append(_burst(gw, kind, count))
                samples = _latencies(gw, latency_count)
            finally:
                _stop(proc)
            if gw.fake.violations:
                raise BenchError(f"emulator violations: {gw.fake.violations[:3]}")
        latency.extend(samples)
        p99s.append(quantiles(samples, n=100)[98])
    cold_count = max(3, ctx.runs)
    with _installed() as installed:
        _fc_cold_start(installed)  # warms the bytecode caches, as a deployed function has them
        cold_runs, fc_runs, checkout_runs, checkout_fc_runs = [], [], [], []
        for i in range(cold_count):  # interleaved, so that a busy moment hits both forms
            cold_runs.append(_cold_start(ctx, i, installed))
            checkout_runs.append(_cold_start(ctx, i, PYTHON))
            fc_runs.append(_fc_cold_start(installed))
            checkout_fc_runs.append(_fc_cold_start(PYTHON))
    colds, cold_cpu = [w * 1000 for w, _ in cold_runs], [c * 1000 for _, c in cold_runs]
    fc_colds, fc_cpu = [w * 1000 for w, _ in fc_runs], [c * 1000 for _, c in fc_runs]
    checkout_cold = median(w * 1000 for w, _ in checkout_runs)
    checkout_fc = median(w * 1000 for w, _ in checkout_fc_runs)
    ctx.raw["callbacks"] = {
        "rates": rates,
        "latency_ms": latency,
        "cold_start_ms": colds,
        "cold_start_cpu_ms": cold_cpu,
        "fc_cold_start_ms": fc_colds,
        "fc_cold_start_cpu_ms": fc_cpu,
        "checkout_cold_start_ms": [w * 1000 for w, _ in checkout_runs],
        "checkout_fc_cold_start_ms": [w * 1000 for w, _ in checkout_fc_runs],
    }
    ctx.log(
        f"callbacks: robot {median(rates['chatbot']):.0f}/s, events {median(rates['event']):.0f}/s,"
        f" event p99 {median(p99s):.1f} ms, cold start {median(colds):.0f} ms"
    )
    common = {"official": None, "show_ratio": False}
    return [
        Row(
            "7",
            f"HTTP callbacks via dingworker --http: robot messages, burst of {count}",
            "msgs/s",
            dingsync=summarize(rates["chatbot"]),
            target="(reported)",
            note="signed by the emulator, 8 POSTing threads",
            **common,  # type: ignore[arg-type]
        ),
        Row(
            "7",
            f"HTTP callbacks via dingworker --http: encrypted events, burst of {count}",
            "events/s",
            dingsync=summarize(rates["event"]),
            target="(reported)",
            note="encrypted by the emulator; every answer decrypted and checked",
            **common,  # type: ignore[arg-type]
        ),
        Row(
            "7",
            f"Event answer latency p99, one at a time ({latency_count} per run)",
            "ms",
            dingsync=summarize(p99s),
            target="≤ 50 ms (DingTalk allows 1500)",
            check=lambda d, o: d <= 50,
            note=f"p50 {median(latency):.1f} ms over all runs",
            **common,  # type: ignore[arg-type]
        ),
        Row(
            "7",
            "Cold start: fresh dingworker --http process to its first answered event (installed)",
            "ms",
            dingsync=summarize(colds),
            target="≤ 300 ms",
            check=lambda d, o: d <= 300,
            note=f"interpreter start included; its CPU {median(cold_cpu):.0f} ms; from the"
            f" editable checkout {checkout_cold:.0f} ms",
            **common,  # type: ignore[arg-type]
        ),
        Row(
            "7",
            "Cold start, Function Compute way: fresh interpreter, import examples/serverless_fc.py,"
            " handler answers one encrypted event (installed)",
            "ms",
            dingsync=summarize(fc_colds),
            target="≤ 300 ms",
            check=lambda d, o: d <= 300,
            note=f"process wall time, interpreter start included; CPU {median(fc_cpu):.0f} ms;"
            f" from the editable checkout {checkout_fc:.0f} ms",
            **common,  # type: ignore[arg-type]
        ),
    ]
