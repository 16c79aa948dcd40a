"""Interactive and AI (streaming) cards: ``/v1.0/card/...`` (reference/openapi.md §7).

A card instance is identified by the ``out_track_id`` you choose; every later update or stream
names it. ``cardParamMap`` values must be strings at DingTalk, so values are rendered here:
strings as they are, anything else JSON-encoded.

:meth:`CardsApi.ai_card` creates and delivers an AI card and returns a
:class:`~dingsync.api.card_stream.CardStream` (the "typewriter" helper) to stream text into it.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import attrs

from ..errors import ApiError, ConfigurationError
from ._http import HttpCore
from .card_stream import CardStream

__all__ = [
    "CardsApi",
    "CardStream",
    "DeliverResult",
    "SpaceResult",
    "group_space",
    "robot_space",
    "join_spaces",
    "render_params",
    "new_out_track_id",
]

logger = logging.getLogger(__name__)

SPACE_PREFIX = "dtv1.card//"


def group_space(open_conversation_id: str) -> str:
    """The open space id of a group chat.

    Example:
        >>> group_space("cid123==")
        'dtv1.card//IM_GROUP.cid123=='
    """
    return f"{SPACE_PREFIX}IM_GROUP.{open_conversation_id}"


def robot_space(user_id: str) -> str:
    """The open space id of a user's 1:1 chat with the robot.

    Example:
        >>> robot_space("manager593")
        'dtv1.card//IM_ROBOT.manager593'
    """
    return f"{SPACE_PREFIX}IM_ROBOT.{user_id}"


def join_spaces(*spaces: str) -> str:
    """Several spaces in one ``openSpaceId``.

    Example:
        >>> join_spaces(group_space("cid1"), robot_space("u1"))
        'dtv1.card//IM_GROUP.cid1;IM_ROBOT.u1'
    """
    parts = [s[len(SPACE_PREFIX) :] if s.startswith(SPACE_PREFIX) else s for s in spaces]
    return SPACE_PREFIX + ";".join(parts)


def _space_types(open_space_id: str) -> Tuple[str, ...]:
    if not open_space_id.startswith(SPACE_PREFIX):
        raise ConfigurationError(
            f"open_space_id must start with {SPACE_PREFIX!r}; build it with group_space() "
            "or robot_space()"
        )
    types = []
    for part in open_space_id[len(SPACE_PREFIX) :].split(";"):
        space_type, _, space_id = part.partition(".")
        if not space_type or not space_id:
            raise ConfigurationError(f"malformed space {part!r} in open_space_id")
        types.append(space_type)
    return tuple(types)


def render_params(data: Optional[Mapping[str, Any]]) -> Dict[str, str]:
    """``cardParamMap`` as DingTalk wants it: every value a string.

    Example:
        >>> render_params({"title": "hi", "count": 3, "items": [1, 2]})
        {'title': 'hi', 'count': '3', 'items': '[1, 2]'}
    """
    rendered: Dict[str, str] = {}
    for key, value in (data or {}).items():
        rendered[str(key)] = (
            value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        )
    return rendered


def _private(data: Optional[Mapping[str, Mapping[str, Any]]]) -> Optional[Dict[str, Any]]:
    if data is None:
        return None
    return {str(user): {"cardParamMap": render_params(params)} for user, params in data.items()}


def new_out_track_id() -> str:
    """A fresh, unique ``outTrackId`` (32 hex chars, within DingTalk's 64-char limit)."""
    return uuid.uuid4().hex


@attrs.frozen(kw_only=True)
class SpaceResult:
    """The delivery outcome in one space."""

    space_type: str
    space_id: str
    success: bool
    error_msg: str = ""
    carrier_id: str = ""


@attrs.frozen(kw_only=True)
class DeliverResult:
    """Per-space results: delivery can fail in one space and succeed in another.

    Example:
        >>> r = DeliverResult(out_track_id="t", spaces=(SpaceResult(
        ...     space_type="IM_GROUP", space_id="cid", success=False, error_msg="robot not in group"),))
        >>> r.ok, [s.error_msg for s in r.failed]
        (False, ['robot not in group'])
    """

    out_track_id: str
    spaces: Tuple[SpaceResult, ...] = ()

    @property
    def ok(self) -> bool:
        return all(s.success for s in self.spaces)

    @property
    def failed(self) -> Tuple[SpaceResult, ...]:
        return tuple(s for s in self.spaces if not s.success)


def _space_results(out_track_id: str, items: Any) -> DeliverResult:
    spaces = tuple(
        SpaceResult(
            space_type=str(item.get("spaceType", "")),
            space_id=str(item.get("spaceId", "")),
            success=bool(item.get("success")),
            error_msg=str(item.get("errorMsg") or ""),
            carrier_id=str(item.get("carrierId") or ""),
        )
        for item in items or ()
        if isinstance(item, dict)
    )
    result = DeliverResult(out_track_id=out_track_id, spaces=spaces)
    for space in result.failed:
        logger.warning(
            "card %s was not delivered to %s.%s: %s",
            out_track_id,
            space.space_type,
            space.space_id,
            space.error_msg,
        )
    return result


class CardsApi:
    """``api.cards``: create, deliver, update and stream card instances.

    Example:
        >>> api.cards.create_and_deliver(  # doctest: +SKIP
        ...     "tpl.schema", new_out_track_id(), {"title": "Build"}, group_space("cid=="))
    """

    #: ``api.cards.group_space(cid)`` / ``api.cards.robot_space(user_id)``: open space ids
    group_space = staticmethod(group_space)
    robot_space = staticmethod(robot_space)
    join_spaces = staticmethod(join_spaces)

    def __init__(self, http: HttpCore, *, robot_code: str) -> None:
        self._http = http
        self.robot_code = robot_code

    def _create_body(
        self,
        template_id: str,
        out_track_id: str,
        card_data: Optional[Mapping[str, Any]],
        *,
        private_data: Optional[Mapping[str, Mapping[str, Any]]],
        callback_type: str,
        callback_route_key: Optional[str],
        support_forward: bool,
    ) -> Dict[str, Any]:
        if not template_id or not out_track_id:
            raise ConfigurationError("template_id and out_track_id must be non-empty")
        if callback_type not in ("STREAM", "HTTP"):
            raise ConfigurationError(
                f"callback_type must be 'STREAM' or 'HTTP', got {callback_type!r}"
            )
        if callback_type == "HTTP" and not callback_route_key:
            raise ConfigurationError("callback_type='HTTP' needs callback_route_key")
        body: Dict[str, Any] = {
            "cardTemplateId": template_id,
            "outTrackId": out_track_id,
            "cardData": {"cardParamMap": render_params(card_data)},
            "callbackType": callback_type,
            "imGroupOpenSpaceModel": {"supportForward": support_forward},
            "imRobotOpenSpaceModel": {"supportForward": support_forward},
        }
        if callback_route_key:
            body["callbackRouteKey"] = callback_route_key
        private = _private(private_data)
        if private is not None:
            body["privateData"] = private
        return body

    def _deliver_models(
        self,
        open_space_id: str,
        *,
        at_user_ids: Optional[Mapping[str, str]],
        recipients: Optional[Sequence[str]],
    ) -> Dict[str, Any]:
        models: Dict[str, Any] = {"openSpaceId": open_space_id, "userIdType": 1}
        types = _space_types(open_space_id)
        if "IM_GROUP" in types:
            group: Dict[str, Any] = {"robotCode": self.robot_code}
            if at_user_ids:
                group["atUserIds"] = dict(at_user_ids)
            if recipients:
                group["recipients"] = list(recipients)
            models["imGroupOpenDeliverModel"] = group
        if "IM_ROBOT" in types:
            models["imRobotOpenDeliverModel"] = {
                "spaceType": "IM_ROBOT",
                "robotCode": self.robot_code,
            }
        if "IM_SINGLE" in types:
            models["imSingleOpenDeliverModel"] = {}
        return models

    def register_callback(
        self, route_key: str, url: str, api_secret: str, *, force_update: bool = False
    ) -> None:
        """Register the URL that clicks on cards created with ``callback_type="HTTP"`` and
        ``callback_route_key=route_key`` are POSTed to (``POST /v1.0/card/callbacks/register``).

        DingTalk does not publish how it signs those requests with ``api_secret``; a
        :class:`dingsync.callbacks.CallbackApp` authenticates them by the secret in ``url``
        (``app.card_url(base)``). ``force_update`` replaces a URL registered before.

        Example:
            >>> api.cards.register_callback(  # doctest: +SKIP
            ...     "orders", app.card_url("https://fc.example.com/"), api_secret)
            >>> api.cards.create("tpl.schema", "order-42", {"status": "new"},  # doctest: +SKIP
            ...     callback_type="HTTP", callback_route_key="orders")

        Raises:
            ConfigurationError: an argument is empty or ``url`` is not http(s).
        """
        if not route_key or not api_secret:
            raise ConfigurationError("route_key and api_secret must be non-empty")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"the card callback url must be http(s), got {url[:8]!r}...")
        body = {
            "callbackRouteKey": route_key,
            "callbackUrl": url,
            "apiSecret": api_secret,
            "forceUpdate": force_update,
        }
        self._http.api("POST", "/v1.0/card/callbacks/register", json=body, idempotent=True)

    def create(
        self,
        template_id: str,
        out_track_id: str,
        card_data: Optional[Mapping[str, Any]] = None,
        *,
        private_data: Optional[Mapping[str, Mapping[str, Any]]] = None,
        callback_type: str = "STREAM",
        callback_route_key: Optional[str] = None,
        support_forward: bool = True,
    ) -> None:
        """Create a card instance (not yet visible anywhere; see :meth:`deliver`).

        Example:
            >>> api.cards.create("tpl.schema", "order-42", {"status": "new"})  # doctest: +SKIP
        """
        body = self._create_body(
            template_id,
            out_track_id,
            card_data,
            private_data=private_data,
            callback_type=callback_type,
            callback_route_key=callback_route_key,
            support_forward=support_forward,
        )
        self._http.api("POST", "/v1.0/card/instances", json=body, idempotent=False)

    def deliver(
        self,
        out_track_id: str,
        open_space_id: str,
        *,
        at_user_ids: Optional[Mapping[str, str]] = None,
        recipients: Optional[Sequence[str]] = None,
    ) -> DeliverResult:
        """Deliver a created card to one or more spaces (:func:`group_space`, :func:`robot_space`).

        Example:
            >>> api.cards.deliver("order-42", robot_space("manager593")).ok  # doctest: +SKIP
            True
        """
        body = {"outTrackId": out_track_id}
        body.update(
            self._deliver_models(open_space_id, at_user_ids=at_user_ids, recipients=recipients)
        )
        answer = self._http.api("POST", "/v1.0/card/instances/deliver", json=body, idempotent=False)
        return _space_results(out_track_id, answer.get("result"))

    def create_and_deliver(
        self,
        template_id: str,
        out_track_id: str,
        card_data: Optional[Mapping[str, Any]],
        open_space_id: str,
        *,
        private_data: Optional[Mapping[str, Mapping[str, Any]]] = None,
        callback_type: str = "STREAM",
        callback_route_key: Optional[str] = None,
        support_forward: bool = True,
        at_user_ids: Optional[Mapping[str, str]] = None,
        recipients: Optional[Sequence[str]] = None,
    ) -> DeliverResult:
        """Create a card and deliver it in one call.

        Example:
            >>> api.cards.create_and_deliver(  # doctest: +SKIP
            ...     "tpl.schema", "order-42", {"status": "new"}, group_space("cid=="))
        """
        body = self._create_body(
            template_id,
            out_track_id,
            card_data,
            private_data=private_data,
            callback_type=callback_type,
            callback_route_key=callback_route_key,
            support_forward=support_forward,
        )
        body.update(
            self._deliver_models(open_space_id, at_user_ids=at_user_ids, recipients=recipients)
        )
        answer = self._http.api(
            "POST", "/v1.0/card/instances/createAndDeliver", json=body, idempotent=False
        )
        result = answer.get("result") or {}
        return _space_results(
            out_track_id, result.get("deliverResults") if isinstance(result, dict) else None
        )

    def update(
        self,
        out_track_id: str,
        card_data: Optional[Mapping[str, Any]] = None,
        *,
        private_data: Optional[Mapping[str, Mapping[str, Any]]] = None,
        by_key: bool = True,
    ) -> None:
        """Update a card's data. ``by_key=True`` merges the given keys (the others stay);
        ``by_key=False`` replaces the whole data set.

        Example:
            >>> api.cards.update("order-42", {"status": "shipped"})  # doctest: +SKIP
        """
        if card_data is None and private_data is None:
            raise ConfigurationError("update needs card_data or private_data")
        body: Dict[str, Any] = {
            "outTrackId": out_track_id,
            "cardUpdateOptions": {"updateCardDataByKey": by_key, "updatePrivateDataByKey": by_key},
            "userIdType": 1,
        }
        if card_data is not None:
            body["cardData"] = {"cardParamMap": render_params(card_data)}
        private = _private(private_data)
        if private is not None:
            body["privateData"] = private
        self._http.api("PUT", "/v1.0/card/instances", json=body)

    def stream(
        self,
        out_track_id: str,
        key: str,
        content: str,
        *,
        full: bool = True,
        finalize: bool = False,
        error: bool = False,
        retry: bool = True,
    ) -> None:
        """One streaming update of the card variable ``key`` (AI cards).

        ``full=True`` replaces the variable with ``content`` (what markdown variables need);
        ``full=False`` appends. ``finalize`` ends the stream; ``error`` marks the card failed.
        The call carries a ``guid``, so a retry after a timeout is not applied twice;
        ``retry=False`` makes a single attempt.

        Example:
            >>> api.cards.stream("order-42", "content", "Thinking...")  # doctest: +SKIP
        """
        body = {
            "outTrackId": out_track_id,
            "guid": uuid.uuid4().hex,
            "key": key,
            "content": content,
            "isFull": full,
            "isFinalize": finalize,
            "isError": error,
        }
        self._http.api("PUT", "/v1.0/card/streaming", json=body, retry=retry)

    def ai_card(
        self,
        template_id: str,
        open_space_id: str,
        *,
        key: str = "content",
        out_track_id: Optional[str] = None,
        card_data: Optional[Mapping[str, Any]] = None,
        interval: float = 0.5,
        full: bool = True,
        error_text: Optional[str] = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> CardStream:
        """Create and deliver an AI card, and stream text into it.

        Chunks are coalesced into at most one update per ``interval`` seconds, and text left
        pending is flushed by a timer ``interval`` after it became due, even when no chunk
        follows. A throttled or failed intermediate update is dropped, never retried: its text
        goes out with the next one. On leaving the block the card is finalized with the full
        text (retried); if the block raises, or the final update fails, the card is marked
        failed (``error_text`` appended when given) and the exception propagates.

        Example:
            >>> with api.cards.ai_card("tpl.schema", group_space("cid==")) as card:  # doctest: +SKIP
            ...     for chunk in llm.stream(prompt):
            ...         card.append(chunk)
        """
        track_id = out_track_id or new_out_track_id()
        data = dict(card_data or {})
        data.setdefault(key, "")

        def start() -> None:
            result = self.create_and_deliver(template_id, track_id, data, open_space_id)
            if result.spaces and not any(s.success for s in result.spaces):
                errors = "; ".join(s.error_msg for s in result.failed)
                raise ApiError(200, "deliverFailed", f"the card reached no space: {errors}")

        return CardStream(
            self,
            track_id,
            key=key,
            interval=interval,
            full=full,
            error_text=error_text,
            clock=clock,
            start=start,
        )
