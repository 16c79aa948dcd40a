"""The ``dingworker`` command: load a :class:`dingsync.Router` from ``module:attr`` and run it.

Example::

    $ export DINGTALK_CLIENT_ID=... DINGTALK_CLIENT_SECRET=...
    $ dingworker myapp.handlers:route --concurrency 16 --health-port 8080
    $ dingworker --emulator examples.calc:route      # no DingTalk account needed

The command is the application, so it alone configures logging; the library only logs. It uses
nothing but dingsync's public API, like any other program would (and dingsync's install hints
for a missing extra).

Several bots: ``dingworker sales=sales.bot:route support=support.bot:route`` (see
:mod:`dingworker.apps`).

Exit codes: 0 after a clean drain (first SIGTERM/SIGINT, or ``--max-runtime``); 1 when a
stream client fails for good (credentials refused, ``--give-up-after`` passed without a
connection; with several apps, when any did), when handlers
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
from functools import partial
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Sequence, TextIO, Tuple
from urllib.parse import urlsplit

import click

import dingsync
from dingsync._extras import missing_extra
from dingsync.dedupe import DedupeStore
from dingsync.errors import ImportFromStringError

from .app import load_router
from .apps import AppTagger, Fleet, credentials_for, parse_apps
from .emulator import quiet_emulator, start_emulator
from .health import HealthServer
from .signals import ShutdownRequest, capture_signals

__all__ = [
    "main",
    "run_worker",
    "run_apps",
    "load_router",
    "build_dedupe_store",
    "configure_logging",
    "JsonFormatter",
    "Outcome",
]

log = logging.getLogger("dingworker")

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


def _tags(record: logging.LogRecord) -> Dict[str, str]:
    """The app (several bots in one worker) and the message a record is about, when known."""
    tags = {key: getattr(record, key, None) for key in ("app", "message_id")}
    return {key: str(value) for key, value in tags.items() if value}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and app and message_id when
    present.

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
        obj.update(_tags(record))
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
        tags = _tags(record)
        if tags:
            first, nl, rest = text.partition("\n")  # keep a traceback below the tagged line
            text = f"{first} [{' '.join(f'{k}={v}' for k, v in tags.items())}]{nl}{rest}"
        return text


@contextmanager
def configure_logging(
    level: str = "info",
    fmt: str = "text",
    stream: Optional[TextIO] = None,
    *,
    apps: Sequence[str] = (),
) -> Iterator[logging.Handler]:
    """Send every log record at ``level`` and above to ``stream`` (stderr) in ``fmt``; the
    records of the named ``apps``' threads are tagged with the app (:class:`AppTagger`).

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
    if apps:
        handler.addFilter(AppTagger(apps))
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a DeprecationWarning is a log line too, in the same format
    try:
        yield handler
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(previous_level)
        handler.flush()


def run_worker(
    router: dingsync.Router, *, credentials: dingsync.Credentials, **options: Any
) -> Outcome:
    """Run ``router`` until a signal, ``max_runtime`` or a fatal client error; then drain.

    The options are those of :func:`run_apps`, which this calls with one unnamed app.

    Example::

        outcome = run_worker(route, credentials=dingsync.Credentials.from_env(), max_runtime=50)
        sys.exit(outcome.code)
    """
    return run_apps([(None, router, credentials)], **options)


