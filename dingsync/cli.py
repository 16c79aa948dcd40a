"""The ``dingsync`` command: send messages, fetch tokens, download files, run the emulator, and
diagnose a setup.

Every command reads the same environment as the worker: ``DINGTALK_CLIENT_ID``,
``DINGTALK_CLIENT_SECRET``, ``DINGTALK_OPENAPI_ENDPOINT`` and ``DINGTALK_OAPI_ENDPOINT``; a custom
robot comes from ``DINGTALK_WEBHOOK`` and ``DINGTALK_WEBHOOK_SECRET``. Secrets belong in the
environment (an env file of the service): command-line arguments are visible to every user in
``ps``.

Example::

    $ export DINGTALK_WEBHOOK=https://oapi.dingtalk.com/robot/send?access_token=...
    $ export DINGTALK_WEBHOOK_SECRET=SEC...
    $ echo "disk 91% on db-1" | dingsync send
    $ dingsync send --group cid123== --markdown "Nightly" "all **green**"
    $ dingsync doctor
"""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import re
import signal
import socket
import ssl
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar
from urllib.parse import urlsplit

import click

from ._extras import missing_extra
from ._version import __version__
from .config import Credentials, Endpoints
from .errors import ConfigurationError, DingSyncError, TransportError

__all__ = ["main", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "EXIT_NETWORK"]

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_NETWORK = 3

EXIT_HELP = """\b
Exit codes (for cron jobs and scripts):
  0  done
  1  DingTalk refused (API error, bad credentials, undelivered recipients) or a check failed
  2  usage or configuration error (nothing was sent)
  3  network failure or timeout (the error says whether the message may have been sent)
"""

SECRETS_HELP = """\b
Secrets: set DINGTALK_CLIENT_SECRET, DINGTALK_WEBHOOK and DINGTALK_WEBHOOK_SECRET in the
environment (a service's env file); --webhook and --secret are visible to every user in ps.
"""

Seconds = click.FloatRange(min=0, min_open=True)

F = TypeVar("F", bound=Callable[..., Any])


def _exits(func: F) -> F:
    """Turn dingsync errors into a one-line message on stderr and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigurationError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        except TransportError as exc:
            verdict = (
                "it may have been sent: check before sending again"
                if exc.maybe_sent
                else "nothing was sent"
            )
            click.echo(f"network error: {exc} ({verdict})", err=True)
            sys.exit(EXIT_NETWORK)
        except DingSyncError as exc:
            click.echo(f"refused: {exc}", err=True)
            sys.exit(EXIT_REFUSED)
        except OSError as exc:  # a local file problem (download destination, ...)
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper  # type: ignore[return-value]


def _client(timeout: float, redis_url: Optional[str] = None, **kwargs: Any) -> Any:
    """An ApiClient from the environment; tokens are shared by this user's runs (or by Redis)."""
    from .api import ApiClient
    from .tokens import FileTokenCache, RedisTokenCache, TokenCache

    cache: TokenCache = RedisTokenCache(redis_url) if redis_url else FileTokenCache()
    return ApiClient(
        Credentials.from_env(),
        endpoints=Endpoints.from_env(),
        timeout=timeout,
        token_cache=cache,
        **kwargs,
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_HELP)
@click.version_option(__version__, prog_name="dingsync")
def main() -> None:
    """dingsync: send DingTalk messages, fetch tokens, download files, run a local emulator.

    Configuration comes from DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET,
    DINGTALK_OPENAPI_ENDPOINT and DINGTALK_OAPI_ENDPOINT.
    """


def _read_text(words: Sequence[str]) -> str:
    if words and list(words) != ["-"]:
        return " ".join(words)
    stream = sys.stdin
    if not words and stream.isatty():
        raise click.UsageError("give the message as arguments, or pipe it on stdin")
    raw = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode("utf-8")
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise click.UsageError(
            f"stdin is not UTF-8 text (byte {exc.start}); send text, or upload a file instead"
        ) from exc
    if not text:
        raise click.UsageError("the message is empty")
    return text


def _print_recipients(result: Any) -> None:
    """Who got a send_to_users message, who may have, who did not (stderr)."""
    for label, ids in (
        ("delivered to", result.delivered_user_ids),
        ("unknown user ids", result.invalid_user_ids),
        ("flow-controlled (not delivered)", result.flow_controlled_user_ids),
        ("filtered", result.filtered_user_ids),
        ("may have been sent to (check before resending)", result.maybe_sent_user_ids),
        ("not sent to", result.unsent_user_ids),
    ):
        if ids:
            click.echo(f"{label}: {', '.join(ids)}", err=True)


