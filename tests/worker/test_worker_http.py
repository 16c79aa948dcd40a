"""``dingworker --http``: the callbacks served by waitress in a real process, /healthz and
/metrics beside them, the drain on SIGTERM, and Stream plus HTTP in one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional

import pytest
import requests
from cli_runner import cli_runner
from test_health import parse_prometheus
from test_worker_subprocess import FIXTURES, Worker, free_port, poll_status, start, workers

from dingsync.testing import FakeDingTalk
from dingworker.cli import main
from dingworker.http import HttpServer, WorkerApp

__all__ = ["workers"]  # a fixture, imported for pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def http_env(fake: FakeDingTalk) -> Dict[str, str]:
    env = fake.env()
    env["DINGTALK_EVENT_TOKEN"] = fake.event_token
    env["DINGTALK_EVENT_AES_KEY"] = fake.event_aes_key
    return env


def start_http(fake: FakeDingTalk, workers: List[Worker], *extra: str) -> str:
    port = free_port()
    worker = start(
        workers, http_env(fake), "--http", f"127.0.0.1:{port}", *extra, app="dw_http_app:route"
    )
    worker.wait_for_log("HTTP callbacks (robot messages, events) on")
    return f"http://127.0.0.1:{port}"


def test_http_worker_serves_robot_messages_and_events_then_drains_on_sigterm(
    fake: FakeDingTalk, workers: List[Worker]
) -> None:
    base = start_http(fake, workers, "--grace", "5")
    (worker,) = workers
    assert json.loads(poll_status(f"{base}/healthz", 200))["status"] == "ok"
    fake.register_callback_url(f"{base}/")
    mid = fake.push_chatbot("over http")
    assert fake.wait_for_delivery(mid).ok
    assert fake.wait_for_reply(predicate=lambda r: r.message_id == mid).text == "echo: over http"
    assert fake.wait_for_delivery(fake.push_event("user_add_org", {"userId": ["u5"]})).ok
    worker.wait_for_log("joined: u5")
    page = poll_status(f"{base}/metrics", 200)
    mine, _, sent = page.partition("# HELP dingsync_messages_sent_total")
    metrics = parse_prometheus(mine)
    assert metrics["dingsync_callbacks_handled_total"] == ("counter", 2.0)
    assert metrics["dingsync_callbacks_rejected_total"] == ("counter", 0.0)
    # the reply's send counter (prometheus-client) follows, as on the Stream worker's /metrics
    assert 'dingsync_messages_sent_total{channel="session_webhook",outcome="ok"} 1.0' in sent

    slow = fake.push_chatbot("sleep 1")
    worker.wait_for_log("handler sleeping")
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=8) == 0
    assert fake.wait_for_delivery(slow).ok  # answered during the drain
    assert fake.wait_for_reply(predicate=lambda r: r.message_id == slow).text == "slept"
    worker.wait_for_log("stopped cleanly")
    assert fake.violations == []


def test_stream_and_http_in_one_process(fake: FakeDingTalk, workers: List[Worker]) -> None:
    """--stream: robot messages over the websocket, events over HTTP, one Router."""
    base = start_http(fake, workers, "--stream")
    (worker,) = workers
    worker.wait_for_log("connected to")
    fake.register_callback_url(f"{base}/", chatbot=False)
    mid = fake.push_chatbot("over the websocket")
    assert fake.wait_for_ack(mid)["code"] == 200
    assert fake.wait_for_delivery(fake.push_event("user_add_org", {"userId": ["u6"]})).ok
    worker.wait_for_log("joined: u6")
    worker.send(signal.SIGTERM)
    assert worker.wait(timeout=8) == 0


def _invoke(args: List[str], env: Optional[Dict[str, str]] = None) -> object:
    base = {"DINGTALK_CLIENT_ID": "id", "DINGTALK_CLIENT_SECRET": "secret"}
    base.update(env or {})
    return cli_runner().invoke(main, ["--app-dir", FIXTURES, *args], env=base)


@pytest.mark.parametrize(
    "args, env, fragment",
    [
        (["--stream", "dw_http_app:route"], {}, "--stream only makes sense with --http"),
        (["--http", "8080", "dw_http_app:route"], {}, "--http takes HOST:PORT"),
        (["--http", "127.0.0.1:99999", "dw_http_app:route"], {}, "--http takes HOST:PORT"),
        (
            ["--http", "127.0.0.1:0", "--max-runtime", "1", "dw_http_app:route"],
            {"DINGTALK_EVENT_TOKEN": "t"},
            "both event_token and event_aes_key",
        ),
        (
            ["--http", "127.0.0.1:0", "--max-runtime", "1", "dw_http_app:route"],
            {"DINGTALK_EVENT_TOKEN": "t", "DINGTALK_EVENT_AES_KEY": "short"},
            "43 characters",
        ),
    ],
)
def test_bad_http_options_exit_2_with_one_line(
    args: List[str], env: Dict[str, str], fragment: str
) -> None:
    result = _invoke(args, env)
    assert result.exit_code == 2, result.output
    assert fragment in result.stderr
    assert "secret" not in result.stderr.replace("card_secret", "")


def test_max_runtime_http_worker_exits_0() -> None:
    result = _invoke(["--http", "127.0.0.1:0", "--max-runtime", "0.3", "dw_http_app:route"])
    assert result.exit_code == 0, result.stderr


def test_health_port_serves_probes_beside_the_http_worker() -> None:
    result = _invoke(
        ["--http", "127.0.0.1:0", "--health-port", "0", "--max-runtime", "0.3", "dw_http_app:route"]
    )
    assert result.exit_code == 0, result.stderr
    assert "health on http://127.0.0.1:" in result.stderr
    assert "HTTP callbacks (robot messages) on http://127.0.0.1:" in result.stderr


#: What a ``dingworker --http`` process must not import to answer events: the Stream stack, the
#: send stack, the separate probe server (the probes share the callback port), prometheus-client
#: (imported at the first /metrics scrape) and importlib.metadata (for an install hint). Each
#: of these costs a cold start tens of milliseconds; the benchmark's cold-start row has the time.
NOT_ON_THE_CALLBACK_PATH = (
    "websocket",
    "tenacity",
    "requests",
    "dingsync.stream",
    "dingsync.testing",
    "http.server",
    "prometheus_client",
    "importlib.metadata",
)


def test_an_http_worker_answers_events_without_importing_what_it_does_not_use(
    fake: FakeDingTalk,
) -> None:
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('MODULES', *sorted(sys.modules), flush=True))\n"
        "from dingworker.cli import main\n"
        "main(sys.argv[1:])\n"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
    env.update(http_env(fake))
    args = ["--app-dir", FIXTURES, "--http", f"127.0.0.1:{port}", "dw_http_app:route"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        poll_status(f"http://127.0.0.1:{port}/healthz", 200)
        fake.register_callback_url(f"http://127.0.0.1:{port}/")
        assert fake.wait_for_delivery(fake.push_event("user_add_org", {"userId": ["u7"]})).ok
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    loaded = set(next(line for line in out.splitlines() if line.startswith("MODULES")).split())
    assert "waitress" in loaded and "dingsync.callbacks" in loaded
    assert sorted(loaded.intersection(NOT_ON_THE_CALLBACK_PATH)) == []


def _slow_answer(handler_returned: threading.Event) -> Callable[..., Iterable[bytes]]:
    """A WSGI app whose handler returns at once and whose answer takes 0.3 s to write."""

    def app(environ: Dict[str, object], start_response: Callable[..., object]) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "8")])
        handler_returned.set()
        time.sleep(0.3)  # stop() comes while the answer is still on its way out
        yield b"answered"

    return app


def _get_in_background(http: requests.Session, url: str) -> Callable[[], object]:
    outcome: Dict[str, object] = {}

    def get() -> None:
        try:
            outcome["answer"] = http.get(url, timeout=5).text
        except requests.RequestException as exc:
            outcome["answer"] = exc

    thread = threading.Thread(target=get)
    thread.start()

    def answer() -> object:
        thread.join(5)
        return outcome["answer"]

    return answer


def test_stopping_the_http_server_sends_the_answers_already_made(http: requests.Session) -> None:
    # The drain waits for handlers; their answers must still reach DingTalk after it, or a
    # handled callback counts as failed and comes again.
    handler_returned = threading.Event()
    server = HttpServer(_slow_answer(handler_returned), "127.0.0.1", 0).start()
    answer = _get_in_background(http, server.url)
    assert handler_returned.wait(5)
    server.stop()
    assert answer() == "answered"


def test_a_hard_stop_of_the_http_server_does_not_wait_for_answers(http: requests.Session) -> None:
    handler_returned = threading.Event()
    server = HttpServer(_slow_answer(handler_returned), "127.0.0.1", 0).start()
    answer = _get_in_background(http, server.url)
    assert handler_returned.wait(5)
    server.stop(flush=False)
    assert isinstance(answer(), requests.ConnectionError)


@pytest.fixture()
def many_open_files() -> Iterator[None]:
    """More than 1024 descriptors open, so that the next socket's number is above select()'s
    limit, as in a busy web app."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        if hard != resource.RLIM_INFINITY and hard < 2048:
            pytest.skip(f"the descriptor limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    held = []
    try:
        with open(os.devnull) as devnull:
            while not held or held[-1] < 1100:
                held.append(os.dup(devnull.fileno()))
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_http_server_serves_sockets_numbered_above_1024(
    many_open_files: None, http: requests.Session
) -> None:
    server = HttpServer(WorkerApp(None, lambda: (True, {})), "127.0.0.1", 0).start()
    try:
        assert http.get(f"{server.url}/healthz", timeout=5).json()["status"] == "ok"
    finally:
        server.stop()
