"""Media upload: ``POST /media/upload?access_token=...`` (oapi host; reference/openapi.md §8).

``multipart/form-data`` with the file part ``media`` and the field ``type`` (also accepted in the
query string). Limits: image 20 MB (jpg, gif, png, bmp), voice 2 MB (amr, mp3, wav), video 20 MB
(mp4), file 20 MB (doc, docx, xls, xlsx, ppt, pptx, zip, pdf, rar). Errors use DingTalk's legacy
media codes: 40004 bad media type, 40005 bad file type, 40006 bad file size.
"""

from __future__ import annotations

import os
from email import policy
from email.parser import BytesParser
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from .._http import Request, Response, json_response, old_error, route
from .._openapi import MediaFile, random_key

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []

MB = 1024 * 1024
LIMITS: Dict[str, Tuple[int, Tuple[str, ...]]] = {
    "image": (20 * MB, ("jpg", "jpeg", "gif", "png", "bmp")),
    "voice": (2 * MB, ("amr", "mp3", "wav")),
    "video": (20 * MB, ("mp4",)),
    "file": (20 * MB, ("doc", "docx", "xls", "xlsx", "ppt", "pptx", "zip", "pdf", "rar")),
}


def _parts(request: Request) -> Optional[Dict[str, Tuple[Optional[str], str, bytes]]]:
    """Form parts by name: (filename, content type, bytes); None when not multipart."""
    ctype = request.header("content-type") or ""
    if not ctype.startswith("multipart/form-data"):
        return None
    raw = b"Content-Type: " + ctype.encode("latin-1") + b"\r\n\r\n" + request.body
    message = BytesParser(policy=policy.HTTP).parsebytes(raw)
    if not message.is_multipart():
        return None
    parts: Dict[str, Tuple[Optional[str], str, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        parts[name] = (part.get_filename(), part.get_content_type(), data)
    return parts


@route("oapi", "POST", "/media/upload")
def upload(fake: FakeDingTalk, request: Request) -> Response:
    error = fake.check_old_auth(request)
    if error is not None:
        return error
    parts = _parts(request)
    if parts is None:
        return old_error(40035, "缺少参数 media")
    media_type = request.query.get("type")
    if media_type is None and "type" in parts:
        media_type = parts["type"][2].decode("utf-8", "replace")
    if media_type not in LIMITS:
        return old_error(40004, "不合法的媒体文件类型")
    if "media" not in parts or not parts["media"][0]:
        return old_error(40035, "缺少参数 media")
    filename, content_type, data = parts["media"]
    name = filename or ""
    max_bytes, extensions = LIMITS[media_type]
    if os.path.splitext(name)[1].lstrip(".").lower() not in extensions:
        return old_error(40005, "不合法的文件类型")
    if not data or len(data) > max_bytes:
        return old_error(40006, "不合法的文件大小")
    media_id = random_key("@lA")
    created = fake.now_ms()
    with fake._lock:
        fake.media[media_id] = MediaFile(
            media_id=media_id,
            type=media_type,
            filename=name,
            content_type=content_type,
            data=data,
            created_at=created,
        )
    return json_response(
        {
            "errcode": 0,
            "errmsg": "ok",
            "media_id": media_id,
            "type": media_type,
            "created_at": created,
        }
    )
