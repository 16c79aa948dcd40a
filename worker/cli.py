"""The ``dingworker`` command: load a :class:`dingsync.Router` from ``module:attr`` and run it.

Example::

    $ export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=...
    $ dingworker myapp.handlers:route --concurrency 16 --health-port 8080
    $ dingworker --emulator examples.calc:route      # no DingTalk account needed

The command is the application, so it alone configures logging; the library only logs. It uses
nothing but dingsync's public API, like any other program would.

Exit codes: 0 after a clean drain (first SIGTERM/SIGINT, or ``--max-runtime``); 1 when the
stream client fails for good (``--give-up-after`` passed without a connection), when handlers
are still running once ``--grace`` is over, or on a hard stop by a second SIGTERM; 130 on a
hard stop by a second SIGINT; 2 for a usage error (bad APP, missing credentials, bad option
value).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Iterator, NamedTuple, Optional, TextIO
from urllib.parse import urlsplit

import click

import dingsync
from dingsync.dedupe import DedupeStore
from dingsync.errors import ImportFromStringError
from dingsync.importer import import_from_string

from .health import HealthServer, HealthSource
from .signals import ShutdownRequest, capture_signals

__all__ = [
    "main",
    "run_worker",
    "load_router",
    "build_dedupe_store",
    "configure_logging",
    "JsonFormatter",
    "Outcome",
]

log = logging.getLogger("dingworker")

EMULATOR_LINE_PREFIX = "DINGSYNC_EMULATOR="
_TICK = 0.05  # how often the main thread looks at the shutdown request and the client
_HARD_STOP_TIMEOUT = 2.0
_LEVELS = ("critical", "error", "warning", "info", "debug")


class Outcome(NamedTuple):
    """How the worker ended: the exit code, and whether every thread finished.

    ``clean=False`` means handler threads may still be running (hard stop, grace expired), so
    the process must exit without waiting for them.
    """

    code: int
    clean: bool = True


class _UsageError(click.ClickException):
    """A one-line ``Error: ...`` and exit code 2, without click's usage banner."""

    exit_code = 2


def load_router(app: str, *, factory: bool = False, app_dir: Optional[str] = ".") -> Any:
    """Resolve ``app`` to a :class:`dingsync.Router`, calling it first when ``factory`` is set.

    Raises:
        ImportFromStringError: with a message saying what to fix.

    Example:
        >>> load_router("json:dumps")
        Traceback (most recent call last):
        ...
        dingsync.errors.ImportFromStringError: APP 'json:dumps' is a function, not a dingsync.Router; did you mean --factory?
    """
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    obj = import_from_string(app)
    if factory:
        if not callable(obj):
            raise ImportFromStringError(
                f"APP {app!r} is a {_kind(obj)}, not callable; drop --factory to use it as is"
            )
        obj = obj()
        if not isinstance(obj, dingsync.Router):
            raise ImportFromStringError(
                f"the factory {app!r} returned a {_kind(obj)}, not a dingsync.Router"
            )
        return obj
    if isinstance(obj, dingsync.Router):
        return obj
    if isinstance(obj, type) and issubclass(obj, dingsync.Router):
        raise ImportFromStringError(
            f"APP {app!r} is the Router class itself; name an instance (route = dingsync.Router())"
        )
    hint = "; did you mean --factory?" if callable(obj) and not isinstance(obj, type) else ""
    raise ImportFromStringError(f"APP {app!r} is a {_kind(obj)}, not a dingsync.Router{hint}")


def _kind(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class ({obj.__name__})"
    if callable(obj) and hasattr(obj, "__code__"):
        return "function"
    return type(obj).__name__


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and message_id when present.

    Example:
        >>> record = logging.LogRecord("dingsync", logging.INFO, "f", 1, "acked %s", ("m1",), None)
        >>> record.message_id = "m1"
        >>> obj = json.loads(JsonFormatter().format(record))
        >>> obj["level"], obj["logger"], obj["message"], obj["message_id"]
        ('INFO', 'dingsync', 'acked m1', 'm1')
    """

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        message_id = getattr(record, "message_id", None)
        if message_id:
            obj["message_id"] = message_id
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        return json.dumps(obj, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        message_id = getattr(record, "message_id", None)
        if message_id:
            first, nl, rest = text.partition("\n")  # keep a traceback below the tagged line
            text = f"{first} [message_id={message_id}]{nl}{rest}"
        return text


@contextmanager
def configure_logging(
    level: str = "info", fmt: str = "text", stream: Optional[TextIO] = None
) -> Iterator[logging.Handler]:
    """Send every log record at ``level`` and above to ``stream`` (stderr) in ``fmt``.

    The root logger is restored afterwards, so that running the command inside another program
    (or a test) leaves that program's logging as it was.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with configure_logging("info", "json", out):
        ...     logging.getLogger("demo").info("hello")
        >>> json.loads(out.getvalue())["message"]
        'hello'
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else _TextFormatter())
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.flush()


