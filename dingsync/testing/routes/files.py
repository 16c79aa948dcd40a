"""Received files: ``POST /v1.0/robot/messageFiles/download`` (reference/openapi.md §3.7) and
the temporary URLs it hands out.

Register bytes with ``fake.add_file(download_code, data)``. The download URL points at
``<oapi>/_fake/files/<blob>/<filename>``, is valid for ``fake.download_url_ttl`` seconds of the
emulator clock, and needs no token (like DingTalk's pre-signed URLs). Failures can be injected
on the exact blob path with ``fake.fail_next("GET", path)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, List

from .._http import Request, Response, json_response, new_error, route
from .._openapi import json_object
from .robot import check_robot

if TYPE_CHECKING:
    from .._fake import FakeDingTalk

__all__: List[str] = []

BLOB_PREFIX = "/_fake/files/"


@route("api", "POST", "/v1.0/robot/messageFiles/download")
def message_file_download(fake: FakeDingTalk, request: Request) -> Response:
    error = fake.check_new_auth(request)
    if error is not None:
        return error
    body, error = json_object(request)
    if error is not None or body is None:
        return error or new_error(400, "invalidParameter.param.invalid", "bad body")
    code = body.get("downloadCode")
    if not code:
        return new_error(400, "invalidParameter.downloadCode.empty", "downloadCode is empty")
    error = check_robot(fake, body)
    if error is not None:
        return error
    if code not in fake.files:
        return new_error(400, "invalidParameter.downloadCode.invalid", "downloadCode is invalid")
    return json_response({"downloadUrl": fake._new_blob_url(code)})


@route("oapi", "GET", BLOB_PREFIX, prefix=True)
def blob(fake: FakeDingTalk, request: Request) -> Response:
    blob_id = request.path[len(BLOB_PREFIX) :].split("/", 1)[0]
    stored = fake._blob(blob_id)
    if stored is None:
        return Response(
            403,
            b"<?xml version='1.0'?><Error><Code>AccessDenied</Code>"
            b"<Message>Request has expired.</Message></Error>",
            content_type="application/xml",
        )
    return Response(200, stored.data, content_type=stored.content_type)
