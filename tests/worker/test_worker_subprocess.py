"""dingworker as a real process: signals, --max-runtime, --health-port, --log-format json,
--emulator. The emulator runs in the test process; the worker reaches it through the env vars."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from test_health import parse_prometheus

from dingsync.testing import FakeDingTalk

REPO = Path(__file__).resolve().parents[2]
FIXTURES = str(Path(__file__).resolve().parent / "fixtures")

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Worker:
    """A ``python -m dingworker`` subprocess whose output is collected line by line."""

    def __init__(self, args: List[str], env: Dict[str, str]) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dingworker", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            cwd=str(REPO),
        )
        self.stdout: List[str] = []
        self.stderr: List[str] = []
        self._changed = threading.Condition()
        for stream, sink in ((self.proc.stdout, self.stdout), (self.proc.stderr, self.stderr)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()

    def _pump(self, stream: Any, sink: List[str]) -> None:
        for line in stream:
            with self._changed:
                sink.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_log(self, fragment: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.stderr:
                    if fragment in line:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(
                        f"{fragment!r} not logged within {timeout}s:\n" + "\n".join(self.stderr)
                    )
                self._changed.wait(min(left, 0.1))

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 5.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"worker still running after {timeout}s:\n" + "\n".join(self.stderr)
            ) from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture()
def workers() -> Iterator[List[Worker]]:
    started: List[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def start(
    workers: List[Worker], env: Dict[str, str], *extra: str, app: str = "dw_ok_app:route"
) -> Worker:
    worker = Worker(["--app-dir", FIXTURES, *extra, app], env)
    workers.append(worker)
    return worker


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> Tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def poll_status(url: str, wanted: int, timeout: float = 5.0) -> str:
    """GET ``url`` until it answers ``wanted``; return that body."""
    deadline = time.monotonic() + timeout
    last: Optional[Tuple[int, str]] = None
    while time.monotonic() < deadline:
        try:
            last = http_get(url)
            if last[0] == wanted:
                return last[1]
        except OSError:
            pass  # the server is not listening yet
        time.sleep(0.05)
    raise AssertionError(f"{url} never answered {wanted}; last: {last}")


def poll_metrics(
    url: str, ready: Callable[[Dict[str, Tuple[str, float]]], bool], timeout: float = 5.0
) -> Dict[str, Tuple[str, float]]:
    """The samples of ``url`` (a /metrics page) once ``ready`` accepts them, or at the timeout.

    A handler's job ends, and the writer counts its ack, just after the emulator has the ack
    and the reply: the counters may lag what the test has seen by a moment."""
    deadline = time.monotonic() + timeout
    while True:
        samples = parse_prometheus(http_get(url)[1])
        if ready(samples) or time.monotonic() > deadline:
            return samples
        time.sleep(0.02)


def test_sigterm_drains_the_running_handler_and_exits_0(
    fake: FakeDingTalk, workers: List[Worker]
) -> None:
    """First SIGTERM: the running handler finishes, replies and acks; exit code 0."""
    worker = start(workers, fake.env(), "--grace", "5")
    worker.wait_for_log("connected to")
    message_id = fake.push_chatbot("sleep 1")
    worker.wait_for_log("handler sleeping")
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=5) == 0
    assert fake.wait_for_ack(message_id, timeout=1)["code"] == 200
    reply = fake.wait_for_reply(timeout=1, predicate=lambda r: r.message_id == message_id)
    assert reply.text == "slept"
    worker.wait_for_log("stopped cleanly")


@pytest.mark.parametrize(("second", "code"), [(signal.SIGTERM, 1), (signal.SIGINT, 130)])
def test_second_signal_stops_hard(
    fake: FakeDingTalk, workers: List[Worker], second: int, code: int
) -> None:
    """A second signal during the drain exits at once (1, or 130 for SIGINT), unacked."""
    worker = start(workers, fake.env(), "--grace", "30")
    worker.wait_for_log("connected to")
    message_id = fake.push_chatbot("sleep 30")
    worker.wait_for_log("handler sleeping")
    worker.send(signal.SIGTERM)
    worker.wait_for_log("stopping (SIGTERM)")
    started = time.monotonic()
    worker.send(second)
    assert worker.wait(timeout=5) == code
    assert time.monotonic() - started < 4
    assert not [a for a in fake.acks if a["headers"]["messageId"] == message_id]


def test_grace_expiry_exits_1(fake: FakeDingTalk, workers: List[Worker]) -> None:
    """A handler still running when --grace ends: the worker exits 1 anyway, on time."""
    worker = start(workers, fake.env(), "--grace", "0.5")
    worker.wait_for_log("connected to")
    fake.push_chatbot("sleep 30")
    worker.wait_for_log("handler sleeping")
    started = time.monotonic()
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=5) == 1
    assert time.monotonic() - started < 3
    worker.wait_for_log("still running after --grace")


def test_max_runtime_exits_0_by_itself(fake: FakeDingTalk, workers: List[Worker]) -> None:
    """--max-runtime 1: the worker stops taking messages, drains and exits 0 on its own."""
    started = time.monotonic()
    worker = start(workers, fake.env(), "--max-runtime", "1")
    assert worker.wait(timeout=8) == 0
    assert time.monotonic() - started >= 1
    worker.wait_for_log("stopping (max-runtime)")


def test_refused_credentials_exit_1_at_the_first_attempt(
    fake: FakeDingTalk, workers: List[Worker]
) -> None:
    """A wrong secret: the worker exits 1 after the first refusal (no minute-long retry
    waits), naming both causes users hit and never printing the secret."""
    env = {**fake.env(), "DINGTALK_CLIENT_SECRET": "wrong-secret-value"}
    worker = start(workers, env)
    assert worker.wait(timeout=15) == 1
    line = worker.wait_for_log("stream client stopped: DingTalk refused client id")
    assert "DINGTALK_CLIENT_SECRET" in line and "IP allow-list" in line
    assert len(fake.open_requests) == 1
    assert not any("wrong-secret-value" in line for line in worker.stderr)


def test_healthz_and_metrics(fake: FakeDingTalk, workers: List[Worker]) -> None:
    """/healthz: 200 while connected; 503 once the gateway stalls and reconnects fail.
    /metrics: parsable Prometheus text with the worker's counters."""
    port = free_port()
    worker = start(workers, fake.env(), "--health-port", str(port), "--dead-after", "1")
    base = f"http://127.0.0.1:{port}"
    body = json.loads(poll_status(base + "/healthz", 200))
    assert body["status"] == "ok" and body["connected"] is True
    assert abs(body["last_alive_at"] - time.time()) < 5  # Unix time, not monotonic

    message_id = fake.push_chatbot("hi")
    fake.wait_for_ack(message_id)
    fake.wait_until(lambda: bool(fake.replies))
    assert http_get(base + "/metrics")[0] == 200
    samples = poll_metrics(
        base + "/metrics",
        lambda s: s["dingsync_acks_sent_total"][1] >= 1 and s["dingsync_in_flight"][1] == 0,
    )
    assert samples["dingsync_connected"] == ("gauge", 1.0)
    assert samples["dingsync_healthy"] == ("gauge", 1.0)
    assert samples["dingsync_frames_received_total"][1] >= 1
    assert samples["dingsync_acks_sent_total"][1] >= 1
    assert samples["dingsync_in_flight"] == ("gauge", 0.0)
    assert samples["dingsync_reconnects_total"] == ("counter", 0.0)
    assert samples["dingsync_handler_errors_total"] == ("counter", 0.0)

    fake.fail_next("POST", "/v1.0/gateway/connections/open", status=503, times=1000)
    fake.stall()
    body = json.loads(poll_status(base + "/healthz", 503, timeout=6))
    assert body["status"] == "unhealthy"
    assert parse_prometheus(http_get(base + "/metrics")[1])["dingsync_healthy"][1] == 0.0
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0