def run_worker(
    router: dingsync.Router,
    *,
    credentials: dingsync.Credentials,
    endpoints: Optional[dingsync.Endpoints] = None,
    config: Optional[dingsync.StreamConfig] = None,
    grace: float = 30.0,
    max_runtime: Optional[float] = None,
    health_port: Optional[int] = None,
    health_host: str = "127.0.0.1",
    shutdown: Optional[ShutdownRequest] = None,
    dedupe: Optional[DedupeStore] = None,
) -> Outcome:
    """Run ``router`` until a signal, ``max_runtime`` or a fatal client error; then drain.

    SIGINT/SIGTERM are captured while it runs (main thread only): the first one drains within
    ``grace`` seconds, a second one stops at once. Other threads can ask for a stop through
    ``shutdown.request("reason")``. ``dedupe`` is the client's dedupe store (default: in
    memory; see :func:`build_dedupe_store`).

    When the outcome is not ``clean``, handler threads are still running; the command then ends
    the process with ``os._exit`` because those threads would keep the interpreter alive.

    Example::

        outcome = run_worker(route, credentials=dingsync.Credentials.from_env(), max_runtime=50)
        sys.exit(outcome.code)
    """
    client = dingsync.StreamClient(
        credentials,
        router,
        endpoints=endpoints,
        config=config if config is not None else dingsync.StreamConfig(),
        dedupe=dedupe,
    )
    request = shutdown if shutdown is not None else ShutdownRequest()
    server: Optional[HealthServer] = None
    with capture_signals(request):
        try:
            if health_port is not None:
                server = HealthServer(_health_source(client), host=health_host, port=health_port)
                server.start()
                log.info("health on %s/healthz, metrics on %s/metrics", server.url, server.url)
            try:
                client.start()
            except dingsync.AuthError as exc:  # refused at the first attempt: a typo, not an outage
                log.error("stream client stopped: %s", exc)
                return Outcome(1)
            failure = _wait_for_stop(client, request, max_runtime)
            if failure is not None:
                log.error("stream client stopped: %s", failure)
                client.stop(timeout=grace, drain=True)
                return Outcome(1)
            return _drain(client, request, grace)
        finally:
            if server is not None:
                server.stop()


_REDIS_SCHEMES = ("redis", "rediss", "unix")


def build_dedupe_store(spec: str, *, ttl: float = 600.0) -> Optional[DedupeStore]:
    """The dedupe store named by ``--dedupe``: None for ``memory`` (the client's own in-memory
    store), a :class:`dingsync.RedisDedupeStore` for a ``redis://``, ``rediss://`` or
    ``unix://`` URL (shared by every replica of the app). Nothing connects yet.

    Raises:
        click.ClickException: exit code 2, for an unknown value or a missing redis package.

    Example:
        >>> build_dedupe_store("memory") is None
        True
        >>> build_dedupe_store("redis://127.0.0.1:6379/2", ttl=60)  # doctest: +SKIP
        RedisDedupeStore(prefix='dingsync:dedupe:', ttl=60)
    """
    if spec.strip().lower() == "memory":
        return None
    scheme = urlsplit(spec).scheme.lower()
    if scheme not in _REDIS_SCHEMES:
        raise _UsageError(
            f"--dedupe takes 'memory' or a redis://host:port/db URL, not a {scheme or 'plain'} "
            "value"
        )
    try:
        import redis
    except ImportError:
        raise _UsageError(
            "--dedupe redis://... needs the redis package: pip install 'dingsync[redis]'"
        ) from None
    try:
        client = redis.Redis.from_url(spec)
    except ValueError as exc:  # the message quotes no password: redis-py names the bad part
        raise _UsageError(f"--dedupe: not a usable Redis URL ({exc})") from None
    return dingsync.RedisDedupeStore(client, ttl=ttl)


def _describe_dedupe(spec: str) -> str:
    if spec.strip().lower() == "memory":
        return "in memory (this process only)"
    parts = urlsplit(spec)  # host, port and db only: the URL may carry a password
    where = parts.hostname or parts.path or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"Redis at {where}{port}{parts.path if parts.hostname else ''}"


