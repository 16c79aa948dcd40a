"""``dingworker --http HOST:PORT``: serve a Router's HTTP callbacks with waitress.

One port serves DingTalk's callbacks on every path (point the console's robot, event and card
URLs at ``http://HOST:PORT/``) and, beside them, ``GET /healthz`` and ``GET /metrics``. With
``--stream`` the Stream client runs in the same process on the same Router.

waitress is the server because it is maintained, pure Python (it installs wherever dingsync
does, Windows included), threaded rather than pre-forking (so the Stream client, the dedupe
store and the receipt threads live in the one process the drain controls), and can be started
and stopped from Python, which the drain needs.

The event settings come from the environment: ``DINGTALK_EVENT_TOKEN``,
``DINGTALK_EVENT_AES_KEY``, ``DINGTALK_EVENT_OWNER_KEY`` (default: the client id) and
``DINGTALK_CARD_CALLBACK_SECRET`` for card clicks.

Example::

    $ export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=...
    $ export DINGTALK_EVENT_TOKEN=... DINGTALK_EVENT_AES_KEY=...
    $ dingworker --http 0.0.0.0:8080 myapp.handlers:route
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

import dingsync
from dingsync.callbacks import CallbackApp
from dingsync.dedupe import DedupeStore

from .cli import Outcome, _UsageError
from .health import METRICS_CONTENT_TYPE, HealthServer, HealthSource, health_page, metrics_page
from .signals import ShutdownRequest, capture_signals

__all__ = [
    "run_http_worker",
    "http_runner",
    "build_callback_app",
    "split_address",
    "HttpServer",
    "WorkerApp",
]

log = logging.getLogger("dingworker")

_TICK = 0.05
_STOP_WAIT = 2.0


def split_address(address: str) -> Tuple[str, int]:
    """``"HOST:PORT"`` as ``(host, port)``; ``":8080"`` means every interface.

    Raises:
        dingsync.ConfigurationError: not HOST:PORT with a port from 0 to 65535.

    Example:
        >>> split_address("127.0.0.1:8080"), split_address(":80"), split_address("[::1]:0")
        (('127.0.0.1', 8080), ('0.0.0.0', 80), ('::1', 0))
    """
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise dingsync.ConfigurationError(
            f"--http takes HOST:PORT such as 127.0.0.1:8080, not {address!r}"
        )
    return host.strip("[]") or "0.0.0.0", int(port)


def build_callback_app(
    router: dingsync.Router,
    credentials: dingsync.Credentials,
    *,
    endpoints: Optional[dingsync.Endpoints] = None,
    dedupe: Optional[DedupeStore] = None,
    environ: Mapping[str, str] = os.environ,
) -> CallbackApp:
    """The CallbackApp for ``router``, with the event and card settings from ``environ``.

    Raises:
        dingsync.ConfigurationError: only one of the token and the aes_key is set, or a value
            has the wrong shape.

    Example:
        >>> app = build_callback_app(dingsync.Router(),
        ...     dingsync.Credentials(client_id="id", client_secret="s"), environ={})
        >>> app.crypto is None and app.card_auth is None
        True
    """
    return CallbackApp(
        router,
        credentials,
        event_token=environ.get("DINGTALK_EVENT_TOKEN") or None,
        event_aes_key=environ.get("DINGTALK_EVENT_AES_KEY") or None,
        event_owner_key=environ.get("DINGTALK_EVENT_OWNER_KEY") or None,
        card_secret=environ.get("DINGTALK_CARD_CALLBACK_SECRET") or None,
        dedupe=dedupe,
        endpoints=endpoints,
    )


class WorkerApp:
    """``GET /healthz`` and ``GET /metrics`` from ``health_source``; everything else goes to
    the callback app.

    Example:
        >>> app = WorkerApp(lambda environ, start: [b""], lambda: (True, {"requests": 1}))
        >>> app.health_answer("/metrics")[2].splitlines()[2]
        b'dingsync_healthy 1'
    """

    def __init__(self, callbacks: Any, health_source: HealthSource) -> None:
        self.callbacks = callbacks
        self._health = health_source

    def health_answer(self, path: str) -> Tuple[str, str, bytes]:
        """(status line, content type, body) of ``/healthz`` or ``/metrics``."""
        healthy, details = self._health()
        if path == "/metrics":
            return "200 OK", METRICS_CONTENT_TYPE, metrics_page(healthy, details).encode("utf-8")
        status = "200 OK" if healthy else "503 Service Unavailable"
        return status, "application/json", health_page(healthy, details).encode("utf-8")

    def __call__(
        self, environ: Dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") == "GET" and path in ("/healthz", "/metrics"):
            status, content_type, body = self.health_answer(path)
            start_response(
                status, [("Content-Type", content_type), ("Content-Length", str(len(body)))]
            )
            return [body]
        result: Iterable[bytes] = self.callbacks(environ, start_response)
        return result


class HttpServer:
    """A waitress server on a thread, stoppable from Python.

    Example:
        >>> server = HttpServer(WorkerApp(None, lambda: (True, {})), "127.0.0.1", 0).start()
        >>> server.port > 0
        True
        >>> server.stop()
    """

    def __init__(self, app: Any, host: str, port: int, *, threads: int = 16) -> None:
        try:
            import waitress
        except ImportError:
            raise dingsync.ConfigurationError(
                "--http needs waitress: pip install 'dingsync[http]'"
            ) from None
        self._server = waitress.create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="dingsync",
            clear_untrusted_proxy_headers=True,
        )
        self._thread: Optional[threading.Thread] = None
        self._refusing = threading.Event()
        self._stopping = threading.Event()
        self._flush = True

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host = str(self._server.effective_host)
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    def start(self) -> HttpServer:
        self._thread = threading.Thread(target=self._serve, name="dingworker-http", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        # waitress's own run() loops until its socket map is empty, and closing sockets from
        # another thread races with its select(): so the loop is driven here, and every
        # socket is closed on this thread. It polls with poll(): select(), waitress's default,
        # fails on a descriptor numbered 1024 or more, which a busy web app reaches.
        from waitress import wasyncore

        server = self._server
        listening = True
        while True:
            if listening and self._refusing.is_set():  # stop() sets it before _stopping
                wasyncore.dispatcher.close(server)
                listening = False
            if self._stopping.is_set():
                break
            wasyncore.loop(timeout=0.1, use_poll=True, map=server._map, count=1)
        # A handler that has returned may not have been answered yet: waitress writes the
        # answer on its task thread and sends it from this loop. Closing now would drop it, and
        # DingTalk would count a handled callback as failed and send it again.
        deadline = time.monotonic() + _STOP_WAIT
        while self._flush and _answering(server._map) and time.monotonic() < deadline:
            wasyncore.loop(timeout=_TICK, use_poll=True, map=server._map, count=1)
        wasyncore.close_all(server._map)

    def close_listener(self) -> None:
        """Accept no new connections; requests on open ones still finish."""
        self._refusing.set()

    def stop(self, *, flush: bool = True) -> None:
        """Close the listener; with ``flush``, finish the requests under way and send their
        answers (up to 2 s); then close every connection and the server's threads."""
        self._flush = flush
        self._refusing.set()
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(2 * _STOP_WAIT)
        self._server.task_dispatcher.shutdown(timeout=_STOP_WAIT)


