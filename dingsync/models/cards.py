"""Card callbacks (topic ``/v1.0/card/instances/callback``) and the response sent in the ack."""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Tuple

import attrs

from ..frames import decode_json_object, dumps
from ._fields import get_int, get_str, require_mapping, rest

__all__ = ["CardCallback", "CardResponse", "render_param_map"]

_KNOWN = frozenset(
    {
        "outTrackId",
        "corpId",
        "userId",
        "userIdType",
        "type",
        "spaceType",
        "spaceId",
        "content",
        "value",
        "extension",
    }
)


def _nested(obj: Mapping[str, Any], key: str) -> Optional[Dict[str, Any]]:
    # content / value / extension are JSON documents inside the JSON data (triple encoding).
    raw = obj.get(key)
    if raw is None:
        return None
    if isinstance(raw, dict):  # tolerate a producer that did not encode it
        return raw
    return decode_json_object(raw, f"data.{key}")


@attrs.frozen(kw_only=True)
class CardCallback:
    """A user clicked or submitted something on a card created with ``callbackType: STREAM``.

    ``content``, ``value`` and ``extension`` arrive as JSON strings inside the JSON ``data``;
    they are decoded here.

    Example:
        >>> cb = CardCallback.from_wire({"outTrackId": "card-1", "userId": "u1",
        ...     "content": '{"cardPrivateData":{"actionIds":["ok"],"params":{"action":"like"}}}'})
        >>> cb.params, cb.action_ids
        ({'action': 'like'}, ('ok',))
    """

    out_track_id: str
    user_id: Optional[str] = None
    corp_id: Optional[str] = None
    user_id_type: Optional[int] = None
    type: Optional[str] = None
    space_type: Optional[str] = None
    space_id: Optional[str] = None
    content: Optional[Mapping[str, Any]] = None
    value: Optional[Mapping[str, Any]] = None
    extension: Optional[Mapping[str, Any]] = None
    extra: Mapping[str, Any] = attrs.field(factory=dict, repr=False)

    @property
    def _private(self) -> Mapping[str, Any]:
        data = (self.content or {}).get("cardPrivateData")
        return data if isinstance(data, dict) else {}

    @property
    def params(self) -> Dict[str, Any]:
        """``content.cardPrivateData.params``: the values the user submitted."""
        params = self._private.get("params")
        return dict(params) if isinstance(params, dict) else {}

    @property
    def action_ids(self) -> Tuple[str, ...]:
        ids = self._private.get("actionIds")
        return tuple(str(i) for i in ids) if isinstance(ids, list) else ()

    @classmethod
    def from_wire(cls, obj: Any) -> CardCallback:
        obj = require_mapping(obj, "data")
        out_track_id = get_str(obj, "outTrackId", "data", required=True)
        assert out_track_id is not None
        return cls(
            out_track_id=out_track_id,
            user_id=get_str(obj, "userId", "data"),
            corp_id=get_str(obj, "corpId", "data"),
            user_id_type=get_int(obj, "userIdType", "data"),
            type=get_str(obj, "type", "data"),
            space_type=get_str(obj, "spaceType", "data"),
            space_id=get_str(obj, "spaceId", "data"),
            content=_nested(obj, "content"),
            value=_nested(obj, "value"),
            extension=_nested(obj, "extension"),
            extra=rest(obj, _KNOWN),
        )

    def to_wire(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"outTrackId": self.out_track_id}
        pairs = (
            ("userId", self.user_id),
            ("corpId", self.corp_id),
            ("userIdType", self.user_id_type),
            ("type", self.type),
            ("spaceType", self.space_type),
            ("spaceId", self.space_id),
        )
        out.update({k: v for k, v in pairs if v is not None})
        for key in ("content", "value", "extension"):
            value = getattr(self, key)
            if value is not None:
                out[key] = dumps(dict(value))
        out.update(self.extra)
        return out


def render_param_map(values: Mapping[str, Any]) -> Dict[str, str]:
    """cardParamMap values must be strings: strings pass, anything else is JSON-encoded.

    Example:
        >>> render_param_map({"status": "done", "count": 3, "ok": True, "items": [1]})
        {'status': 'done', 'count': '3', 'ok': 'true', 'items': '[1]'}
    """
    return {
        str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
        for k, v in values.items()
    }


@attrs.frozen(kw_only=True)
class CardResponse:
    """What a card-callback handler returns to update the card (protocol.md §9.3).

    Example:
        >>> CardResponse(card_data={"status": "done"}).to_wire()
        {'cardUpdateOptions': {'updateCardDataByKey': True, 'updatePrivateDataByKey': True}, 'cardData': {'cardParamMap': {'status': 'done'}}}
    """

    card_data: Optional[Mapping[str, Any]] = None
    user_private_data: Optional[Mapping[str, Any]] = None
    update_card_data_by_key: bool = True
    update_private_data_by_key: bool = True

    def to_wire(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "cardUpdateOptions": {
                "updateCardDataByKey": self.update_card_data_by_key,
                "updatePrivateDataByKey": self.update_private_data_by_key,
            }
        }
        if self.card_data is not None:
            out["cardData"] = {"cardParamMap": render_param_map(self.card_data)}
        if self.user_private_data is not None:
            out["userPrivateData"] = {"cardParamMap": render_param_map(self.user_private_data)}
        return out