def _health_source(client: dingsync.StreamClient) -> HealthSource:
    def source() -> tuple[bool, dict[str, Any]]:
        healthy, details = client.health()
        details = dict(details)
        # The client keeps monotonic times; probes and Prometheus want Unix time.
        offset = time.time() - time.monotonic()
        for key in ("last_frame_at", "last_alive_at"):
            if isinstance(details.get(key), (int, float)):
                details[key] = round(details[key] + offset, 3)
        return bool(healthy), details

    return source


def _wait_for_stop(
    client: dingsync.StreamClient, request: ShutdownRequest, max_runtime: Optional[float]
) -> Optional[str]:
    """Block until a stop is requested; return a description if the client died instead."""
    started = time.monotonic()
    # Polling, not Event.wait: the signal handler must not take the lock an Event would need.
    while not request.drain:
        if max_runtime is not None and time.monotonic() - started >= max_runtime:
            request.request("max-runtime")
            break
        error = _client_failure(client)
        if error is not None:
            return error
        time.sleep(_TICK)
    return None


def _client_failure(client: dingsync.StreamClient) -> Optional[str]:
    # StreamClient.start() keeps the exception that ended its thread (ReconnectGaveUp ...).
    error = client.error
    if error is not None:
        return f"{type(error).__name__}: {error}"
    return None


def _drain(client: dingsync.StreamClient, request: ShutdownRequest, grace: float) -> Outcome:
    log.info(
        "stopping (%s): no new messages, waiting up to %gs for running handlers",
        request.reason,
        grace,
    )
    errors: list[BaseException] = []

    def stop() -> None:
        try:
            client.stop(timeout=grace, drain=True)
        except Exception as exc:  # reported by the main thread, which owns the exit code
            errors.append(exc)

    # The drain runs beside the main thread so that a second signal can still cut it short.
    stopper = threading.Thread(target=stop, name="dingworker-drain", daemon=True)
    stopper.start()
    while stopper.is_alive():
        if request.hard:
            log.warning(
                "second stop request (%s): stopping now without waiting for handlers",
                request.reason,
            )
            try:
                client.stop(timeout=_HARD_STOP_TIMEOUT, drain=False)
            except Exception:
                log.exception("hard stop failed")
            return Outcome(130 if request.last_signal == signal.SIGINT else 1, clean=False)
        stopper.join(_TICK)
    if errors:
        log.error("stop failed: %s: %s", type(errors[0]).__name__, errors[0])
        return Outcome(1, clean=False)
    in_flight = client.stats.in_flight
    if in_flight:
        log.warning(
            "%d handler(s) still running after --grace %gs; exiting anyway", in_flight, grace
        )
        return Outcome(1, clean=False)
    log.info("stopped cleanly")
    return Outcome(0)


def _exit(outcome: Outcome) -> None:
    if outcome.clean:
        sys.exit(outcome.code)
    # Handler threads are still running and would keep the interpreter alive at exit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(outcome.code)


@contextmanager
def _quiet_emulator(fake: Any, log_level: str) -> Iterator[None]:
    # The emulator's own connection chatter would bury the bot's log lines; --log-level debug
    # shows it.
    logger = logging.getLogger("dingsync.testing")
    previous = logger.level
    if fake is not None and log_level.lower() != "debug":
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)


