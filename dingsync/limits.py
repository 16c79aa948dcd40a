"""The size each send path takes, checked before anything is sent.

Example:
    >>> LIMITS["robot group"]
    15000
"""

from __future__ import annotations

import json
from typing import Any, Dict

from .errors import MessageTooLong

__all__ = ["LIMITS", "body_size", "check_size"]

#: The most each send path takes, in bytes of UTF-8: of ``msgParam`` for the robot OpenAPI, of
#: the JSON body for the webhooks, of the ``msg`` object for work notifications. DingTalk
#: publishes only the robot's 15,000 (openapi.md §3.2; the 1:1 and private-chat sends share its
#: validator). The webhooks' 20,000 is what common clients cap at, and work notifications get the
#: robot's figure: a message DingTalk would cut or drop is better refused here, with its size.
LIMITS: Dict[str, int] = {
    "robot 1:1": 15_000,
    "robot group": 15_000,
    "robot private chat": 15_000,
    "custom robot": 20_000,
    "session webhook": 20_000,
    "work notification": 15_000,
}


def body_size(body: Any) -> int:
    """The size DingTalk receives: UTF-8 bytes of ``body`` (a string, or JSON-encoded).

    Example:
        >>> body_size("日报"), body_size({"text": {"content": "ok"}})
        (6, 27)
    """
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return len(text.encode("utf-8"))


def check_size(channel: str, body: Any) -> None:
    """Refuse ``body`` when it is over the limit of ``channel`` (a key of :data:`LIMITS`).

    Example:
        >>> check_size("robot group", "x" * 15_001)
        Traceback (most recent call last):
        ...
        dingsync.errors.MessageTooLong: the message is 15,001 bytes; the robot group path takes at most 15,000 (nothing was sent): shorten it, split it, or send a link to the full text

    Raises:
        MessageTooLong: with ``channel``, ``size`` and ``limit``.
    """
    limit = LIMITS[channel]
    size = body_size(body)
    if size > limit:
        raise MessageTooLong(
            f"the message is {size:,} bytes; the {channel} path takes at most {limit:,} "
            "(nothing was sent): shorten it, split it, or send a link to the full text",
            channel=channel,
            size=size,
            limit=limit,
        )