def test_healthz_is_503_before_connecting(workers: List[Worker]) -> None:
    """While the gateway cannot be reached, /healthz says so; SIGTERM still exits 0."""
    port = free_port()
    env = {
        "DINGTALK_CLIENT_ID": "id",
        "DINGTALK_CLIENT_SECRET": "secret",
        "DINGTALK_OPENAPI_ENDPOINT": f"http://127.0.0.1:{free_port()}",
    }
    worker = start(workers, env, "--health-port", str(port))
    body = json.loads(poll_status(f"http://127.0.0.1:{port}/healthz", 503))
    assert body["connected"] is False
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0


def test_json_log_lines(fake: FakeDingTalk, workers: List[Worker]) -> None:
    """--log-format json: every stderr line is one JSON object; handler lines carry message_id."""
    worker = start(workers, fake.env(), "--log-format", "json")
    worker.wait_for_log("connected to")
    message_id = fake.push_chatbot("sleep 0")
    worker.wait_for_log("handler sleeping")
    fake.wait_for_ack(message_id)
    worker.send(signal.SIGTERM)
    assert worker.wait() == 0
    records = [json.loads(line) for line in worker.stderr]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    handler = [r for r in records if r["message"] == "handler sleeping"]
    assert handler and handler[0]["message_id"] == message_id
    assert handler[0]["logger"] == "dingsync.handler" and handler[0]["level"] == "INFO"


def test_emulator_flag_prints_its_address_first_and_takes_messages(workers: List[Worker]) -> None:
    """--emulator: stdout starts with the chat window URL, then the address; the control API
    drives the bot."""
    worker = start(workers, {}, "--emulator")
    deadline = time.monotonic() + 5
    while not worker.stdout and time.monotonic() < deadline:
        time.sleep(0.02)
    while len(worker.stdout) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert worker.stdout[0].startswith("chat with your bot: http://127.0.0.1:")
    assert worker.stdout[1].startswith("DINGSYNC_EMULATOR=http://127.0.0.1:")
    base = worker.stdout[1].split("=", 1)[1]
    assert "curl" in worker.wait_for_log("/_emulator/chatbot")

    request = urllib.request.Request(
        base + "/_emulator/chatbot",
        data=json.dumps({"text": "hi there"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        message_id = json.load(resp)["messageId"]
    replies = json.loads(http_get(f"{base}/_emulator/replies?message_id={message_id}&wait=5")[1])
    assert replies["replies"][0]["text"] == "echo: hi there"
    acks = json.loads(http_get(f"{base}/_emulator/acks?message_id={message_id}&wait=5")[1])
    assert acks["acks"][0]["code"] == 200
    worker.send(signal.SIGINT)
    assert worker.wait() == 0
