"""The send-side soak: 200 messages through faults; each is sent once or reported, never lost.

A fault-injecting proxy sits between the clients and the emulator and, per message, answers
429 with Retry-After, a 503 without forwarding, a 502 *after* forwarding (the send happened),
or drops the connection; the emulator cuts token calls and expires tokens; the Redis server
that holds the token cache and the webhook pacing is restarted in the middle. Every message must
end up either delivered exactly once and reported sent, or reported as an error, where
``maybe_sent=False`` means it was not delivered. Nothing is delivered twice, and nothing is
reported sent without being delivered.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Deque, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
from child_processes import die_with_parent, stop_process

from dingsync.api import ApiClient, RetryPolicy
from dingsync.api.webhook import WebhookRobot
from dingsync.config import Endpoints
from dingsync.errors import DingSyncError
from dingsync.ratelimit import RedisRateLimiter
from dingsync.testing import FakeDingTalk
from dingsync.tokens import RedisTokenCache

MESSAGES = 200
WEBHOOK = "soakwebhooktoken"
TOKEN_PATH = "/v1.0/oauth2/accessToken"
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class FaultProxy:
    """Forwards to the emulator, except when the next queued fault says otherwise."""

    def __init__(self, api: str, oapi: str) -> None:
        self.faults: Deque[str] = deque()
        self._lock = threading.Lock()
        upstream = requests.Session()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _answer(self, status: int, headers: Dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                is_send = self.path.startswith(("/v1.0/robot/", "/robot/send"))
                fault = outer.next_fault() if is_send else None
                if fault == "429":
                    throttled = b'{"code":"Throttling","message":"slow down"}'
                    return self._answer(429, {"Retry-After": "2"}, throttled)
                if fault == "503-before":
                    return self._answer(503, {"Content-Type": "text/html"}, b"<h1>busy</h1>")
                if fault == "reset-before":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                base = oapi if self.path.startswith(("/robot/", "/gettoken")) else api
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                answer = upstream.request(
                    self.command, base + self.path, headers=headers, data=body, timeout=10
                )
                if fault == "502-after":
                    return self._answer(502, {"Content-Type": "text/html"}, b"<h1>bad gateway</h1>")
                if fault == "reset-after":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return None
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP}
                return self._answer(answer.status_code, kept, answer.content)

            do_GET = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def next_fault(self) -> Optional[str]:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class RedisServer:
    """A redis-server of the test's own, on a fixed port so that it can be restarted."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not shutil.which(binary):
            pytest.skip("redis-server is not installed")
        pytest.importorskip("redis")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self.start()

    def start(self) -> None:
        import redis

        self._proc = subprocess.Popen(
            die_with_parent(self._argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                threading.Event().wait(0.02)

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


FAULTS = ["429", "503-before", "502-after", "reset-before", "reset-after"]


def test_200_sends_through_faults_are_each_sent_once_or_reported(
    dingtalk: FakeDingTalk, redis_server: RedisServer
) -> None:
    dingtalk.webhook_rate_limit = 10_000
    dingtalk.add_webhook_robot(WEBHOOK)
    proxy = FaultProxy(dingtalk.api_base, dingtalk.oapi_base)
    sleeps: List[float] = []
    policy = RetryPolicy(initial=0.01, jitter=0.0)
    api = ApiClient(
        dingtalk.credentials,
        endpoints=Endpoints(api=proxy.url, oapi=proxy.url),
        token_cache=RedisTokenCache(redis_server.url, lock_timeout=1.0),
        sleep=sleeps.append,
        retry=policy,
        timeout=(2.0, 2.0),
    )
    robot = WebhookRobot(
        f"{proxy.url}/robot/send?access_token={WEBHOOK}",
        rate_limiter=RedisRateLimiter(redis_server.url, limit=10_000),
        sleep=sleeps.append,
        retry=policy,
    )
    rng = random.Random(14)
    outcomes: Dict[str, Tuple[str, Optional[bool]]] = {}
    injected: Counter[str] = Counter()
    try:
        for i in range(MESSAGES):
            text = f"soak message {i}"
            if i == 90:
                redis_server.stop()
            if i == 120:
                redis_server.start()
            roll = rng.random()
            if roll < 0.08:
                dingtalk.expire_tokens()
                dingtalk.fail_next("POST", TOKEN_PATH, reset=True, times=rng.randint(1, 2))
                injected["token cut"] += 1
            elif roll < 0.45:
                fault = rng.choice(FAULTS)
                proxy.faults.append(fault)
                injected[fault] += 1
            try:
                if i % 2:
                    robot.send(text)
                else:
                    api.robot.send_to_group("cidSoak", text)
            except DingSyncError as exc:
                outcomes[text] = ("error", bool(getattr(exc, "maybe_sent", False)))
            else:
                outcomes[text] = ("sent", None)
            proxy.faults.clear()
    finally:
        api.close()
        robot.close()
        proxy.close()

    delivered = Counter(m.text for m in dingtalk.group_messages("cidSoak"))
    delivered.update(m.text for m in dingtalk.webhook_messages)
    assert len(outcomes) == MESSAGES
    for text, (outcome, maybe_sent) in outcomes.items():
        if outcome == "sent":
            assert delivered[text] == 1, f"{text}: reported sent, delivered {delivered[text]}x"
        elif maybe_sent:
            assert delivered[text] <= 1, f"{text}: maybe_sent, delivered {delivered[text]}x"
        else:
            assert delivered[text] == 0, f"{text}: reported not sent, but delivered"
    assert set(delivered) <= set(outcomes)
    # the faults really happened, and most messages still went through
    assert all(injected[f] > 0 for f in [*FAULTS, "token cut"]), injected
    assert 2.0 in sleeps  # the proxy's Retry-After was honoured
    sent = sum(1 for outcome, _ in outcomes.values() if outcome == "sent")
    assert sent >= MESSAGES * 0.75, (sent, injected)