def _answering(channels: Mapping[Any, Any]) -> bool:
    """Whether any waitress channel still runs a request or holds unsent answer bytes."""
    return any(
        getattr(channel, "requests", None) or getattr(channel, "total_outbufs_len", 0)
        for channel in list(channels.values())
    )


def http_runner(address: Optional[str], *, stream: bool = False) -> Callable[..., Outcome]:
    """What ``dingworker --http ADDRESS [--stream]`` runs: a function with
    :func:`~dingworker.cli.run_worker`'s arguments that serves :func:`run_http_worker`.

    Raises:
        click.ClickException: exit code 2, for ``--stream`` without ``--http`` or a bad
            address (checked here, before anything starts).

    Example:
        >>> run = http_runner("127.0.0.1:0")
        >>> http_runner("8080")
        Traceback (most recent call last):
        ...
        dingworker.cli._UsageError: --http takes HOST:PORT such as 127.0.0.1:8080, not '8080'
    """
    if address is None:
        raise _UsageError(
            "--stream only makes sense with --http HOST:PORT (streaming is the default)"
        )
    try:
        split_address(address)
    except dingsync.ConfigurationError as exc:
        raise _UsageError(str(exc)) from None

    def run(
        router: dingsync.Router,
        *,
        health_port: Optional[int] = None,
        health_host: str = "127.0.0.1",
        **kwargs: Any,
    ) -> Outcome:
        try:
            return run_http_worker(
                router,
                address=address,
                stream=stream,
                health_port=health_port,
                health_host=health_host,
                **kwargs,
            )
        except dingsync.ConfigurationError as exc:
            raise _UsageError(str(exc)) from None

    return run


def _health_source(app: CallbackApp, client: Optional[dingsync.StreamClient]) -> HealthSource:
    def source() -> Tuple[bool, Dict[str, Any]]:
        details: Dict[str, Any] = {f"callbacks_{k}": v for k, v in app.stats().items()}
        healthy = True
        if client is not None:
            healthy, stream = client.health()
            details.update(stream)
        return bool(healthy), details

    return source