@main.command(epilog=SECRETS_HELP + EXIT_HELP)
@click.argument("text", nargs=-1)
@click.option(
    "--webhook",
    envvar="DINGTALK_WEBHOOK",
    metavar="URL",
    help="Custom group robot URL or token; default $DINGTALK_WEBHOOK (use that: argv shows in ps).",
)
@click.option(
    "--secret",
    envvar="DINGTALK_WEBHOOK_SECRET",
    metavar="SEC",
    help="The robot's signing secret; default $DINGTALK_WEBHOOK_SECRET (use that: argv shows in ps).",
)
@click.option(
    "--group", "group", metavar="OPEN_CONVERSATION_ID", help="Send to a group as the app robot."
)
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="USER_ID",
    help="Send 1:1 as the app robot (repeatable).",
)
@click.option("--markdown", "title", metavar="TITLE", help="Send markdown with this title.")
@click.option("--at-mobile", multiple=True, help="Mention a phone number (webhook only).")
@click.option("--at-user", multiple=True, help="Mention a user id (webhook only).")
@click.option("--at-all", is_flag=True, help="Mention everyone (webhook only).")
@click.option(
    "--timeout", type=Seconds, default=10.0, show_default=True, help="Seconds per request."
)
@click.option(
    "--redis",
    "redis_url",
    envvar="DINGSYNC_REDIS_URL",
    metavar="URL",
    help="Share webhook pacing and tokens across machines (default $DINGSYNC_REDIS_URL; "
    "without it they are shared by this user's processes on this machine).",
)
@click.pass_context
@_exits
def send(
    ctx: click.Context,
    text: Tuple[str, ...],
    webhook: Optional[str],
    secret: Optional[str],
    group: Optional[str],
    users: Tuple[str, ...],
    title: Optional[str],
    at_mobile: Tuple[str, ...],
    at_user: Tuple[str, ...],
    at_all: bool,
    timeout: float,
    redis_url: Optional[str],
) -> None:
    """Send TEXT (or stdin) to a custom robot ($DINGTALK_WEBHOOK), a group (--group) or users
    (--user).

    \b
    Examples:
      export DINGTALK_WEBHOOK='https://oapi.dingtalk.com/robot/send?access_token=...'
      export DINGTALK_WEBHOOK_SECRET='SEC...'
      dingsync send "disk 91% on db-1"
      df -h | dingsync send --group cid123== --markdown "Disks" -
      dingsync send --user manager593 --user u2 "your report is ready"
    """
    from . import messages as m

    source = ctx.get_parameter_source
    if webhook and source("webhook") is not click.core.ParameterSource.COMMANDLINE:
        if group or users:
            webhook = None  # DINGTALK_WEBHOOK in the environment; --group/--user chose another
    if source("secret") is click.core.ParameterSource.COMMANDLINE:
        click.echo(
            "warning: --secret is visible to every user in ps; set DINGTALK_WEBHOOK_SECRET",
            err=True,
        )
    targets = [bool(webhook), bool(group), bool(users)]
    if sum(targets) != 1:
        raise click.UsageError(
            "choose exactly one of --group, --user or a webhook (DINGTALK_WEBHOOK or --webhook)"
        )
    if (at_mobile or at_user or at_all) and not webhook:
        raise click.UsageError("mentions (--at-*) only work with --webhook")
    body = _read_text(text)
    message: m.Message
    if title:
        message = m.Markdown(title, body, at_mobiles=at_mobile, at_user_ids=at_user, at_all=at_all)
    else:
        message = m.Text(body, at_mobiles=at_mobile, at_user_ids=at_user, at_all=at_all)
    if webhook:
        from .api.webhook import _WINDOW, MESSAGES_PER_MINUTE, WebhookRobot
        from .ratelimit import RateLimiter, RedisRateLimiter

        limiter: Optional[RateLimiter] = None
        if redis_url:
            limiter = RedisRateLimiter(redis_url, limit=MESSAGES_PER_MINUTE, period=_WINDOW)
        with WebhookRobot(webhook, secret=secret, timeout=timeout, rate_limiter=limiter) as robot:
            robot.send(message)
        click.echo("sent")
        return
    with _client(timeout, redis_url) as api:
        if group:
            key = api.robot.send_to_group(group, message)
            click.echo(f"sent (processQueryKey {key})")
            return
        try:
            result = api.robot.send_to_users(list(users), message)
        except DingSyncError as exc:
            if exc.partial is not None:
                _print_recipients(exc.partial)
            raise
    click.echo(f"sent (processQueryKeys {', '.join(result.process_query_keys)})")
    _print_recipients(result)
    if not result.all_delivered:
        sys.exit(EXIT_REFUSED)


