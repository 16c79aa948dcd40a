"""Media upload: ``POST oapi /media/upload`` (reference/openapi.md §8).

DingTalk's size and format limits are checked before anything is sent, so an oversized or
wrongly typed file fails at once with a :class:`~dingsync.errors.ConfigurationError` that names
the limit instead of a cryptic errcode after a 20 MB upload.
"""

from __future__ import annotations

import mimetypes
import os
from typing import Dict, Optional, Tuple, Union

import attrs

from ..errors import ApiError, ConfigurationError
from ._http import HttpCore

__all__ = ["MediaApi", "UploadedMedia", "MEDIA_LIMITS"]

MB = 1024 * 1024

#: type -> (max bytes, allowed extensions)
MEDIA_LIMITS: Dict[str, Tuple[int, Tuple[str, ...]]] = {
    "image": (20 * MB, ("jpg", "jpeg", "gif", "png", "bmp")),
    "voice": (2 * MB, ("amr", "mp3", "wav")),
    "video": (20 * MB, ("mp4",)),
    "file": (20 * MB, ("doc", "docx", "xls", "xlsx", "ppt", "pptx", "zip", "pdf", "rar")),
}


@attrs.frozen(kw_only=True)
class UploadedMedia:
    """A stored upload; ``media_id`` (``@lA...``) goes into Image/File/Audio/Video messages."""

    media_id: str
    type: str
    created_at: Optional[int] = None


def _human(size: int) -> str:
    return f"{size / MB:.1f} MB" if size >= MB else f"{size} bytes"


class MediaApi:
    """``api.media``: upload images, voice, video and files.

    Example:
        >>> media = api.media.upload("chart.png", type="image")  # doctest: +SKIP
        >>> api.robot.send_to_group("cid==", m.Image(media.media_id))  # doctest: +SKIP
    """

    def __init__(self, http: HttpCore) -> None:
        self._http = http

    def upload(
        self,
        path_or_bytes: Union[str, os.PathLike[str], bytes],
        type: str = "image",  # noqa: A002 - DingTalk's own field name
        *,
        filename: Optional[str] = None,
    ) -> UploadedMedia:
        """Upload a file (a path, or bytes plus ``filename``) as ``type``.

        Limits: image 20 MB (jpg, gif, png, bmp), voice 2 MB (amr, mp3, wav), video 20 MB (mp4),
        file 20 MB (doc, docx, xls, xlsx, ppt, pptx, zip, pdf, rar).

        Example:
            >>> api.media.upload(b"%PDF-1.4 ...", "file", filename="report.pdf")  # doctest: +SKIP
            UploadedMedia(media_id='@lA...', type='file', created_at=...)

        Raises:
            ConfigurationError: unknown type, wrong extension or over the size limit (nothing
                was sent).
        """
        if type not in MEDIA_LIMITS:
            raise ConfigurationError(f"type must be one of {', '.join(MEDIA_LIMITS)}, got {type!r}")
        max_bytes, extensions = MEDIA_LIMITS[type]
        if isinstance(path_or_bytes, bytes):
            if not filename:
                raise ConfigurationError(
                    "uploading bytes needs filename= (DingTalk checks the extension)"
                )
            name = filename
            size = len(path_or_bytes)
        else:
            path = os.fspath(path_or_bytes)
            name = filename or os.path.basename(path)
            try:
                size = os.path.getsize(path)
            except OSError as exc:
                raise ConfigurationError(f"cannot read {path!r}: {exc.strerror}") from exc
        extension = os.path.splitext(name)[1].lstrip(".").lower()
        if extension not in extensions:
            raise ConfigurationError(
                f"{name!r}: a {type} must be one of {', '.join(extensions)} (got {extension or 'no extension'!r})"
            )
        if size > max_bytes:
            raise ConfigurationError(
                f"{name!r} is {_human(size)}; DingTalk allows {_human(max_bytes)} for a {type}"
            )
        if size == 0:
            raise ConfigurationError(f"{name!r} is empty")
        if isinstance(path_or_bytes, bytes):
            data = path_or_bytes
        else:
            # read once (at most 20 MB) so that a retry re-sends the same bytes
            with open(os.fspath(path_or_bytes), "rb") as handle:
                data = handle.read()
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        answer = self._http.oapi(
            "POST",
            "/media/upload",
            params={"type": type},
            data={"type": type},
            files={"media": (name, data, content_type)},
        )
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise ApiError(200, "InvalidResponse", "media/upload returned no media_id")
        created = answer.get("created_at")
        return UploadedMedia(
            media_id=media_id,
            type=str(answer.get("type") or type),
            created_at=created if isinstance(created, int) else None,
        )
