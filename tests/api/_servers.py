"""A scripted stdlib HTTP server for the faults the emulator has no knob for (redirects, proxies),
and ``wait_until`` for conditions another thread brings about.

Each request is answered by ``answer(method, path, headers, body) -> (status, headers, body)``
and recorded, so a test can check what reached the server (and which headers it carried).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterator, List, Tuple
from urllib.parse import urlsplit

Answer = Tuple[int, Dict[str, str], bytes]
Script = Callable[[str, str, Dict[str, str], bytes], Answer]


def json_answer(status: int, body: Any, **headers: str) -> Answer:
    return status, {"Content-Type": "application/json", **headers}, json.dumps(body).encode()


class ScriptedServer:
    """``url`` of a local server answering by ``script``; ``seen`` lists (method, path, headers)."""

    def __init__(self, script: Script) -> None:
        self.seen: List[Tuple[str, str, Dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                headers = {k.lower(): v for k, v in self.headers.items()}
                outer.seen.append((self.command, path, headers))
                status, extra, payload = script(self.command, path, headers, body)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def scripted(script: Script) -> Iterator[ScriptedServer]:
    with ScriptedServer(script) as server:
        yield server


def token_or(answer: Script) -> Script:
    """Answer the new-style token endpoint with a token, everything else with ``answer``."""

    def script(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
        if path == "/v1.0/oauth2/accessToken":
            return json_answer(200, {"accessToken": "tok-secret-value", "expireIn": 7200})
        return answer(method, path, headers, body)

    return script


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        pause.wait(0.005)