@main.command(epilog=EXIT_HELP)
@click.option("--old", is_flag=True, help="The old-style (oapi /gettoken) token instead.")
@click.option("--show", is_flag=True, help="Print the token itself (it grants API access!).")
@click.option("--timeout", type=Seconds, default=10.0, show_default=True)
@_exits
def token(old: bool, show: bool, timeout: float) -> None:
    """Fetch an access token and print when it expires (the secret is never printed)."""
    kind = "old" if old else "new"
    with _client(timeout) as api:
        current = api.access_token(kind)
    remaining = current.expires_at - time.time()
    until = datetime.fromtimestamp(current.expires_at, tz=timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%SZ"
    )
    click.echo(
        f"{kind}-style token for {api.credentials.client_id}: valid for {remaining:.0f} s "
        f"(until {until})"
    )
    if show:
        click.echo(current.value)


@main.command(epilog=EXIT_HELP)
@click.argument("code")
@click.argument("dest", type=click.Path(dir_okay=True, writable=True))
@click.option("--robot-code", help="Robot code (default: the client id).")
@click.option("--timeout", type=Seconds, default=30.0, show_default=True)
@_exits
def download(code: str, dest: str, robot_code: Optional[str], timeout: float) -> None:
    """Download the file behind a received message's downloadCode CODE to DEST."""
    api = _client(timeout, robot_code=robot_code)
    bars: List[Any] = []
    seen = [0]

    def progress(done: int, total: Optional[int]) -> None:
        if not bars:
            bar = click.progressbar(length=total or 0, label="downloading", file=sys.stderr)
            bars.append(bar.__enter__())
        bars[0].update(done - seen[0])
        seen[0] = done

    try:
        path = api.robot.download(code, dest, progress=progress)
    finally:
        if bars:
            bars[0].__exit__(None, None, None)
        api.close()
    click.echo(f"saved {seen[0]} bytes to {path}")


EMULATOR_GROUP = "cidEmulatorGroup=="
_FEED_TICK = 0.2  # how often the emulator command looks for new messages to print


def _sdk_hints(api_base: str) -> str:
    """How to point each official Stream SDK at an emulator whose API is at ``api_base``.

    Example:
        >>> print(_sdk_hints("http://127.0.0.1:8000").splitlines()[0])
        Official SDKs:
    """
    return (
        "Official SDKs:\n"
        "  Python (dingtalk-stream): reads DINGTALK_OPENAPI_ENDPOINT (above); run the bot unchanged.\n"
        f'  Go: client.NewStreamClient(client.WithOpenApiHost("{api_base}"), ...).\n'
        "  Node and Java hard-code their gateway URL (Node: GATEWAY_URL in src/constants.ts; "
        "Java: only\n"
        "  api.dingtalk.com and its pre/oversea hosts). Redirect them by patching that constant "
        "(Node),\n"
        "  or by resolving api.dingtalk.com to a local TLS proxy in front of "
        f"{api_base} (both)."
    )