def run_apps(
    apps: Sequence[Tuple[Optional[str], dingsync.Router, dingsync.Credentials]],
    *,
    endpoints: Optional[dingsync.Endpoints] = None,
    config: Optional[dingsync.StreamConfig] = None,
    grace: float = 30.0,
    max_runtime: Optional[float] = None,
    health_port: Optional[int] = None,
    health_host: str = "127.0.0.1",
    shutdown: Optional[ShutdownRequest] = None,
    dedupe: Optional[DedupeStore] = None,
) -> Outcome:
    """Run each app's Router on its own stream client until a signal, ``max_runtime``, or
    until no app runs any more; then drain them all.

    SIGINT/SIGTERM are captured while it runs (main thread only): the first one drains within
    ``grace`` seconds, a second one stops at once. Other threads can ask for a stop through
    ``shutdown.request("reason")``. ``dedupe`` is the clients' dedupe store (default: in
    memory; see :func:`build_dedupe_store`). An app whose credentials are refused, or that
    gives up, is logged and left out; the others run on, and the exit code is then 1.

    When the outcome is not ``clean``, handler threads are still running; the command then ends
    the process with ``os._exit`` because those threads would keep the interpreter alive.

    Example::

        outcome = run_apps([("sales", sales_route, sales_creds), ("hr", hr_route, hr_creds)])
        sys.exit(outcome.code)
    """
    fleet = Fleet(
        [
            (
                name,
                dingsync.StreamClient(
                    credentials,
                    router,
                    endpoints=endpoints,
                    config=config if config is not None else dingsync.StreamConfig(),
                    dedupe=dedupe,
                    name=name,
                ),
            )
            for name, router, credentials in apps
        ]
    )
    request = shutdown if shutdown is not None else ShutdownRequest()
    server: Optional[HealthServer] = None
    with capture_signals(request):
        try:
            if health_port is not None:
                server = HealthServer(fleet.health, host=health_host, port=health_port)
                server.start()
                log.info("health on %s/healthz, metrics on %s/metrics", server.url, server.url)
            if not fleet.start():
                return Outcome(1)
            failure = _wait_for_stop(fleet, request, max_runtime)
            if failure is not None:
                log.error("stream client stopped: %s", failure)
                fleet.stop(grace, drain=True)
                return Outcome(1)
            outcome = _drain(fleet, request, grace)
            return Outcome(1) if fleet.failed and outcome == Outcome(0) else outcome
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
    except ImportError as exc:
        raise _UsageError(missing_extra("--dedupe redis://...", "redis", exc)) from None
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


def _wait_for_stop(
    fleet: Fleet, request: ShutdownRequest, max_runtime: Optional[float]
) -> Optional[str]:
    """Block until a stop is requested; return a description if every client died instead."""
    started = time.monotonic()
    # Polling, not Event.wait: the signal handler must not take the lock an Event would need.
    while not request.drain:
        if max_runtime is not None and time.monotonic() - started >= max_runtime:
            request.request("max-runtime")
            break
        error = fleet.failure()
        if error is not None:
            return error
        time.sleep(_TICK)
    return None


def _drain(fleet: Fleet, request: ShutdownRequest, grace: float) -> Outcome:
    log.info(
        "stopping (%s): no new messages, waiting up to %gs for running handlers",
        request.reason,
        grace,
    )
    errors: list[BaseException] = []
    # The drain runs beside the main thread so that a second signal can still cut it short.
    stopper = threading.Thread(
        target=lambda: errors.extend(fleet.stop(grace, drain=True)),
        name="dingworker-drain",
        daemon=True,
    )
    stopper.start()
    while stopper.is_alive():
        if request.hard:
            log.warning(
                "second stop request (%s): stopping now without waiting for handlers",
                request.reason,
            )
            for error in fleet.stop(_HARD_STOP_TIMEOUT, drain=False):
                log.error("hard stop failed: %s: %s", type(error).__name__, error)
            return Outcome(130 if request.last_signal == signal.SIGINT else 1, clean=False)
        stopper.join(_TICK)
    if errors:
        log.error("stop failed: %s: %s", type(errors[0]).__name__, errors[0])
        return Outcome(1, clean=False)
    in_flight = fleet.in_flight
    if in_flight:
        log.warning(
            "%d handler(s) still running after --grace %gs; exiting anyway", in_flight, grace
        )
        return Outcome(1, clean=False)
    log.info("stopped cleanly")
    return Outcome(0)


def _run_named(
    apps: List[Tuple[Optional[str], dingsync.Router, dingsync.Credentials]],
    router: dingsync.Router,
    *,
    credentials: dingsync.Credentials,
    **options: Any,
) -> Outcome:
    """``run_worker`` for named apps: each runs its own router on its own credentials."""
    return run_apps(apps, **options)


