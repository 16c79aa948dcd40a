"""``dingworker --emulator``: start the local DingTalk and tell the user how to talk to the bot.

The banner offers what the router handles (chat messages, events, card clicks), so an app that
only handles events is not told to send a chat message that nothing would answer.

Example:
    >>> import dingsync
    >>> route = dingsync.Router()
    >>> _ = route.event("user_add_org")(lambda ev, ctx: None)
    >>> lines = banner(route, "http://127.0.0.1:1234")
    >>> any("/_emulator/event" in line for line in lines)
    True
    >>> any("/_emulator/chatbot" in line for line in lines)
    False
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator, List

import click

import dingsync
from dingsync._extras import missing_extra
from dingsync.routing import RouteKind

__all__ = ["EMULATOR_LINE_PREFIX", "banner", "start_emulator", "quiet_emulator"]

log = logging.getLogger("dingworker")

#: The first line on stdout: the emulator's address, for scripts (and ``make demo``).
EMULATOR_LINE_PREFIX = "DINGSYNC_EMULATOR="

_EXAMPLE_EVENT = "user_add_org"


def _curl_post(base: str, path: str, body: Any) -> str:
    payload = json.dumps(body, ensure_ascii=False)
    return (
        f"curl -s -X POST {base}/_emulator/{path} -H 'Content-Type: application/json' "
        f"-d '{payload}'"
    )


def banner(router: dingsync.Router, base: str) -> List[str]:
    """The lines that tell the user how to reach what ``router`` handles on the emulator at
    ``base``."""
    kinds = {r.kind for r in router.routes}
    event_types = sorted({r.event_type or "" for r in router.routes if r.kind == RouteKind.EVENT})
    lines = ["running against a local DingTalk emulator (nothing leaves this machine)"]
    if RouteKind.CHATBOT in kinds:
        lines += [
            "  send the bot a chat message:",
            "    " + _curl_post(base, "chatbot", {"text": "hello"}),
            "  see its replies:",
            f"    curl -s {base}/_emulator/replies",
        ]
    if event_types:
        named = [t for t in event_types if t]
        handled = ", ".join(named) + (" and any other event" if "" in event_types else "")
        lines += [
            f"  push an event (it handles: {handled or 'every event'}):",
            "    "
            + _curl_post(base, "event", {"event_type": (named or [_EXAMPLE_EVENT])[0], "data": {}}),
        ]
    if RouteKind.CARD_CALLBACK in kinds:
        lines += [
            "  click a card button:",
            "    "
            + _curl_post(base, "card_callback", {"out_track_id": "card-1", "params": {"ok": "1"}}),
        ]
    topics = [r.topic for r in router.routes if r.kind == RouteKind.CALLBACK]
    if topics:
        lines.append(
            f"  callback topic(s) {', '.join(topics)}: push them from a test with "
            "FakeDingTalk.push_frame"
        )
    if not router.routes:
        lines.append("  the router has no handlers: nothing will answer")
    lines.append(f"  what the bot acked: curl -s {base}/_emulator/acks")
    return lines


def start_emulator(router: dingsync.Router, log_format: str) -> Any:
    """Start a FakeDingTalk, print its address on stdout and the banner on stderr.

    With ``--log-format json`` the banner is one log record, so that stderr stays JSON.

    Raises:
        dingsync.ConfigurationError: the testing extra is not installed.
    """
    try:
        from dingsync.testing import FakeDingTalk
    except ImportError as exc:
        raise dingsync.ConfigurationError(missing_extra("--emulator", "testing", exc)) from None
    fake = FakeDingTalk().start()
    click.echo(f"chat with your bot: {fake.api_base}/")
    click.echo(f"{EMULATOR_LINE_PREFIX}{fake.api_base}")
    sys.stdout.flush()
    lines = banner(router, fake.api_base)
    if log_format == "json":
        log.info("\n".join(lines))
    else:
        click.echo("dingworker: " + "\n".join(lines), err=True)
    return fake


@contextmanager
def quiet_emulator(emulator: bool, log_level: str) -> Iterator[None]:
    """The emulator's connection chatter would bury the bot's log lines; --log-level debug
    shows it."""
    logger = logging.getLogger("dingsync.testing")
    previous = logger.level
    if emulator and log_level.lower() != "debug":
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(previous)