@main.command(epilog=EXIT_HELP)
@click.option("--client-id", default="test-client-id", show_default=True)
@click.option("--client-secret", default="test-client-secret", show_default=True)
@click.option(
    "--webhook", "webhooks", multiple=True, metavar="TOKEN", help="Register a custom robot."
)
@click.option("--webhook-secret", help="Signing secret of the --webhook robots.")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="OPEN_CONVERSATION_ID",
    help=f"A group the robot is in (repeatable; {EMULATOR_GROUP} always is). Sends to any "
    "other conversation are refused, as DingTalk refuses them.",
)
@click.option(
    "--file",
    "files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Serve this file for `dingsync download` (repeatable); its download code is printed.",
)
@_exits
def emulator(
    client_id: str,
    client_secret: str,
    webhooks: Tuple[str, ...],
    webhook_secret: Optional[str],
    groups: Tuple[str, ...],
    files: Tuple[str, ...],
) -> None:
    """Run the local DingTalk emulator in the foreground (Ctrl-C stops it).

    Every message it receives (robot sends, custom-robot webhooks, session replies, work
    notifications) is printed as one line; GET <api>/_emulator/sent lists them as JSON.

    \b
    Example:
      dingsync emulator --group cidNightly== --file ./report.pdf
    """
    try:
        from .testing import FakeDingTalk
        from .testing._feed import MessageFeed
    except ImportError as exc:
        raise ConfigurationError(missing_extra("the emulator", "testing", exc)) from exc

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # docker stop / systemd send SIGTERM: stop cleanly as on Ctrl-C

    with contextlib.suppress(ValueError):  # only the main thread may install handlers
        signal.signal(signal.SIGTERM, interrupt)
    fake = FakeDingTalk(client_id, client_secret)
    fake.strict_conversations = True
    fake.add_conversation(EMULATOR_GROUP, *groups)
    fake.start()
    feed = MessageFeed(fake)
    try:
        click.echo(f"DingTalk emulator for client id {client_id}")
        click.echo(f"  new-style API (api): {fake.api_base}")
        click.echo(f"  old-style API (oapi): {fake.oapi_base}")
        click.echo(f"  groups the robot is in: {', '.join(sorted(fake.conversations))}")
        click.echo(f"  chat window: {fake.api_base}/")
        for token_value in webhooks:
            url = fake.add_webhook_robot(token_value, secret=webhook_secret)
            click.echo(f"  custom robot: {url}")
        for number, path in enumerate(files, 1):
            code = f"code-{number}"
            with open(path, "rb") as handle:
                data = handle.read()
            name = os.path.basename(path)
            kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
            fake.add_file(code, data, filename=name, content_type=kind)
            click.echo(f"  file {name} ({len(data)} bytes): dingsync download {code} ./{name}")
        click.echo(f"  sent messages as JSON: {fake.api_base}/_emulator/sent")
        click.echo("Point dingsync (or the official SDK) at it with:")
        for name, value in fake.env().items():
            click.echo(f"export {name}={value}")
        click.echo(_sdk_hints(fake.api_base))
        click.echo("Press Ctrl-C to stop. Each message it receives is printed below.")
        while True:
            _print_feed(feed)
            time.sleep(_FEED_TICK)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    _print_feed(feed)
    click.echo("emulator stopped")


def _print_feed(feed: Any) -> None:
    for line in feed.new_lines():
        click.echo(f"{datetime.now().strftime('%H:%M:%S')} {line}")


# -- doctor ------------------------------------------------------------------------------------
class _Report:
    def __init__(self) -> None:
        self.failed = False

    def line(self, status: str, name: str, detail: str, hint: Optional[str] = None) -> None:
        click.echo(f"[{status:^4}] {name}: {detail}")
        if hint:
            click.echo(f"       hint: {hint}")
        if status == "FAIL":
            self.failed = True


def _redact_url(url: str) -> str:
    """``url`` with any user:password@ masked (proxies and endpoints may carry one)."""
    return re.sub(r"//[^/@]*@", "//***@", url)


def _proxy_for(url: str, explicit: Optional[str]) -> Optional[str]:
    if explicit:
        return explicit
    import requests.utils

    if requests.utils.should_bypass_proxies(url, no_proxy=None):
        return None
    proxies = requests.utils.get_environ_proxies(url)
    return proxies.get(urlsplit(url).scheme) or proxies.get("all")


