"""Typed field readers shared by the payload models: each wrong type is a ProtocolError naming it."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional

from ..errors import ProtocolError

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


def where(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{field} must be an object, got {type(value).__name__}", field=field)
    return value


def get_str(
    obj: Mapping[str, Any], key: str, prefix: str = "", *, required: bool = False
) -> Optional[str]:
    value = obj.get(key)
    if value is None:
        if required:
            raise ProtocolError(f"{where(prefix, key)} is missing", field=where(prefix, key))
        return None
    if isinstance(value, str):
        return value
    # Ids sometimes arrive as numbers from other producers; their text is what users compare.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ProtocolError(
        f"{where(prefix, key)} must be a string, got {type(value).__name__}",
        field=where(prefix, key),
    )


def get_bool(obj: Mapping[str, Any], key: str, prefix: str = "") -> Optional[bool]:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise ProtocolError(
        f"{where(prefix, key)} must be a boolean, got {type(value).__name__}",
        field=where(prefix, key),
    )


def get_int(obj: Mapping[str, Any], key: str, prefix: str = "") -> Optional[int]:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise ProtocolError(
        f"{where(prefix, key)} must be an integer, got {type(value).__name__}",
        field=where(prefix, key),
    )


def ms_to_datetime(ms: Optional[int]) -> Optional[datetime]:
    if ms is None:
        return None
    try:
        return _EPOCH + ms * _MS
    except OverflowError:
        raise ProtocolError(f"timestamp {ms} is out of range", field="timestamp") from None


def datetime_to_ms(value: Optional[datetime]) -> Optional[int]:
    if value is None:
        return None
    return (value - _EPOCH) // _MS


def rest(obj: Mapping[str, Any], known: frozenset[str]) -> dict[str, Any]:
    """The fields a model does not know, kept so that new server fields survive a round trip."""
    return {k: v for k, v in obj.items() if k not in known}