def _exit(outcome: Outcome) -> None:
    if outcome.clean:
        sys.exit(outcome.code)
    # Handler threads are still running and would keep the interpreter alive at exit.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(outcome.code)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("apps", metavar="APP...", nargs=-1, required=True)
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
@click.option(
    "--http",
    "http_address",
    default=None,
    metavar="HOST:PORT",
    help="Receive DingTalk's HTTP callbacks (robot messages, events, card clicks) on this "
    "address instead of the Stream websocket, with /healthz and /metrics beside them. Events "
    "need DINGTALK_EVENT_TOKEN and DINGTALK_EVENT_AES_KEY; card clicks "
    "DINGTALK_CARD_CALLBACK_SECRET.",
)
@click.option(
    "--stream",
    "also_stream",
    is_flag=True,
    help="With --http: also run the Stream client in this process, on the same Router.",
)
@click.version_option(dingsync.__version__, prog_name="dingworker")
def main(
    apps: Tuple[str, ...],
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
    http_address: Optional[str] = None,
    also_stream: bool = False,
) -> None:
    """Run the dingsync Router named by APP ("module:attr", e.g. myapp.handlers:route), or
    several named bots ("sales=sales.bot:route support=support.bot:route"), each with its own
    credentials from DINGTALK_<NAME>_CLIENT_ID and DINGTALK_<NAME>_CLIENT_SECRET.

    The first SIGTERM or SIGINT stops intake and lets running handlers finish (up to --grace);
    a second one stops at once.
    """
    try:
        specs = parse_apps(apps)
    except ValueError as exc:
        raise _UsageError(str(exc)) from None
    named = specs[0].name is not None
    if named and (emulator or http_address is not None or also_stream):
        raise _UsageError("--emulator and --http run one APP without a name; named apps stream")
    try:
        # Logging is on already, so that --log-level debug shows a failing import's traceback.
        with configure_logging(log_level, log_format):
            routers = [load_router(spec.target, factory=factory, app_dir=app_dir) for spec in specs]
    except ImportFromStringError as exc:
        raise _UsageError(str(exc)) from None
    router = routers[0]
    try:
        config = dingsync.StreamConfig(
            concurrency=concurrency,
            dead_after=dead_after,
            reconnect=dingsync.ReconnectPolicy(give_up_after=give_up_after),
        )
    except dingsync.ConfigurationError as exc:
        raise _UsageError(str(exc)) from None
    dedupe_store = build_dedupe_store(dedupe, ttl=config.dedupe_ttl)
    serve: Any = run_worker
    if http_address is not None or also_stream:
        from .http import http_runner

        serve = http_runner(http_address, stream=also_stream)

    credentials: Optional[dingsync.Credentials] = None
    endpoints: Optional[dingsync.Endpoints] = None
    if named:  # each with its own credentials
        try:
            fleet = [(s.name, r, credentials_for(s, os.environ)) for s, r in zip(specs, routers)]
        except dingsync.ConfigurationError as exc:
            raise _UsageError(str(exc)) from None
        serve = partial(_run_named, fleet)
        credentials, endpoints = fleet[0][2], dingsync.Endpoints.from_env()
    elif not emulator:
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

    fake: Any = None
    try:
        # The emulator starts under the configured logging, so that with --log-format json
        # everything on stderr is JSON.
        names = [s.name for s in specs if s.name is not None]
        with (
            configure_logging(log_level, log_format, apps=names),
            quiet_emulator(emulator, log_level),
        ):
            if emulator:
                fake = start_emulator(router, log_format)
                credentials, endpoints = fake.credentials, fake.endpoints
            assert credentials is not None
            log.info("dedupe: %s", _describe_dedupe(dedupe))
            outcome = serve(
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
    except dingsync.ConfigurationError as exc:  # a busy --health-port, a missing extra
        raise _UsageError(str(exc)) from None
    finally:
        if fake is not None:
            fake.stop()
    _exit(outcome)
