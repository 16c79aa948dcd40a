"""Event subscriptions (EVENT frames, topic ``*``): the headers say what happened, data says the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Dict, Mapping, Optional

import attrs

from ..errors import ProtocolError
from ..frames import Frame, FrameType, Headers, Topic, dumps
from ._fields import datetime_to_ms, ms_to_datetime

__all__ = ["Event"]


@attrs.frozen(kw_only=True)
class Event:
    """One event, e.g. ``user_add_org`` or ``chat_update_title``.

    Example:
        >>> f = Frame.from_dict({"type": "EVENT", "headers": {"messageId": "m", "topic": "*",
        ...     "eventType": "user_add_org", "eventId": "e1", "eventBornTime": "1683533823336"},
        ...     "data": '{"userId": ["u1"]}'})
        >>> ev = Event.from_frame(f)
        >>> ev.event_type, ev.data["userId"], ev.born_at.year
        ('user_add_org', ['u1'], 2023)
    """

    event_type: str
    event_id: Optional[str] = None
    corp_id: Optional[str] = None
    unified_app_id: Optional[str] = None
    born_at: Optional[datetime] = None
    data: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_frame(cls, frame: Frame) -> Event:
        """Build from an EVENT frame.

        Raises:
            ProtocolError: ``eventType`` is missing or ``data`` is not a JSON object.
        """
        headers = frame.headers
        if not headers.event_type:
            raise ProtocolError("headers.eventType is missing", field="headers.eventType")
        born = headers.event_born_time
        if born is not None and not (born.isascii() and born.isdigit()):
            raise ProtocolError(
                "headers.eventBornTime must be epoch milliseconds", field="headers.eventBornTime"
            )
        return cls(
            event_type=headers.event_type,
            event_id=headers.event_id,
            corp_id=headers.event_corp_id,
            unified_app_id=headers.event_unified_app_id,
            born_at=ms_to_datetime(int(born)) if born is not None else None,
            data=frame.json(),
        )

    def to_frame(self, message_id: str) -> Frame:
        """The EVENT frame that carries this event (used by the emulator and by tests)."""
        born = datetime_to_ms(self.born_at)
        headers = Headers(
            message_id=message_id,
            topic=Topic.ALL_EVENTS,
            event_type=self.event_type,
            event_id=self.event_id,
            event_corp_id=self.corp_id,
            event_unified_app_id=self.unified_app_id,
            event_born_time=str(born) if born is not None else None,
        )
        return Frame(type=FrameType.EVENT, headers=headers, data=dumps(dict(self.data)))

    def to_wire(self) -> Dict[str, Any]:
        return dict(self.data)
