"""dingworker at its edges (issue 14, item 12; issue 15, item 8): a busy health port, JSON logs
with --emulator, the demo stopped by SIGTERM, and an emulator banner that fits the app."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List

import pytest
from test_worker_subprocess import REPO, Worker, http_get, start, workers  # noqa: F401

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def first_stdout_line(worker: Worker, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while not worker.stdout and time.monotonic() < deadline and worker.proc.poll() is None:
        time.sleep(0.02)
    assert worker.stdout, "\n".join(worker.stderr)
    return worker.stdout[0]


def test_busy_health_port_is_one_line_and_exit_2(workers: List[Worker]) -> None:  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        worker = start(workers, {}, "--emulator", "--health-port", str(port))
        assert worker.wait() == 2
    errors = [line for line in worker.stderr if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(worker.stderr)
    assert f"127.0.0.1:{port}" in errors[0] and "--health-port" in errors[0]


def test_emulator_with_json_logs_writes_only_json_on_stderr(
    workers: List[Worker],  # noqa: F811
) -> None:
    worker = start(workers, {}, "--emulator", "--log-format", "json")
    base = first_stdout_line(worker).split(": ", 1)[1].rstrip("/")  # the chat window URL
    worker.wait_for_log("connected to")
    request = urllib.request.Request(
        base + "/_emulator/chatbot",
        data=json.dumps({"text": "hi"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        message_id = json.load(resp)["messageId"]
    http_get(f"{base}/_emulator/acks?message_id={message_id}&wait=5")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    records = [json.loads(line) for line in worker.stderr]  # each line is one JSON object
    banner = [r for r in records if "/_emulator/chatbot" in r["message"]]
    assert banner and banner[0]["logger"] == "dingworker"
    assert worker.stdout == [f"chat with your bot: {base}/", f"DINGSYNC_EMULATOR={base}"]


def test_banner_offers_what_the_router_handles(workers: List[Worker]) -> None:  # noqa: F811
    worker = start(workers, {}, "--emulator", app="dw_events_app:route")
    first_stdout_line(worker)
    line = worker.wait_for_log("/_emulator/event")
    assert '"event_type": "user_add_org"' in line
    worker.wait_for_log("connected to")
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    assert not any("/_emulator/chatbot" in line for line in worker.stderr)


def _children(pid: int) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            # The fields after the command's closing parenthesis: state, ppid, ...
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads /proc")
def test_demo_stopped_by_sigterm_stops_its_worker() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
    env["PYTHONUNBUFFERED"] = "1"
    questions = ["1+1"] * 5000  # far more than can be answered before the SIGTERM
    demo = subprocess.Popen(
        [sys.executable, "-m", "dingworker.demo", *questions],
        cwd=str(REPO),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert demo.stdout is not None
        for line in demo.stdout:
            if line.startswith("bot> "):
                break
        worker_pids = _children(demo.pid)
        assert len(worker_pids) == 1
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=15) == 143
        assert demo.stderr is not None and "its worker is stopped too" in demo.stderr.read()
        assert not os.path.exists(f"/proc/{worker_pids[0]}") or _is_zombie(worker_pids[0])
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
