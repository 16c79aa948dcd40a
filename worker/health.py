"""The worker's health and metrics endpoints, on a small stdlib HTTP server.

- ``GET /healthz``: 200 when the source says healthy, else 503; the body is the source's details
  as JSON (for dingworker: the stream client's stats).
- ``GET /metrics``: the same numbers in the Prometheus text exposition format (version 0.0.4),
  written by hand so that the worker needs no metrics library; with the ``metrics`` extra, the
  send counter of :mod:`dingsync.metrics` follows them.

The server takes a ``health_source`` callable rather than a client, so it can be tested (and
reused) without a connection.

Example:
    >>> import json, urllib.request
    >>> source = lambda: (True, {"connected": True, "frames_received": 3})
    >>> with HealthServer(source, port=0) as server:
    ...     with urllib.request.urlopen(server.url + "/healthz") as resp:
    ...         resp.status, json.load(resp)["frames_received"]
    (200, 3)
"""

from __future__ import annotations

import json
import logging
import math
import threading
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, List, Mapping, Optional, Tuple

from dingsync.errors import ConfigurationError

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

__all__ = [
    "HealthServer",
    "HealthSource",
    "METRICS",
    "METRICS_CONTENT_TYPE",
    "render_metrics",
    "health_page",
    "metrics_page",
]

log = logging.getLogger("dingworker.health")

#: Returns ``(healthy, details)``; ``details`` must be JSON-serialisable (datetimes are allowed).
HealthSource = Callable[[], Tuple[bool, Mapping[str, Any]]]

#: (stats key, metric name, type, help). Keys missing from the details are left out.
METRICS: Tuple[Tuple[str, str, str, str], ...] = (
    ("healthy", "dingsync_app_healthy", "gauge", "1 while this app is healthy (several apps)."),
    ("connected", "dingsync_connected", "gauge", "1 while a gateway connection is open."),
    ("in_flight", "dingsync_in_flight", "gauge", "Handlers running right now."),
    (
        "connections_opened",
        "dingsync_connections_opened_total",
        "counter",
        "Gateway connections opened.",
    ),
    ("reconnects", "dingsync_reconnects_total", "counter", "Connections replaced after a fault."),
    (
        "frames_received",
        "dingsync_frames_received_total",
        "counter",
        "Frames received from the gateway.",
    ),
    ("acks_sent", "dingsync_acks_sent_total", "counter", "Acks sent to the gateway."),
    (
        "redeliveries_skipped",
        "dingsync_redeliveries_skipped_total",
        "counter",
        "Redelivered messages answered without calling the handler again.",
    ),
    ("handler_errors", "dingsync_handler_errors_total", "counter", "Handlers that raised."),
    (
        "last_frame_at",
        "dingsync_last_frame_timestamp_seconds",
        "gauge",
        "Unix time of the last frame received.",
    ),
    (
        "last_alive_at",
        "dingsync_last_alive_timestamp_seconds",
        "gauge",
        "Unix time of the last sign of life (frame or pong).",
    ),
    (
        "seconds_since_alive",
        "dingsync_seconds_since_alive",
        "gauge",
        "Seconds since the last frame or pong.",
    ),
    # dingworker --http: the callback app's counters.
    ("callbacks_requests", "dingsync_callbacks_requests_total", "counter", "HTTP requests."),
    (
        "callbacks_rejected",
        "dingsync_callbacks_rejected_total",
        "counter",
        "HTTP requests refused (4xx) before any handler ran.",
    ),
    ("callbacks_handled", "dingsync_callbacks_handled_total", "counter", "Callbacks handled."),
    (
        "callbacks_handler_errors",
        "dingsync_callbacks_handler_errors_total",
        "counter",
        "Callback handlers that raised.",
    ),
    (
        "callbacks_duplicates",
        "dingsync_callbacks_duplicates_total",
        "counter",
        "Callbacks delivered again and answered without running the handler.",
    ),
    ("callbacks_in_flight", "dingsync_callbacks_in_flight", "gauge", "Callbacks being handled."),
)


def _number(value: Any) -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return None


