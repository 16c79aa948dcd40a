"""DingTalk's two response envelopes mapped to dingsync's exceptions, and the retry rules.

New style (api.dingtalk.com): an HTTP error status with ``{code, message, requestid}``.
Old style (oapi.dingtalk.com): HTTP 200 with a non-zero ``errcode``. Both can also come back as
a non-JSON page (the IP-level ban) or ``{"punish": "deny"}``. The tables follow
reference/openapi.md §9.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Dict, Mapping

import requests

from .._redact import scrub
from ..errors import (
    ApiError,
    AuthError,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    StoreUnavailable,
    TokenUnavailable,
    TransportError,
    WebhookError,
)

__all__ = [
    "decode_new",
    "decode_old",
    "old_error",
    "should_retry",
    "token_rejected",
    "scrub",
    "where",
    "json_body",
    "mark_maybe_sent",
    "snippet",
    "BAN_CODE",
]

# old-style errcodes worth retrying (openapi.md §9.2/§9.3): busy, timeouts, rate dimensions
_OLD_RETRY = {"-1", "15", "41047", "41048"} | {str(c) for c in range(90001, 90020)}
_OLD_RATE = {"41047", "41048", "90020"} | {str(c) for c in range(90001, 90020)}
_OLD_TOKEN = {"40014", "42001", "40001"}
_OLD_AUTH = {"40089", "40096"}
_OLD_PERMISSION = {"60011", "60020"}
_OLD_INVALID = {"40035", "22", "40004", "40005", "40006"}
_NOT_RETRIED_RATE = {"ApiCountLimitForOrg", "Forbidden.AccessDenied.ApiCountLimitForOrg", "90020"}
BAN_CODE = "IpBanned"


def where(method: str, url: str) -> str:
    """``METHOD url`` for messages: no query string (tokens) and no user:password@."""
    return f"{method} {re.sub(r'//[^/@]*@', '//', url.split('?', 1)[0])}"


def json_body(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def snippet(resp: requests.Response) -> str:
    text = resp.text[:120].replace("\n", " ").strip()
    return scrub(text) or "<empty>"


def _ban_error(status: int, body: Mapping[str, Any]) -> RateLimited:
    wait = body.get("wait")
    minutes = float(wait) if isinstance(wait, (int, float)) else 5.0
    return RateLimited(
        status,
        BAN_CODE,
        "DingTalk blocked this egress IP (punish: deny)",
        None,
        body=body,
        retry_after=minutes * 60.0,
        hint="more than 10,000 calls in 20 s from one IP block every API for 5 minutes; "
        "dingsync stops calling until the block ends",
    )


def _non_json(resp: requests.Response) -> ApiError:
    status = resp.status_code
    kind = resp.headers.get("Content-Type", "unknown content type")
    return ApiError(
        status,
        f"HTTP{status}",
        f"expected JSON, got {kind}: {snippet(resp)}",
        resp.headers.get("x-acs-request-id"),
        hint="an HTML page usually means DingTalk's IP-level ban (wait 5 minutes) or an error "
        "page of a proxy between you and DingTalk",
    )


def _rate_limit_wait(code: str, resp: requests.Response) -> float:
    header = resp.headers.get("Retry-After")
    if header:
        with contextlib.suppress(ValueError):
            return float(header)
    return 60.0 if "Qpm" in code else 1.0


def decode_new(resp: requests.Response) -> Any:
    """Decode a new-style (api.dingtalk.com) answer or raise the matching :class:`ApiError`."""
    status = resp.status_code
    body = json_body(resp)
    if 200 <= status < 300:
        if status == 204 or not resp.content:
            return {}
        if body is None:
            raise _non_json(resp)
        if isinstance(body, dict) and body.get("punish") == "deny":
            raise _ban_error(status, body)
        return body
    if not isinstance(body, dict):
        raise _non_json(resp)
    if body.get("punish") == "deny":
        raise _ban_error(status, body)
    code = str(body.get("code") or body.get("Code") or f"HTTP{status}")
    message = str(body.get("message") or body.get("Message") or resp.reason or "")
    request_id = (
        body.get("requestid") or body.get("RequestId") or resp.headers.get("x-acs-request-id")
    )
    args = (status, code, message, request_id)
    if code == "invalidClientIdOrSecret":
        raise AuthError(
            f"DingTalk refused the client id / secret ({code}: {message})",
            status=status,
            code=code,
            request_id=request_id,
        )
    if status == 429 or "QpsLimit" in code or "QpmLimit" in code:
        raise RateLimited(
            *args,
            body=body,
            retry_after=_rate_limit_wait(code, resp),
            hint="DingTalk throttled this call; it was not processed",
        )
    if "ApiCountLimitForOrg" in code:
        raise RateLimited(*args, body=body, hint="the organisation's monthly API quota is used up")
    if code.startswith("Forbidden.AccessDenied") or (status == 403 and not code.startswith("HTTP")):
        detail = body.get("accessdenieddetail") or {}
        scopes = detail.get("requiredScopes") or [] if isinstance(detail, dict) else []
        if scopes:
            hint = (
                f"grant the permission {', '.join(map(str, scopes))} to the app in the DingTalk "
                "developer console (Permissions), then publish a new version"
            )
        elif "IpNotInWhiteList" in code:
            hint = "add this machine's egress IP to the app's IP whitelist"
        else:
            hint = "the app lacks a permission for this API"
        raise PermissionDenied(*args, body=body, required_scopes=scopes, hint=hint)
    if status == 401 or code == "InvalidAuthentication":
        raise ApiError(*args, body=body)
    if 400 <= status < 500:
        raise InvalidRequest(*args, body=body)
    raise ApiError(*args, body=body)


def old_error(status: int, body: Mapping[str, Any]) -> ApiError:
    """The :class:`ApiError` for an old-style body whose ``errcode`` is not 0."""
    code = str(body.get("errcode"))
    sub_code = str(body.get("sub_code") or "")
    message = str(body.get("errmsg") or "")
    if body.get("sub_msg"):
        message = f"{message} ({body.get('sub_msg')})"
    request_id = body.get("request_id")
    args = (status, code, message, request_id)
    if code in _OLD_AUTH:
        return ApiError(*args, body=body, hint="the app key or secret is wrong")
    if code in _OLD_RATE:
        hint = "the organisation's monthly API quota is used up" if code == "90020" else None
        return RateLimited(*args, body=body, retry_after=1.0, hint=hint)
    if code in _OLD_PERMISSION:
        hint = (
            "add this machine's egress IP to the app's IP whitelist"
            if code == "60020"
            else "the app lacks a permission for this API"
        )
        return PermissionDenied(*args, body=body, hint=hint)
    if code in _OLD_INVALID or (code == "88" and sub_code == "40000"):
        return InvalidRequest(*args, body=body)
    return ApiError(*args, body=body)


def decode_old(resp: requests.Response) -> Dict[str, Any]:
    """Decode an old-style (oapi.dingtalk.com) answer: errors come as HTTP 200 + ``errcode``."""
    body = json_body(resp)
    if not isinstance(body, dict):
        if resp.status_code >= 300:
            decode_new(resp)  # an error from the load balancer, not the API: raises
        raise _non_json(resp)
    if body.get("punish") == "deny":
        raise _ban_error(resp.status_code, body)
    errcode = body.get("errcode", 0)
    if str(errcode) == "0":
        if resp.status_code >= 300:
            decode_new(resp)  # errcode 0 with an error status: let the status speak
        return body
    error = old_error(resp.status_code, body)
    if error.code in _OLD_AUTH:
        raise AuthError(
            f"DingTalk refused the app key / secret (errcode {error.code}: {error.message})",
            status=resp.status_code,
            code=error.code,
            request_id=error.request_id,
        )
    raise error


def token_rejected(error: BaseException) -> bool:
    """True when DingTalk refused the access token itself (refresh it and retry once)."""
    if not isinstance(error, ApiError) or isinstance(error, (PermissionDenied, WebhookError)):
        return False
    if error.code == "InvalidAuthentication" or error.status == 401:
        return True
    if error.code in _OLD_TOKEN:
        return True
    return error.code == "88" and str(error.body.get("sub_code") or "") == "40014"


def should_retry(error: BaseException, idempotent: bool) -> bool:
    """Whether ``error`` is transient (openapi.md §9.3), given the call's idempotency."""
    if isinstance(error, TokenUnavailable):
        return False  # the token fetch ran its own retries
    if isinstance(error, StoreUnavailable):
        return True  # the shared pacing store failed before anything was sent
    if isinstance(error, TransportError):
        return idempotent or not getattr(error, "maybe_sent", False)
    if not isinstance(error, ApiError) or isinstance(
        error, (InvalidRequest, PermissionDenied, WebhookError)
    ):
        return False
    if error.code in _NOT_RETRIED_RATE or error.code == BAN_CODE:
        return False
    if isinstance(error, RateLimited):
        return True
    if error.code in _OLD_RETRY:
        return True
    if error.code == "88" and not error.body.get("sub_code"):
        return True  # the auth service itself timed out
    if error.status >= 500:
        # a 5xx may come from a proxy or gateway after DingTalk processed the call
        return idempotent or not error.maybe_sent
    return False


def mark_maybe_sent(error: ApiError) -> None:
    """Flag a non-idempotent call's 5xx as possibly processed (not resent, ``maybe_sent``).

    A 5xx may come from a proxy or DingTalk's gateway after the upstream processed the send.
    Only DingTalk's own answers say otherwise: throttling, and the old API's "busy" codes.
    """
    if error.status < 500 or isinstance(error, RateLimited) or error.code in _OLD_RETRY:
        return
    error.maybe_sent = True
    note = (
        "the send may have been processed, so it was not repeated; check whether it arrived "
        "before sending again"
    )
    error.hint = f"{error.hint}; {note}" if error.hint else note
    error.args = (error._describe(),)
