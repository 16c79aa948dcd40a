"""Interactive and AI cards (reference/openapi.md §7, §12.13): a card store keyed by outTrackId.

* ``POST /v1.0/card/instances``: create; an empty template id or outTrackId, a duplicate
  outTrackId or a non-string ``cardParamMap`` value is a 400 ``param.*`` error.
* ``POST /v1.0/card/instances/deliver``: parse ``openSpaceId`` (``dtv1.card//TYPE.id;...``) and
  answer per space; a group space needs ``imGroupOpenDeliverModel.robotCode`` = the client id,
  a robot space a known user.
* ``POST /v1.0/card/instances/createAndDeliver``: both in one call.
* ``PUT /v1.0/card/instances``: merge by key with ``updateCardDataByKey``, else replace.
* ``PUT /v1.0/card/streaming``: append or replace (``isFull``), finalize, error; ``guid`` dedup;
  an update after the stream was finalized is refused (``param.streamingFinished``; DingTalk's
  exact code for this is not documented).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .._http import Request, Response, json_response, new_error, route
from .._openapi import CardInstance, json_object

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []

PREFIX = "dtv1.card//"
SPACE_TYPES = ("IM_GROUP", "IM_ROBOT", "IM_SINGLE", "ONE_BOX", "TOP", "CO_FEED", "DOC")


def _bad(code: str, message: str) -> Response:
    return new_error(400, code, message)


def _body(fake: FakeDingTalk, request: Request) -> Tuple[Optional[Response], Dict[str, Any]]:
    error = fake.check_new_auth(request)
    if error is not None:
        return error, {}
    body, error = json_object(request)
    if error is not None or body is None:
        return error, {}
    return None, body


def _param_map(container: Any, where: str) -> Tuple[Optional[Response], Dict[str, str]]:
    if container is None:
        return None, {}
    if not isinstance(container, dict):
        return _bad("param.invalid", f"{where} must be an object"), {}
    params = container.get("cardParamMap", {})
    if not isinstance(params, dict):
        return _bad("param.invalid", f"{where}.cardParamMap must be an object"), {}
    bad = sorted(k for k, v in params.items() if not isinstance(v, str))
    if bad:
        return _bad("param.invalid", f"{where}.cardParamMap values must be strings: {bad}"), {}
    return None, dict(params)


def _private(value: Any) -> Tuple[Optional[Response], Dict[str, Dict[str, str]]]:
    if value is None:
        return None, {}
    if not isinstance(value, dict):
        return _bad("param.invalid", "privateData must be an object"), {}
    result: Dict[str, Dict[str, str]] = {}
    for user, container in value.items():
        error, params = _param_map(container, f"privateData.{user}")
        if error is not None:
            return error, {}
        result[str(user)] = params
    return None, result


def _create(
    fake: FakeDingTalk, body: Dict[str, Any]
) -> Tuple[Optional[Response], Optional[CardInstance]]:
    template = body.get("cardTemplateId")
    track = body.get("outTrackId")
    if not template:
        return _bad("param.cardTemplateIdEmpty", "cardTemplateId is empty"), None
    if not track:
        return _bad("param.outTrackIdEmpty", "outTrackId is empty"), None
    if not isinstance(track, str) or len(track) > 64:
        return _bad("param.outTrackIdInvalid", "outTrackId must be at most 64 chars"), None
    if body.get("cardData") is None:
        return _bad("param.cardPublicDataEmpty", "cardData is empty"), None
    error, params = _param_map(body.get("cardData"), "cardData")
    if error is not None:
        return error, None
    error, private = _private(body.get("privateData"))
    if error is not None:
        return error, None
    callback = body.get("callbackType", "STREAM")
    if callback not in ("STREAM", "HTTP"):
        return _bad("param.invalid", "callbackType must be STREAM or HTTP"), None
    if callback == "HTTP" and not body.get("callbackRouteKey"):
        return _bad("param.callbackRouteKeyEmpty", "callbackRouteKey is empty"), None
    with fake._lock:
        if track in fake.cards:
            return _bad("param.outTrackIdDuplicated", f"outTrackId {track} already exists"), None
        card = CardInstance(
            out_track_id=track,
            template_id=str(template),
            card_data=params,
            private_data=private,
            callback_type=callback,
            callback_route_key=body.get("callbackRouteKey"),
        )
        fake.cards[track] = card
    return None, card


def _spaces(open_space_id: Any) -> Optional[List[Tuple[str, str]]]:
    if not isinstance(open_space_id, str) or not open_space_id.startswith(PREFIX):
        return None
    spaces = []
    for part in open_space_id[len(PREFIX) :].split(";"):
        part = part[len(PREFIX) :] if part.startswith(PREFIX) else part
        space_type, _, space_id = part.partition(".")
        if space_type not in SPACE_TYPES or not space_id:
            return None
        spaces.append((space_type, space_id))
    return spaces


def _deliver(
    fake: FakeDingTalk, card: CardInstance, body: Dict[str, Any]
) -> Tuple[Optional[Response], List[Dict[str, Any]]]:
    spaces = _spaces(body.get("openSpaceId"))
    if spaces is None:
        return _bad("param.openSpaceIdInvalid", "openSpaceId is invalid"), []
    results = []
    for space_type, space_id in spaces:
        error_msg = ""
        if space_type == "IM_GROUP":
            model = body.get("imGroupOpenDeliverModel")
            if not isinstance(model, dict):
                error_msg = "imGroupOpenDeliverModel is required"
            elif model.get("robotCode") != fake.client_id:
                error_msg = "robotCode is invalid"
        elif space_type == "IM_ROBOT":
            model = body.get("imRobotOpenDeliverModel")
            if not isinstance(model, dict) or model.get("spaceType") != "IM_ROBOT":
                error_msg = "imRobotOpenDeliverModel.spaceType must be IM_ROBOT"
            elif space_id in fake.invalid_users:
                error_msg = "user not found"
        success = not error_msg
        if success:
            with fake._lock:
                card.spaces.append(f"{space_type}.{space_id}")
        results.append(
            {
                "spaceType": space_type,
                "spaceId": space_id,
                "success": success,
                "errorMsg": error_msg,
                "carrierId": f"carrier-{card.out_track_id}-{space_id}" if success else "",
            }
        )
    return None, results


@route("api", "POST", "/v1.0/card/instances")
def create(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _body(fake, request)
    if error is not None:
        return error
    error, card = _create(fake, body)
    if error is not None or card is None:
        return error or _bad("param.invalid", "invalid")
    return json_response({"success": True, "result": card.out_track_id})


@route("api", "POST", "/v1.0/card/instances/deliver")
def deliver(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _body(fake, request)
    if error is not None:
        return error
    track = body.get("outTrackId")
    if not track:
        return _bad("param.outTrackIdEmpty", "outTrackId is empty")
    card = fake.cards.get(track)
    if card is None:
        return _bad("param.outTrackIdNotExist", f"card {track} does not exist")
    error, results = _deliver(fake, card, body)
    if error is not None:
        return error
    return json_response({"success": True, "result": results})


@route("api", "POST", "/v1.0/card/instances/createAndDeliver")
def create_and_deliver(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _body(fake, request)
    if error is not None:
        return error
    if _spaces(body.get("openSpaceId")) is None:
        return _bad("param.openSpaceIdInvalid", "openSpaceId is invalid")
    error, card = _create(fake, body)
    if error is not None or card is None:
        return error or _bad("param.invalid", "invalid")
    error, results = _deliver(fake, card, body)
    if error is not None:
        return error
    return json_response(
        {"success": True, "result": {"outTrackId": card.out_track_id, "deliverResults": results}}
    )


@route("api", "PUT", "/v1.0/card/instances")
def update(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _body(fake, request)
    if error is not None:
        return error
    track = body.get("outTrackId")
    if not track:
        return _bad("param.outTrackIdEmpty", "outTrackId is empty")
    options = body.get("cardUpdateOptions") or {}
    if not isinstance(options, dict):
        return _bad("param.invalid", "cardUpdateOptions must be an object")
    error, params = _param_map(body.get("cardData"), "cardData")
    if error is not None:
        return error
    error, private = _private(body.get("privateData"))
    if error is not None:
        return error
    with fake._lock:
        card = fake.cards.get(track)
        if card is None:
            return _bad("param.outTrackIdNotExist", f"card {track} does not exist")
        if body.get("cardData") is not None:
            if options.get("updateCardDataByKey"):
                card.card_data.update(params)
            else:
                card.card_data = params
        for user, values in private.items():
            if options.get("updatePrivateDataByKey"):
                card.private_data.setdefault(user, {}).update(values)
            else:
                card.private_data[user] = values
        card.updates.append(body)
    return json_response({"success": True, "result": True})


@route("api", "PUT", "/v1.0/card/streaming")
def streaming(fake: FakeDingTalk, request: Request) -> Response:
    error, body = _body(fake, request)
    if error is not None:
        return error
    for name in ("outTrackId", "guid", "key"):
        if not body.get(name):
            return _bad("param.empty", f"{name} is empty")
    content = body.get("content")
    if not isinstance(content, str):
        return _bad("param.empty", "content must be a string")
    with fake._lock:
        card = fake.cards.get(body["outTrackId"])
        if card is None:
            return _bad("param.outTrackIdNotExist", f"card {body['outTrackId']} does not exist")
        if body["guid"] in card.guids:
            return json_response({"success": True, "result": True})  # a retried call
        if card.finalized:
            return _bad("param.streamingFinished", "the card's stream is already finalized")
        key = body["key"]
        text = content if body.get("isFull") else card.streams.get(key, "") + content
        card.streams[key] = text
        card.card_data[key] = text
        card.guids.add(body["guid"])
        card.stream_calls.append(body)
        if body.get("isError"):
            card.status = "failed"
        elif body.get("isFinalize"):
            card.status = "finished"
        else:
            card.status = "streaming"
    return json_response({"success": True, "result": True})