def _format(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def render_metrics(healthy: bool, details: Mapping[str, Any]) -> str:
    """Render ``details`` in the Prometheus text format, plus ``dingsync_healthy``; with
    several apps (``details["apps"]``) each sample carries an ``app`` label.

    Example:
        >>> print(render_metrics(True, {"acks_sent": 2}), end="")
        # HELP dingsync_healthy 1 when /healthz answers 200.
        # TYPE dingsync_healthy gauge
        dingsync_healthy 1
        # HELP dingsync_acks_sent_total Acks sent to the gateway.
        # TYPE dingsync_acks_sent_total counter
        dingsync_acks_sent_total 2
    """
    lines: List[str] = [
        "# HELP dingsync_healthy 1 when /healthz answers 200.",
        "# TYPE dingsync_healthy gauge",
        f"dingsync_healthy {1 if healthy else 0}",
    ]
    apps = details.get("apps")
    sources = list(apps.items()) if isinstance(apps, Mapping) else [(None, details)]
    for key, name, kind, help_text in METRICS:
        samples = [(app, _number(values.get(key))) for app, values in sources]
        present = [(app, value) for app, value in samples if value is not None]
        if not present:
            continue
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        for app, value in present:
            label = "" if app is None else f'{{app="{_escape(str(app))}"}}'
            lines.append(f"{name}{label} {_format(value)}")
    return "\n".join(lines) + "\n"


#: The content type of ``/metrics``: the Prometheus text format, version 0.0.4.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def health_page(healthy: bool, details: Mapping[str, Any]) -> str:
    """The JSON body of ``/healthz``: ``status`` ("ok" or "unhealthy") and the details.

    Example:
        >>> health_page(True, {"connected": True})
        '{"connected": true, "status": "ok"}\\n'
    """
    body = {"status": "ok" if healthy else "unhealthy", **details}
    return json.dumps(body, default=_json_default, sort_keys=True) + "\n"


def metrics_page(healthy: bool, details: Mapping[str, Any]) -> str:
    """The body of ``/metrics``: :func:`render_metrics`, then the send counter of
    :mod:`dingsync.metrics` (empty without prometheus-client).

    Example:
        >>> metrics_page(True, {}).splitlines()[2]
        'dingsync_healthy 1'
    """
    # imported at the first scrape, not at start: prometheus-client costs 30 ms to import
    from dingsync.metrics import render as render_sent

    return render_metrics(healthy, details) + render_sent()


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class HealthServer:
    """Serve ``/healthz`` and ``/metrics`` from ``health_source`` on a daemon thread.

    Args:
        health_source: called on every request; returns ``(healthy, details)``.
        host: the interface to bind; use ``0.0.0.0`` in a container so that probes can reach it.
        port: the TCP port; 0 picks a free one (see :attr:`port`).

    Raises:
        dingsync.ConfigurationError: the address cannot be bound (the port is taken).

    Example:
        >>> server = HealthServer(lambda: (False, {}), port=0).start()
        >>> server.port > 0
        True
        >>> server.stop()
    """

    def __init__(self, health_source: HealthSource, *, host: str = "127.0.0.1", port: int = 0):
        # imported here: ``dingworker --http`` serves its probes from the callback server, and
        # http.server (with http.client and email) would add 25 ms to every cold start
        from http.server import ThreadingHTTPServer

        self._source = health_source
        try:
            self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        except OSError as exc:  # taken, not allowed (< 1024), or no such interface
            raise ConfigurationError(
                f"cannot serve health on {host}:{port}: {exc.strerror or exc}; choose another "
                "--health-port (0 picks a free one, and logs it) or --health-host"
            ) from None
        self._server.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port`` of the server."""
        host = str(self._server.server_address[0])
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Start serving on a daemon thread; returns self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.2},
                name="dingworker-health",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> Tuple[bool, Mapping[str, Any]]:
        """Ask the source; a failing source counts as unhealthy rather than a crashed server."""
        try:
            return self._source()
        except Exception as exc:
            log.exception("health source failed")
            return False, {"error": f"{type(exc).__name__}: {exc}"}


def _make_handler(owner: HealthServer) -> type[BaseHTTPRequestHandler]:
    from http.server import BaseHTTPRequestHandler

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "dingworker"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            # Probes hit these endpoints every few seconds; access lines would drown the logs.
            pass

        def _send(self, status: int, body: str, content_type: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/health", "/"):
                healthy, details = owner.snapshot()
                self._send(
                    200 if healthy else 503, health_page(healthy, details), "application/json"
                )
            elif path == "/metrics":
                healthy, details = owner.snapshot()
                self._send(200, metrics_page(healthy, details), METRICS_CONTENT_TYPE)
            else:
                self._send(
                    404, '{"error": "not found; try /healthz or /metrics"}\n', "application/json"
                )

        do_HEAD = do_GET

    return Handler


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
