"""Router: which function handles which frame, and how its return value becomes the ack.

Registration is by decorator; every decorator returns the function unchanged, so handlers stay
plain functions that tests can call directly. :meth:`Router.dispatch` is pure and synchronous:
no threads, no sockets; the :class:`~dingsync.StreamClient` calls the same code on its handler
threads.

Example:
    >>> import dingsync
    >>> route = dingsync.Router()
    >>> @route.chatbot
    ... def echo(msg, ctx):
    ...     return {"echo": msg.text}
    >>> route.subscriptions()
    [{'type': 'CALLBACK', 'topic': '/v1.0/im/bot/messages/get'}]
"""

from __future__ import annotations

import inspect
import logging
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    List,
    Mapping,
    Optional,
    Tuple,
    TypeVar,
    Union,
    overload,
)

import attrs

from .errors import ConfigurationError, ProtocolError
from .frames import Ack, Frame, FrameType, Topic, dumps
from .models import CardCallback, CardResponse, ChatbotMessage, Event

if TYPE_CHECKING:
    from .context import Context

__all__ = ["Router", "Route", "RouteKind", "AckPolicy", "HandlerResult"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: What a handler may return: None (OK), a str or dict (the ack's payload), a CardResponse
#: (card callbacks) or a ready-made Ack.
HandlerResult = Union[None, str, Mapping[str, Any], CardResponse, Ack]

_EVENT_OK = {"status": "SUCCESS", "message": "success"}
_EVENT_OK_DATA = dumps(_EVENT_OK)
_NO_RESPONSE_DATA = dumps({"response": None})


class AckPolicy:
    """When a route's frames are acked.

    Example:
        >>> route = Router()
        >>> _ = route.chatbot(ack=AckPolicy.RECEIPT)(lambda msg, ctx: None)
    """

    #: after the handler returns; a failure is answered with code 500 (events: LATER), so
    #: DingTalk may redeliver. The default.
    AFTER = "after"
    #: as soon as the frame is read, before the handler runs; for handlers slower than
    #: DingTalk's ~60 s redelivery window. A failure is only logged.
    RECEIPT = "receipt"


class RouteKind:
    """The kinds of route a Router holds.

    Example:
        >>> route = Router()
        >>> _ = route.chatbot(lambda msg, ctx: None)
        >>> [r.kind for r in route.routes] == [RouteKind.CHATBOT]
        True
    """

    CHATBOT = "chatbot"
    CARD_CALLBACK = "card_callback"
    EVENT = "event"
    CALLBACK = "callback"


def _wants_context(func: Callable[..., Any]) -> bool:
    # Handlers may be written as f(payload) when they need no context.
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # some builtins and C callables have no signature
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return True
    return len(positional) >= 2


def _check_ack(ack: str) -> str:
    if ack not in (AckPolicy.AFTER, AckPolicy.RECEIPT):
        raise ConfigurationError(f"ack must be 'after' or 'receipt', got {ack!r}")
    return ack


def _check_sync(kind: str, func: Any) -> None:
    # A coroutine function returns a coroutine that nothing here would ever await: every
    # message would fail, so refuse it while the mistake is still on the screen.
    call = getattr(func, "__call__", None)  # noqa: B004  (an instance with async __call__)
    if not any(
        inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f) for f in (func, call)
    ):
        return
    name = getattr(func, "__qualname__", None) or type(func).__name__
    raise ConfigurationError(
        f"{kind} handler {name} is async; dingsync is synchronous and calls handlers on its own "
        "threads, so write a plain def. To call async code from it, run the coroutine with "
        "asyncio.run(...) inside the handler; for an asyncio application, use the official "
        "dingtalk-stream SDK instead"
    )


def _response(result: Any) -> Any:
    if isinstance(result, CardResponse):
        return result.to_wire()
    if result is None or isinstance(result, (str, Mapping)):
        return dict(result) if isinstance(result, Mapping) else result
    raise ConfigurationError(
        "a handler must return None, a str, a dict, a CardResponse or an Ack, "
        f"not {type(result).__name__}"
    )


@attrs.frozen(kw_only=True)
class Route:
    """One registered handler and what it answers to.

    Attributes:
        kind: one of :class:`RouteKind`.
        topic: the CALLBACK topic, or ``"*"`` for events.
        event_type: the event handled, or None for every event (events only).
        handler: the user's function.
        ack: an :class:`AckPolicy` value.

    Example:
        >>> route = Router()
        >>> _ = route.event("user_add_org")(lambda ev, ctx: None)
        >>> r, = route.routes
        >>> r.kind, r.topic, r.event_type, r.ack
        ('event', '*', 'user_add_org', 'after')
    """

    kind: str
    topic: str
    handler: Callable[..., Any]
    ack: str = AckPolicy.AFTER
    event_type: Optional[str] = None
    takes_context: bool = attrs.field(default=True, repr=False)

    @property
    def name(self) -> str:
        """The handler's qualified name, for logs."""
        return getattr(self.handler, "__qualname__", repr(self.handler))

    def decode(self, frame: Frame) -> Any:
        """The typed payload the handler receives.

        Example:
            >>> r = Route(kind=RouteKind.CALLBACK, topic="/t", handler=print)
            >>> r.decode(Frame.from_dict({"type": "CALLBACK", "data": '{"a": 1}',
            ...     "headers": {"messageId": "m", "topic": "/t"}}))
            {'a': 1}

        Raises:
            ProtocolError: the frame's data does not fit the payload model.
        """
        if self.kind == RouteKind.CHATBOT:
            return ChatbotMessage.from_wire(frame.json())
        if self.kind == RouteKind.CARD_CALLBACK:
            return CardCallback.from_wire(frame.json())
        if self.kind == RouteKind.EVENT:
            return Event.from_frame(frame)
        return frame.json()

    def dedupe_key(self, frame: Frame, payload: Any) -> str:
        """The identity of the message: a chatbot message's ``msgId`` and an event's
        ``eventId`` survive redelivery even under a new ``messageId``; every other frame is
        known by its ``messageId``."""
        if isinstance(payload, ChatbotMessage):
            return f"msg:{payload.msg_id}"
        if isinstance(payload, Event) and payload.event_id:
            return f"event:{payload.event_id}"
        return f"mid:{frame.message_id}"

    def call(self, payload: Any, ctx: Context) -> Any:
        """Run the handler (exceptions propagate; :meth:`Router.invoke` catches them)."""
        if self.takes_context:
            return self.handler(payload, ctx)
        return self.handler(payload)

    def render(self, result: Any, message_id: str) -> Ack:
        """Turn a handler's return value into the ack (protocol.md §3.2).

        Example:
            >>> r = Route(kind=RouteKind.EVENT, topic="*", handler=print)
            >>> r.render(None, "m1").data
            '{"status":"SUCCESS","message":"success"}'

        Raises:
            ConfigurationError: the value has a type a handler may not return.
        """
        if result is None:  # the common case: the ack's data is a constant
            data = _EVENT_OK_DATA if self.kind == RouteKind.EVENT else _NO_RESPONSE_DATA
            return Ack(message_id=message_id, data=data)
        if isinstance(result, Ack):
            return (
                result
                if result.message_id == message_id
                else attrs.evolve(result, message_id=message_id)
            )
        if self.kind == RouteKind.EVENT:
            if result is None:
                return Ack.ok(message_id, _EVENT_OK)
            if isinstance(result, str):
                return Ack.ok(message_id, {"status": "SUCCESS", "message": result})
            if isinstance(result, Mapping):
                return Ack.ok(message_id, {**_EVENT_OK, **result})
            raise ConfigurationError(
                f"an event handler must return None, a str or a dict, not {type(result).__name__}"
            )
        return Ack.ok(message_id, {"response": _response(result)})

    def receipt_ack(self, message_id: str) -> Ack:
        """The ack sent on receipt (and for a handled message whose ack was not kept)."""
        return self.render(None, message_id)

    def error_ack(self, message_id: str, exc: BaseException) -> Ack:
        """Code 500; for events ``LATER``, which asks DingTalk to deliver the event again."""
        text = f"handler failed: {type(exc).__name__}"
        if self.kind == RouteKind.EVENT:
            return Ack.error(message_id, 500, text, {"status": "LATER", "message": text})
        return Ack.error(message_id, 500, text, {"response": None})


#: ``on_error(exc, ctx)``: return None for the default 500 ack, or a result/Ack to send instead.
ErrorHandler = Callable[[BaseException, "Context"], Any]


class Router:
    """Maps frames to handler functions.

    Handlers take ``(payload, ctx)`` (or just ``(payload)``) and return a
    :data:`HandlerResult`. A handler that raises is logged with the message id and answered
    with code 500; the loop never dies.

    Example:
        >>> route = Router()
        >>> @route.event("user_add_org")
        ... def on_join(ev, ctx):
        ...     pass
        >>> @route.card_callback(ack="receipt")
        ... def on_click(cb, ctx):
        ...     return CardResponse(card_data={"status": "done"})
        >>> [r.kind for r in route.routes]
        ['card_callback', 'event']
    """

    def __init__(self) -> None:
        self._callbacks: Dict[str, Route] = {}
        self._events: Dict[Optional[str], Route] = {}
        self._error: Optional[ErrorHandler] = None

    def __repr__(self) -> str:
        return f"Router(routes={len(self.routes)})"

    # -- registration --------------------------------------------------------------------
    @overload
    def chatbot(self, func: F) -> F: ...

    @overload
    def chatbot(self, func: None = None, *, ack: str = ...) -> Callable[[F], F]: ...

    def chatbot(self, func: Optional[F] = None, *, ack: str = AckPolicy.AFTER) -> Any:
        """Handle chatbot messages (topic ``/v1.0/im/bot/messages/get``) as ChatbotMessage.

        Example:
            >>> route = Router()
            >>> @route.chatbot(ack="receipt")
            ... def on_message(msg, ctx):
            ...     ctx.reply_text(f"you said {msg.text}")
        """
        return self._callback_decorator(RouteKind.CHATBOT, Topic.CHATBOT, func, ack)

    @overload
    def card_callback(self, func: F) -> F: ...

    @overload
    def card_callback(self, func: None = None, *, ack: str = ...) -> Callable[[F], F]: ...

    def card_callback(self, func: Optional[F] = None, *, ack: str = AckPolicy.AFTER) -> Any:
        """Handle card interactions (``/v1.0/card/instances/callback``) as CardCallback;
        return a :class:`~dingsync.CardResponse` to update the card.

        Example:
            >>> route = Router()
            >>> @route.card_callback
            ... def on_click(cb, ctx):
            ...     return CardResponse(card_data={"clicked": cb.params.get("action")})
        """
        return self._callback_decorator(RouteKind.CARD_CALLBACK, Topic.CARD_CALLBACK, func, ack)

    def callback(self, topic: str, *, ack: str = AckPolicy.AFTER) -> Callable[[F], F]:
        """Handle any CALLBACK topic raw: the handler gets the decoded ``data`` dict and its
        return value becomes ``{"response": ...}``.

        Example:
            >>> route = Router()
            >>> @route.callback("/v1.0/graph/api/invoke")
            ... def on_graph(data, ctx):
            ...     return {"statusLine": {"code": 200, "reasonPhrase": "OK"}, "body": "{}"}
        """
        if not isinstance(topic, str) or not topic:
            raise ConfigurationError(
                "callback() needs the topic, e.g. @route.callback('/v1.0/graph/api/invoke')"
            )
        return self._callback_decorator(RouteKind.CALLBACK, topic, None, ack)  # type: ignore[no-any-return]

    @overload
    def event(self, event_type: F) -> F: ...

    @overload
    def event(self, event_type: Optional[str] = None, *, ack: str = ...) -> Callable[[F], F]: ...

    def event(self, event_type: Any = None, *, ack: str = AckPolicy.AFTER) -> Any:
        """Handle events of one type, or every event with ``@route.event()``.

        A specific handler wins over the catch-all one. Events that no handler takes are
        acked as SUCCESS, so DingTalk does not redeliver them forever.

        Example:
            >>> route = Router()
            >>> @route.event("chat_update_title")
            ... def on_title(ev, ctx):
            ...     print(ev.data["title"])
            >>> @route.event()
            ... def on_any(ev, ctx):
            ...     pass
        """
        if callable(event_type):  # bare @route.event
            return self._add_event(None, event_type, ack)
        if event_type is not None and (not isinstance(event_type, str) or not event_type):
            raise ConfigurationError("event() takes an event type such as 'user_add_org'")

        def register(func: F) -> F:
            return self._add_event(event_type, func, ack)

        return register

    def error(self, func: F) -> F:
        """Register ``on_error(exc, ctx)``: it sees every handler exception first and may
        return an Ack or a handler result to send instead of the default code-500 ack.

        Example:
            >>> route = Router()
            >>> @route.error
            ... def on_error(exc, ctx):
            ...     if isinstance(exc, KeyError):
            ...         return "ignored"
        """
        _check_sync("error", func)
        if self._error is not None:
            raise ConfigurationError("an error handler is already registered")
        self._error = func
        return func

    def _callback_decorator(self, kind: str, topic: str, func: Optional[F], ack: str) -> Any:
        _check_ack(ack)

        def register(handler: F) -> F:
            if not callable(handler):
                raise ConfigurationError(f"{kind} handler must be callable")
            _check_sync(kind, handler)
            existing = self._callbacks.get(topic)
            if existing is not None:
                raise ConfigurationError(
                    f"topic {topic} already has a handler ({existing.name}); "
                    "register one handler per topic"
                )
            self._callbacks[topic] = Route(
                kind=kind,
                topic=topic,
                handler=handler,
                ack=ack,
                takes_context=_wants_context(handler),
            )
            return handler

        return register(func) if func is not None else register

    def _add_event(self, event_type: Optional[str], func: F, ack: str) -> F:
        _check_ack(ack)
        _check_sync(RouteKind.EVENT, func)
        if event_type in self._events:
            what = f"event {event_type!r}" if event_type else "every event (@route.event())"
            raise ConfigurationError(f"{what} already has a handler")
        self._events[event_type] = Route(
            kind=RouteKind.EVENT,
            topic=Topic.ALL_EVENTS,
            handler=func,
            ack=ack,
            event_type=event_type,
            takes_context=_wants_context(func),
        )
        return func

    # -- introspection -------------------------------------------------------------------
    @property
    def routes(self) -> Tuple[Route, ...]:
        """Every registered route: callbacks by topic, then events."""
        return tuple(self._callbacks[t] for t in sorted(self._callbacks)) + tuple(
            self._events[k] for k in sorted(self._events, key=lambda k: k or "")
        )

    def subscriptions(self) -> List[Dict[str, str]]:
        """The ``subscriptions`` of the gateway-open request: ``EVENT "*"`` when any event
        handler exists (DingTalk only supports ``*``), one CALLBACK per callback topic.

        Example:
            >>> route = Router()
            >>> _ = route.event("user_add_org")(lambda ev: None)
            >>> route.subscriptions()
            [{'type': 'EVENT', 'topic': '*'}]
        """
        subs = [{"type": "EVENT", "topic": Topic.ALL_EVENTS}] if self._events else []
        subs += [{"type": "CALLBACK", "topic": t} for t in sorted(self._callbacks)]
        return subs

    def route_for(self, frame: Frame) -> Optional[Route]:
        """The route that takes ``frame``, or None (the frame is then acked 404).

        Example:
            >>> route = Router()
            >>> route.route_for(Frame.from_dict({"type": "CALLBACK",
            ...     "headers": {"messageId": "m", "topic": "/nobody"}})) is None
            True
        """
        if frame.type == FrameType.CALLBACK:
            return self._callbacks.get(frame.topic)
        if frame.type == FrameType.EVENT and self._events:
            specific = (
                self._events.get(frame.headers.event_type) if frame.headers.event_type else None
            )
            return specific or self._events.get(None) or _IGNORE_EVENT
        return None

    # -- dispatch ------------------------------------------------------------------------
    def dispatch(self, frame: Frame, ctx: Optional[Context] = None) -> Ack:
        """Run the handler for ``frame`` and return the ack to send. Never raises.

        Unknown topic: 404. Undecodable payload: 400. Handler exception: 500 (see
        :meth:`error`). For ``ack="receipt"`` routes the receipt ack is returned. Without
        ``ctx`` the handler gets a live Context (its replies are really sent); tests pass
        ``Context.for_testing()``.

        Example:
            >>> route = Router()
            >>> _ = route.callback("/v1/custom")(lambda data, ctx: {"got": data["x"]})
            >>> frame = Frame.from_dict({"type": "CALLBACK", "data": '{"x": 1}',
            ...     "headers": {"messageId": "m1", "topic": "/v1/custom"}})
            >>> route.dispatch(frame).data
            '{"response":{"got":1}}'
        """
        route = self.route_for(frame)
        if route is None:
            return self.not_found(frame)
        try:
            payload = route.decode(frame)
        except ProtocolError as exc:
            return self.malformed(frame, exc)
        from .context import Context  # routing stays importable without requests loaded

        ctx = (ctx or Context()).bind(frame, payload)
        ack = self.invoke(route, payload, ctx)
        return route.receipt_ack(frame.message_id) if route.ack == AckPolicy.RECEIPT else ack

    def not_found(self, frame: Frame) -> Ack:
        """The 404 ack for a frame no route takes."""
        log.warning(
            "no handler for %s topic %s (message %s); answered 404",
            frame.type,
            frame.topic,
            frame.message_id,
        )
        return Ack.error(frame.message_id, 404, f"no handler for topic {frame.topic}", {})

    def malformed(self, frame: Frame, exc: ProtocolError) -> Ack:
        """The 400 ack for a frame whose payload cannot be decoded."""
        log.warning(
            "malformed payload in message %s (topic %s): %s; answered 400",
            frame.message_id,
            frame.topic,
            exc,
        )
        return Ack.error(frame.message_id, 400, f"malformed payload: {exc.field or 'data'}", {})

    def invoke(self, route: Route, payload: Any, ctx: Context) -> Ack:
        """Call ``route``'s handler with an already decoded payload; never raises, except
        KeyboardInterrupt. A handler's exception, ``SystemExit`` included, becomes the error ack.

        The StreamClient decodes once (for dedupe) and then calls this; :meth:`dispatch` is
        decode plus invoke.

        Example:
            >>> from dingsync.context import Context
            >>> route = Router()
            >>> _ = route.callback("/t")(lambda data, ctx: data["x"])
            >>> r, = route.routes
            >>> route.invoke(r, {"x": "y"}, Context.for_testing()).data
            '{"response":"y"}'
        """
        message_id = ctx.message_id
        try:
            return route.render(route.call(payload, ctx), message_id)
        except KeyboardInterrupt:
            raise  # Ctrl-C must still stop a script that dispatches on its main thread
        except BaseException as exc:  # SystemExit too (argparse in a handler): one message
            return self._failed(route, exc, ctx)

    def _failed(self, route: Route, exc: BaseException, ctx: Context) -> Ack:
        message_id = ctx.message_id
        if self._error is not None:
            try:
                override = self._error(exc, ctx)
                if override is not None:
                    return route.render(override, message_id)
            except Exception:
                log.exception("error handler failed on message %s", message_id)
        log.exception(
            "handler %s failed on message %s",
            route.name,
            message_id,
            exc_info=exc,
            extra={"message_id": message_id},
        )
        return route.error_ack(message_id, exc)


def _ignore(_event: Any, _ctx: Any) -> None:
    """Events without a handler are acknowledged and dropped."""


_IGNORE_EVENT = Route(kind=RouteKind.EVENT, topic=Topic.ALL_EVENTS, handler=_ignore)
