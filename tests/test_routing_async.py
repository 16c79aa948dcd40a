"""Item 4 of issue 15: async handlers are refused when they are registered, not on each message."""

from __future__ import annotations

import functools
from typing import Any, AsyncIterator, Callable

import pytest

from dingsync import Router
from dingsync.errors import ConfigurationError


async def async_handler(msg: Any, ctx: Any) -> None:
    return None


async def async_generator(msg: Any, ctx: Any) -> AsyncIterator[str]:
    yield "x"


class AsyncCallable:
    async def __call__(self, msg: Any, ctx: Any) -> None:
        return None


REGISTRATIONS: dict[str, Callable[[Router, Any], Any]] = {
    "chatbot": lambda route, f: route.chatbot(f),
    "chatbot(ack=receipt)": lambda route, f: route.chatbot(ack="receipt")(f),
    "card_callback": lambda route, f: route.card_callback(f),
    "callback": lambda route, f: route.callback("/v1.0/graph/api/invoke")(f),
    "event": lambda route, f: route.event(f),
    "event(type)": lambda route, f: route.event("user_add_org")(f),
    "error": lambda route, f: route.error(f),
}
HANDLERS = {
    "async def": async_handler,
    "async generator": async_generator,
    "async __call__": AsyncCallable(),
    "partial of async def": functools.partial(async_handler),
}


@pytest.mark.parametrize("register", REGISTRATIONS.values(), ids=list(REGISTRATIONS))
@pytest.mark.parametrize("handler", HANDLERS.values(), ids=list(HANDLERS))
def test_async_handlers_are_refused_at_registration_with_what_to_do(
    register: Callable[[Router, Any], Any], handler: Any
) -> None:
    route = Router()
    with pytest.raises(ConfigurationError) as info:
        register(route, handler)
    message = str(info.value)
    assert "synchronous" in message
    assert "asyncio.run" in message and "dingtalk-stream" in message
    assert route.routes == ()


def test_sync_handlers_and_sync_callables_are_still_accepted() -> None:
    class Handler:
        def __call__(self, msg: Any, ctx: Any) -> None:
            return None

    route = Router()
    route.chatbot(Handler())
    route.event(lambda ev, ctx: None)
    assert len(route.routes) == 2
