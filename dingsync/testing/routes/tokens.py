"""Access tokens: ``POST /v1.0/oauth2/accessToken`` (new style) and ``GET /gettoken`` (old style).

Facts from reference/openapi.md §2: JSON body only (a form body is 400 ``Missingbody``); wrong
credentials are 400 ``invalidClientIdOrSecret`` / errcode 40096; a repeat call within the
lifetime returns the same token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._http import BadJson, Request, Response, json_response, new_error, old_error, route

if TYPE_CHECKING:
    from .._fake import FakeDingTalk


@route("api", "POST", "/v1.0/oauth2/accessToken")
def access_token(fake: FakeDingTalk, request: Request) -> Response:
    content_type = request.header("content-type", "") or ""
    if "json" not in content_type or not request.body:
        return new_error(400, "Missingbody", "body is mandatory for this action")
    try:
        body = request.json()
    except BadJson:
        return new_error(400, "Missingbody", "body is mandatory for this action")
    if not isinstance(body, dict):
        return new_error(400, "Missingbody", "body is mandatory for this action")
    if body.get("appKey") != fake.client_id or body.get("appSecret") != fake.client_secret:
        return new_error(400, "invalidClientIdOrSecret", "无效的clientId或者clientSecret")
    token, expires_in = fake.issue_token("new")
    return json_response({"accessToken": token, "expireIn": expires_in})


@route("oapi", "GET", "/gettoken")
def gettoken(fake: FakeDingTalk, request: Request) -> Response:
    appkey = request.query.get("appkey")
    appsecret = request.query.get("appsecret")
    if not appkey and not request.query.get("corpid"):
        return old_error(40035, "缺少参数 corpid or appkey")
    if appkey != fake.client_id or appsecret != fake.client_secret:
        return old_error(40096, "不合法的appKey或appSecret")
    token, expires_in = fake.issue_token("old")
    return json_response(
        {"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": expires_in}
    )