def run_http_worker(
    router: dingsync.Router,
    *,
    address: str,
    credentials: dingsync.Credentials,
    endpoints: Optional[dingsync.Endpoints] = None,
    config: Optional[dingsync.StreamConfig] = None,
    grace: float = 30.0,
    max_runtime: Optional[float] = None,
    shutdown: Optional[ShutdownRequest] = None,
    dedupe: Optional[DedupeStore] = None,
    stream: bool = False,
    health_port: Optional[int] = None,
    health_host: str = "127.0.0.1",
    environ: Mapping[str, str] = os.environ,
) -> Outcome:
    """Serve ``router``'s callbacks on ``address`` (and its Stream client with ``stream``)
    until a signal or ``max_runtime``; then drain: no new requests, up to ``grace`` seconds
    for running handlers (and receipt handlers), a second signal stops at once.
    ``health_port`` serves /healthz and /metrics on a port of their own as well.

    Example::

        outcome = run_http_worker(route, address="0.0.0.0:8080",
                                  credentials=dingsync.Credentials.from_env())
    """
    config = config if config is not None else dingsync.StreamConfig()
    host, port = split_address(address)
    app = build_callback_app(
        router, credentials, endpoints=endpoints, dedupe=dedupe, environ=environ
    )
    client = (
        dingsync.StreamClient(
            credentials, router, endpoints=endpoints, config=config, dedupe=dedupe
        )
        if stream
        else None
    )
    health = _health_source(app, client)
    server = HttpServer(WorkerApp(app, health), host, port, threads=config.concurrency)
    probes = (
        HealthServer(health, host=health_host, port=health_port)
        if health_port is not None
        else None
    )
    request = shutdown if shutdown is not None else ShutdownRequest()
    outcome = Outcome(1, clean=False)
    with capture_signals(request):
        server.start()
        if probes is not None:
            probes.start()
            log.info("health on %s/healthz, metrics on %s/metrics", probes.url, probes.url)
        try:
            kinds = ", ".join(
                ["robot messages"]
                + ["events"] * (app.crypto is not None)
                + ["card clicks"] * (app.card_auth is not None)
            )
            log.info("HTTP callbacks (%s) on %s/ ; /healthz and /metrics beside", kinds, server.url)
            if client is not None:
                client.start()
            failure = _wait(request, client, max_runtime)
            if failure is not None:
                log.error("stream client stopped: %s", failure)
            outcome = _drain(app, client, server, request, grace)
            return Outcome(1, outcome.clean) if failure is not None else outcome
        finally:
            server.stop(flush=outcome.clean)
            if probes is not None:
                probes.stop()


def _wait(
    request: ShutdownRequest, client: Optional[dingsync.StreamClient], max_runtime: Optional[float]
) -> Optional[str]:
    started = time.monotonic()
    while not request.drain:  # polling: a signal handler must not take a lock
        if max_runtime is not None and time.monotonic() - started >= max_runtime:
            request.request("max-runtime")
            break
        if client is not None and client.error is not None:
            return f"{type(client.error).__name__}: {client.error}"
        time.sleep(_TICK)
    return None


def _drain(
    app: CallbackApp,
    client: Optional[dingsync.StreamClient],
    server: HttpServer,
    request: ShutdownRequest,
    grace: float,
) -> Outcome:
    log.info(
        "stopping (%s): no new callbacks, waiting up to %gs for handlers", request.reason, grace
    )
    server.close_listener()
    results: Dict[str, bool] = {}

    def stop() -> None:
        results["callbacks"] = app.close(grace)
        if client is not None:
            try:
                client.stop(timeout=grace, drain=True)
                results["stream"] = client.stats.in_flight == 0
            except Exception as exc:
                log.error("stream client stop failed: %s: %s", type(exc).__name__, exc)
                results["stream"] = False

    stopper = threading.Thread(target=stop, name="dingworker-drain", daemon=True)
    stopper.start()
    while stopper.is_alive():
        if request.hard:
            log.warning("second stop request (%s): stopping now", request.reason)
            if client is not None:
                client.stop(timeout=_STOP_WAIT, drain=False)
            return Outcome(130 if request.last_signal == signal.SIGINT else 1, clean=False)
        stopper.join(_TICK)
    if not all(results.values()):
        log.warning("handlers still running after --grace %gs; exiting anyway", grace)
        return Outcome(1, clean=False)
    log.info("stopped cleanly")
    return Outcome(0)
