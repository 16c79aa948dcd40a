"""The ``dingsync`` command: send messages, fetch tokens, download files, run the emulator, and
diagnose a setup.

Every command reads the same environment as the worker: ``DINGTALK_CLIENT_ID``,
``DINGTALK_CLIENT_SECRET``, ``DINGTALK_OPENAPI_ENDPOINT`` and ``DINGTALK_OAPI_ENDPOINT``; a custom
robot comes from ``DINGTALK_WEBHOOK`` and ``DINGTALK_WEBHOOK_SECRET``, the app's AgentId for work
notifications from ``DINGTALK_AGENT_ID``. Secrets belong in the
environment (an env file of the service): command-line arguments are visible to every user in
``ps``.

Example::

    $ export DINGTALK_WEBHOOK=https://oapi.dingtalk.com/robot/send?access_token=...
    $ export DINGTALK_WEBHOOK_SECRET=SEC...
    $ echo "disk 91% on db-1" | dingsync send
    $ dingsync send --group cid123== --markdown "Nightly" "all **green**"
    $ dingsync send --notify --users u1,u2 "payroll is out"     # a work notification
    $ dingsync doctor
"""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import signal
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable, List, Optional, Sequence, Tuple, TypeVar

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
    DINGTALK_OPENAPI_ENDPOINT and DINGTALK_OAPI_ENDPOINT; work notifications also read
    DINGTALK_AGENT_ID.
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


def _print_skipped(result: Any) -> None:
    """The recipients a work notification skipped, and why (stderr)."""
    reasons = {f.user_id: f.code for f in result.forbidden}
    throttled = set(result.flow_controlled_user_ids)
    forbidden = [u for u in result.forbidden_user_ids if u not in throttled]
    for label, ids in (
        ("unknown user ids", result.invalid_user_ids),
        ("forbidden (143105 daily quota, 143106 same content today)", forbidden),
        ("flow-controlled (not delivered; send again in a minute)", sorted(throttled)),
        ("failed", result.failed_user_ids),
    ):
        if ids:
            shown = [f"{u} ({reasons[u]})" if u in reasons else u for u in ids]
            click.echo(f"{label}: {', '.join(shown)}", err=True)


def _split_users(users: Tuple[str, ...], lists: Tuple[str, ...]) -> List[str]:
    ids = list(users)
    for item in lists:
        ids.extend(u.strip() for u in item.split(",") if u.strip())
    return list(dict.fromkeys(ids))


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
@click.option(
    "--users",
    "user_lists",
    multiple=True,
    metavar="ID,ID,...",
    help="Comma-separated user ids (same as several --user).",
)
@click.option(
    "--notify",
    is_flag=True,
    help="Send the users a work notification (工作通知) instead of a robot message.",
)
@click.option(
    "--agent-id",
    envvar="DINGTALK_AGENT_ID",
    metavar="AGENT_ID",
    help="The app's AgentId for --notify; default $DINGTALK_AGENT_ID. Given here, implies --notify.",
)
@click.option("--markdown", "title", metavar="TITLE", help="Send markdown with this title.")
@click.option("--at-mobile", multiple=True, help="Mention a phone number (custom robot only).")
@click.option("--at-user", multiple=True, help="Mention a user id (custom robot only).")
@click.option("--at-all", is_flag=True, help="Mention everyone (custom robot only).")
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
    user_lists: Tuple[str, ...],
    notify: bool,
    agent_id: Optional[str],
    title: Optional[str],
    at_mobile: Tuple[str, ...],
    at_user: Tuple[str, ...],
    at_all: bool,
    timeout: float,
    redis_url: Optional[str],
) -> None:
    """Send TEXT (or stdin) to a custom robot ($DINGTALK_WEBHOOK), a group (--group), users
    (--user/--users) or, with --notify, users' work notifications.

    \b
    Examples:
      export DINGTALK_WEBHOOK='https://oapi.dingtalk.com/robot/send?access_token=...'
      export DINGTALK_WEBHOOK_SECRET='SEC...'
      dingsync send "disk 91% on db-1"
      df -h | dingsync send --group cid123== --markdown "Disks" -
      dingsync send --user manager593 --user u2 "your report is ready"
      DINGTALK_AGENT_ID=3180001 dingsync send --notify --users u1,u2 "payroll is out"

    A work notification lists the recipients DingTalk skipped (unknown, forbidden,
    flow-controlled) and exits 1 when nobody got it. Mentions (--at-*) exist only on a custom
    robot: elsewhere they are refused, as the library refuses them.
    """
    from . import messages as m

    source = ctx.get_parameter_source
    users = tuple(_split_users(users, user_lists))
    notify = notify or source("agent_id") is click.core.ParameterSource.COMMANDLINE
    if webhook and source("webhook") is not click.core.ParameterSource.COMMANDLINE:
        if group or users:
            webhook = None  # DINGTALK_WEBHOOK in the environment; --group/--user chose another
    if source("secret") is click.core.ParameterSource.COMMANDLINE:
        click.echo(
            "warning: --secret is visible to every user in ps; set DINGTALK_WEBHOOK_SECRET",
            err=True,
        )
    if notify and not users:
        raise click.UsageError("--notify sends work notifications to --user/--users")
    targets = [bool(webhook), bool(group), bool(users)]
    if sum(targets) != 1:
        raise click.UsageError(
            "choose exactly one of --group, --user or a webhook (DINGTALK_WEBHOOK or --webhook)"
        )
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
        if notify:
            from .api.notify import parse_agent_id

            agent = parse_agent_id(agent_id, "--agent-id (DINGTALK_AGENT_ID)") if agent_id else None
            task_id = api.notify.send(message, agent_id=agent, user_ids=users)
            click.echo(f"sent (work notification task {task_id})")
            notice = api.notify.send_result(task_id, agent_id=agent)
            _print_skipped(notice)
            if not set(users) - set(notice.skipped_user_ids):
                click.echo("nobody got the notification", err=True)
                sys.exit(EXIT_REFUSED)
            return
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


@main.command(epilog=EXIT_HELP)
@click.option("--proxy", help="Proxy URL to use instead of the environment's.")
@click.option("--ca-bundle", type=click.Path(exists=True, dir_okay=False), help="CA bundle file.")
@click.option("--timeout", type=Seconds, default=5.0, show_default=True)
def doctor(proxy: Optional[str], ca_bundle: Optional[str], timeout: float) -> None:
    """Check credentials, DNS, TLS, proxy settings, a token fetch and a Stream gateway ticket
    (and the gateway host's DNS and TLS); print a hint per failure."""
    from .doctor import diagnose

    if not diagnose(proxy, ca_bundle, timeout):
        click.echo("some checks failed")
        sys.exit(EXIT_REFUSED)
    click.echo("all checks passed")


if __name__ == "__main__":  # pragma: no cover
    main()