def _check_host(
    report: _Report,
    label: str,
    url: str,
    proxy: Optional[str],
    ca_bundle: Optional[str],
    timeout: float,
) -> None:
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        report.line(
            "FAIL",
            f"URL {label}",
            f"{_redact_url(url)}: {exc}",
            "fix the port in DINGTALK_OPENAPI_ENDPOINT / DINGTALK_OAPI_ENDPOINT",
        )
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        address = str(infos[0][4][0])
        report.line("ok", f"DNS {label}", f"{host} -> {address}")
    except OSError as exc:
        if proxy:
            report.line(
                "info",
                f"DNS {label}",
                f"{host} does not resolve here ({exc}); the proxy resolves it",
            )
        else:
            report.line(
                "FAIL",
                f"DNS {label}",
                f"{host} does not resolve ({exc})",
                "check the network and DNS, or set HTTPS_PROXY if egress goes through a proxy",
            )
            return
    if parts.scheme != "https":
        report.line(
            "skip",
            f"TLS {label}",
            f"{_redact_url(url)} is plain http:// (an emulator?); no TLS to check",
        )
        return
    if proxy:
        report.line(
            "skip", f"TLS {label}", "traffic goes through the proxy; the token fetch checks it"
        )
        return
    context = ssl.create_default_context(cafile=ca_bundle)
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                report.line(
                    "ok", f"TLS {label}", f"{tls.version()} to {host}:{port}, certificate verified"
                )
    except ssl.SSLError as exc:
        report.line(
            "FAIL",
            f"TLS {label}",
            f"{exc}",
            "a TLS-inspecting proxy or an old CA store; pass --ca-bundle (or REQUESTS_CA_BUNDLE)",
        )
    except OSError as exc:
        report.line(
            "FAIL",
            f"TLS {label}",
            f"cannot connect to {host}:{port} ({exc})",
            "a firewall may block outbound 443; set HTTPS_PROXY if there is a proxy",
        )


@main.command(epilog=EXIT_HELP)
@click.option("--proxy", help="Proxy URL to use instead of the environment's.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), help="CA bundle file.")
@click.option("--timeout", type=Seconds, default=5.0, show_default=True)
def doctor(proxy: Optional[str], ca_bundle: Optional[str], timeout: float) -> None:
    """Check credentials, DNS, TLS, proxy settings and a token fetch; print a hint per failure."""
    report = _Report()
    creds: Optional[Credentials] = None
    try:
        creds = Credentials.from_env()
        report.line("ok", "credentials", f"client id {creds.client_id}, secret set (not shown)")
    except ConfigurationError as exc:
        report.line(
            "FAIL", "credentials", str(exc), "export both variables, e.g. in the service's env file"
        )
    try:
        endpoints = Endpoints.from_env()
    except ConfigurationError as exc:
        report.line(
            "FAIL", "endpoints", str(exc), "fix DINGTALK_OPENAPI_ENDPOINT / DINGTALK_OAPI_ENDPOINT"
        )
        sys.exit(EXIT_REFUSED)
    report.line(
        "info",
        "endpoints",
        f"api {_redact_url(endpoints.api)}, oapi {_redact_url(endpoints.oapi)}",
    )
    env_proxies = [
        f"{name}={_redact_url(os.environ[name])}"
        for name in (
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "ALL_PROXY",
            "NO_PROXY",
            "no_proxy",
        )
        if os.environ.get(name)
    ]
    if proxy:
        report.line("info", "proxy", f"--proxy {_redact_url(proxy)} (overrides the environment)")
    else:
        report.line(
            "info", "proxy", ", ".join(env_proxies) if env_proxies else "none configured (direct)"
        )
    for label, url in (("api", endpoints.api), ("oapi", endpoints.oapi)):
        used = _proxy_for(url, proxy)
        if used:
            report.line("info", f"route {label}", f"via proxy {_redact_url(used)}")
        _check_host(report, label, url, used, ca_bundle, timeout)
    if creds is not None:
        from .api import NO_RETRY, ApiClient

        api = ApiClient(
            creds,
            endpoints=endpoints,
            timeout=timeout,
            proxy=proxy,
            ca_bundle=ca_bundle,
            retry=NO_RETRY,
        )
        for kind in ("new", "old"):
            try:
                current = api.access_token(kind)
                left = current.expires_at - time.time()
                report.line("ok", f"token ({kind}-style)", f"fetched, valid for {left:.0f} s")
            except TransportError as exc:
                report.line(
                    "FAIL", f"token ({kind}-style)", str(exc), "see the DNS/TLS/proxy lines above"
                )
            except ConfigurationError as exc:
                report.line(
                    "FAIL",
                    f"token ({kind}-style)",
                    str(exc),
                    "fix DINGTALK_OPENAPI_ENDPOINT / DINGTALK_OAPI_ENDPOINT",
                )
            except DingSyncError as exc:
                report.line(
                    "FAIL",
                    f"token ({kind}-style)",
                    str(exc),
                    "check DINGTALK_CLIENT_ID / DINGTALK_CLIENT_SECRET in the developer console "
                    "(app -> Credentials & Basic Info)",
                )
        api.close()
    if report.failed:
        click.echo("some checks failed")
        sys.exit(EXIT_REFUSED)
    click.echo("all checks passed")


if __name__ == "__main__":  # pragma: no cover
    main()