def _start_emulator() -> Any:
    try:
        from dingsync.testing import FakeDingTalk
    except ImportError as exc:
        raise _UsageError(
            f"--emulator needs the testing extra ({exc}): pip install 'dingsync[testing]'"
        ) from None
    fake = FakeDingTalk().start()
    base = fake.api_base
    click.echo(f"chat with your bot: {base}/")
    # Machine-readable first, for scripts (and `make demo`) that drive the emulator.
    click.echo(f"{EMULATOR_LINE_PREFIX}{base}")
    sys.stdout.flush()
    click.echo(
        "dingworker: running against a local DingTalk emulator (nothing leaves this machine).\n"
        "  send the bot a message:\n"
        f"    curl -s -X POST {base}/_emulator/chatbot -H 'Content-Type: application/json' "
        """-d '{"text": "1+1"}'\n"""
        "  see its replies:\n"
        f"    curl -s {base}/_emulator/replies\n"
        f"  also: POST {base}/_emulator/event, POST {base}/_emulator/card_callback, "
        f"GET {base}/_emulator/acks",
        err=True,
    )
    return fake


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("app", metavar="APP")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    help="Directory put first on sys.path before APP is imported.",
)
@click.option("--factory", is_flag=True, help="APP is a function that returns the Router.")
@click.option(
    "--client-id",
    envvar="DINGTALK_CLIENT_ID",
    show_envvar=True,
    help="The app's Client ID (AppKey).",
)
@click.option(
    "--client-secret",
    envvar="DINGTALK_CLIENT_SECRET",
    show_envvar=True,
    help="The app's Client Secret (AppSecret); prefer the environment variable.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Handler threads.",
)
@click.option(
    "--dead-after",
    type=click.FloatRange(min=0, min_open=True),
    default=25.0,
    show_default=True,
    help="Seconds without a frame or pong before a connection is replaced (and /healthz fails).",
)
@click.option(
    "--give-up-after",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Exit 1 when no connection could be made for this long in a row (refused "
    "credentials, DingTalk unreachable). Default: keep retrying, with /healthz failing.",
)
@click.option(
    "--max-runtime",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop taking messages after this long, drain and exit 0 (for serverless timers).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long a stop waits for running handlers.",
)
@click.option(
    "--health-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve /healthz and /metrics on this port (0: any free port, logged).",
)
@click.option(
    "--health-host",
    default="127.0.0.1",
    show_default=True,
    help="Interface of the health server; 0.0.0.0 in containers.",
)
@click.option(
    "--dedupe",
    default="memory",
    show_default=True,
    metavar="URL",
    help="Where handled message ids are remembered: memory (this process), or a "
    "redis://host:port/db URL shared by every replica, so that a redelivery that lands on "
    "another replica is not handled twice.",
)
@click.option(
    "--log-level",
    type=click.Choice(_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--log-format",
    type=click.Choice(("text", "json")),
    default="text",
    show_default=True,
    help="json: one object per line (time, level, logger, message, message_id).",
)
@click.option(
    "--emulator",
    is_flag=True,
    help="Run against an in-process DingTalk emulator and print how to message the bot.",
)
@click.version_option(dingsync.__version__, prog_name="dingworker")
def main(
    app: str,
    app_dir: str,
    factory: bool,
    client_id: Optional[str],
    client_secret: Optional[str],
    concurrency: int,
    dead_after: float,
    give_up_after: Optional[float],
    max_runtime: Optional[float],
    grace: float,
    health_port: Optional[int],
    health_host: str,
    dedupe: str,
    log_level: str,
    log_format: str,
    emulator: bool,
) -> None:
    """Run the dingsync Router named by APP ("module:attr", e.g. myapp.handlers:route).

    The first SIGTERM or SIGINT stops intake and lets running handlers finish (up to --grace);
    a second one stops at once.
    """
    try:
        router = load_router(app, factory=factory, app_dir=app_dir)
    except ImportFromStringError as exc:
        raise _UsageError(str(exc)) from None
    try:
        config = dingsync.StreamConfig(
            concurrency=concurrency,
            dead_after=dead_after,
            reconnect=dingsync.ReconnectPolicy(give_up_after=give_up_after),
        )
    except dingsync.ConfigurationError as exc:
        raise _UsageError(str(exc)) from None
    dedupe_store = build_dedupe_store(dedupe, ttl=config.dedupe_ttl)

    fake: Any = None
    if emulator:
        fake = _start_emulator()
        credentials, endpoints = fake.credentials, fake.endpoints
    else:
        if not client_id or not client_secret:
            raise _UsageError(
                "missing credentials: set DINGTALK_CLIENT_ID and DINGTALK_CLIENT_SECRET "
                "(or pass --client-id/--client-secret), or try the bot locally with --emulator"
            )
        try:
            credentials = dingsync.Credentials(client_id=client_id, client_secret=client_secret)
            endpoints = dingsync.Endpoints.from_env()
        except dingsync.ConfigurationError as exc:
            raise _UsageError(str(exc)) from None

    try:
        with configure_logging(log_level, log_format), _quiet_emulator(fake, log_level):
            log.info("dedupe: %s", _describe_dedupe(dedupe))
            outcome = run_worker(
                router,
                credentials=credentials,
                endpoints=endpoints,
                config=config,
                grace=grace,
                max_runtime=max_runtime,
                health_port=health_port,
                health_host=health_host,
                dedupe=dedupe_store,
            )
    finally:
        if fake is not None:
            fake.stop()
    _exit(outcome)
