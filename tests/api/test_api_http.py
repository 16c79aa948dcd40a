"""The HTTP boundary: error mapping, retries, timeouts, scrubbing, proxies, lazy imports."""

from __future__ import annotations

import socket
import subprocess
import sys
import traceback
from typing import List

import pytest
import requests

from dingsync.api import NO_RETRY, ApiClient, RetryPolicy
from dingsync.config import Endpoints
from dingsync.errors import (
    ApiError,
    ConnectionLost,
    InvalidRequest,
    PermissionDenied,
    RateLimited,
    RequestTimeout,
    TransportError,
)
from dingsync.testing import FakeDingTalk

GROUP = "/v1.0/robot/groupMessages/send"
READ = "/v1.0/robot/oToMessages/readStatus"
RESULT = "/topapi/message/corpconversation/getsendresult"


def qps(code: str = "Forbidden.AccessDenied.QpsLimitForApi") -> dict:
    return {"code": code, "message": "请求过于频繁", "requestid": "REQ-1"}


def test_throttled_call_backs_off_then_succeeds(
    dingtalk: FakeDingTalk, api: ApiClient, sleeps: List[float]
) -> None:
    """403 QpsLimit is retried after waiting at least a second; the send then goes through."""
    dingtalk.fail_next("POST", GROUP, status=403, body=qps(), times=2)
    api.robot.send_to_group("cid1", "hello")
    assert dingtalk.count("POST", GROUP) == 3
    assert len(sleeps) == 2 and all(s >= 1.0 for s in sleeps)
    assert len(dingtalk.sent) == 1


def test_qpm_throttle_waits_longer(
    dingtalk: FakeDingTalk, api: ApiClient, sleeps: List[float]
) -> None:
    """A per-minute limit waits longer than a per-second one (capped by the policy)."""
    dingtalk.fail_next(
        "POST", GROUP, status=403, body=qps("Forbidden.AccessDenied.QpmLimitForAppkeyAndApi")
    )
    api.robot.send_to_group("cid1", "hello")
    assert sleeps and sleeps[0] >= 30.0


def test_429_is_treated_as_throttling(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A 429 is retried like the 403 throttle."""
    dingtalk.fail_next("POST", GROUP, status=429, body={"code": "Throttling", "message": "slow"})
    api.robot.send_to_group("cid1", "hello")
    assert dingtalk.count("POST", GROUP) == 2


def test_throttling_that_never_ends_raises_rate_limited(
    dingtalk: FakeDingTalk, api: ApiClient, sleeps: List[float]
) -> None:
    """After the last attempt the caller gets RateLimited with DingTalk's details."""
    dingtalk.fail_next("POST", GROUP, status=403, body=qps(), times=10)
    with pytest.raises(RateLimited) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.code == "Forbidden.AccessDenied.QpsLimitForApi"
    assert info.value.request_id == "REQ-1"
    assert dingtalk.count("POST", GROUP) == 4 and len(sleeps) == 3


def test_server_error_on_a_read_then_success(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A 500 on an idempotent call is retried."""
    key = api.robot.send_to_users(["u1"], "hi").process_query_keys[0]
    dingtalk.fail_next("GET", READ, status=500)
    assert api.robot.read_status(key).send_status == "SUCCESS"
    assert dingtalk.count("GET", READ) == 2


def test_gateway_timeout_on_a_send_is_not_retried(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A 504 may hide a delivered send, so a non-idempotent call is not repeated."""
    dingtalk.fail_next("POST", GROUP, status=504)
    with pytest.raises(ApiError) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.status == 504
    assert dingtalk.count("POST", GROUP) == 1


def test_gateway_timeout_on_a_read_is_retried(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Reads are idempotent: 504 then success."""
    key = api.robot.send_to_users(["u1"], "hi").process_query_keys[0]
    dingtalk.fail_next("GET", READ, status=504)
    assert api.robot.read_status(key).send_status == "SUCCESS"
    assert dingtalk.count("GET", READ) == 2


def test_validation_errors_are_never_retried(dingtalk: FakeDingTalk) -> None:
    """An invalidParameter.* answer fails at once (one request)."""
    api = ApiClient(
        dingtalk.credentials,
        endpoints=dingtalk.endpoints,
        robot_code="not-the-app",
        sleep=lambda s: None,
    )
    with pytest.raises(InvalidRequest) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.code == "invalidParameter.robotCode.auth"
    assert info.value.status == 400
    assert dingtalk.count("POST", GROUP) == 1


def test_read_timeout_on_a_send_is_not_resent(dingtalk: FakeDingTalk) -> None:
    """A send that timed out after going out raises RequestTimeout(maybe_sent=True), once."""
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, timeout=(2.0, 0.3))
    api.access_token()
    dingtalk.fail_next("POST", GROUP, status=200, body={"processQueryKey": "late"}, delay=1.0)
    with pytest.raises(RequestTimeout) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.maybe_sent is True
    assert "not retried" in str(info.value)
    assert dingtalk.count("POST", GROUP) == 1
    assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)


def test_read_timeout_on_a_read_is_retried(dingtalk: FakeDingTalk) -> None:
    """An idempotent call is repeated after a read timeout."""
    api = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, timeout=(2.0, 0.3), sleep=lambda s: None
    )
    key = api.robot.send_to_users(["u1"], "hi").process_query_keys[0]
    dingtalk.fail_next("GET", READ, status=500, delay=1.0)
    api.robot.read_status(key)
    assert dingtalk.count("GET", READ) == 2


def test_dropped_connection_on_a_send_is_not_resent(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A connection closed after the request went out: ConnectionLost, not repeated."""
    api.access_token()
    dingtalk.fail_next("POST", GROUP, reset=True)
    with pytest.raises(ConnectionLost) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.maybe_sent is True
    assert dingtalk.count("POST", GROUP) == 1


def test_dropped_connection_on_a_read_is_retried(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """The same drop on an idempotent call is retried."""
    key = api.robot.send_to_users(["u1"], "hi").process_query_keys[0]
    dingtalk.fail_next("GET", READ, reset=True)
    api.robot.read_status(key)
    assert dingtalk.count("GET", READ) == 2


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_connection_refused_is_retried_then_a_transport_error(sleeps: List[float]) -> None:
    """Never connecting is safe to retry for any call; the final error is TransportError."""
    port = _closed_port()
    endpoints = Endpoints(api=f"http://127.0.0.1:{port}", oapi=f"http://127.0.0.1:{port}")
    from dingsync.config import Credentials

    api = ApiClient(
        Credentials(client_id="id", client_secret="very-secret"),
        endpoints=endpoints,
        sleep=sleeps.append,
    )
    with pytest.raises(TransportError) as info:
        api.access_token("old")
    assert not isinstance(info.value, RequestTimeout)
    assert len(sleeps) == 3
    rendered = "".join(
        traceback.format_exception(type(info.value), info.value, info.value.__traceback__)
    )
    assert "very-secret" not in rendered, "the app secret leaked into a traceback"
    assert "could not connect" in str(info.value)


def test_permission_error_names_the_scope(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """requiredScopes from accessdenieddetail reach the exception and its message."""
    body = {
        "code": "Forbidden.AccessDenied.AccessTokenPermissionDenied",
        "message": "没有调用该接口的权限",
        "requestid": "R",
        "accessdenieddetail": {"requiredScopes": ["Card.Streaming.Write"]},
    }
    dingtalk.fail_next("PUT", "/v1.0/card/streaming", status=403, body=body)
    with pytest.raises(PermissionDenied) as info:
        api.cards.stream("t1", "content", "x")
    assert info.value.required_scopes == ("Card.Streaming.Write",)
    assert "Card.Streaming.Write" in str(info.value)
    assert dingtalk.count("PUT", "/v1.0/card/streaming") == 1


def test_monthly_quota_is_not_retried(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """ApiCountLimitForOrg will not clear up in seconds."""
    body = {"code": "Forbidden.AccessDenied.ApiCountLimitForOrg", "message": "额度:10000次"}
    dingtalk.fail_next("POST", GROUP, status=403, body=body)
    with pytest.raises(RateLimited):
        api.robot.send_to_group("cid1", "hello")
    assert dingtalk.count("POST", GROUP) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"errcode": -1, "errmsg": "系统繁忙"},
        {"errcode": 88, "sub_code": "", "errmsg": "auth timeout"},
        {"errcode": 90018, "errmsg": "too many"},
        {"errcode": 15, "sub_code": "isp.top-remote-connection-timeout", "errmsg": "timeout"},
    ],
)
def test_old_style_transient_errcodes_are_retried(
    dingtalk: FakeDingTalk, api: ApiClient, body: dict
) -> None:
    """Busy, auth-timeout, rate-dimension and timeout errcodes (all HTTP 200) are retried."""
    task = api.notify.send("hello", agent_id=7, user_ids=["u1"])
    dingtalk.fail_next("POST", RESULT, status=200, body=body)
    assert api.notify.send_result(task, agent_id=7).all_delivered
    assert dingtalk.count("POST", RESULT) == 2


def test_old_style_validation_error_is_typed(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """errcode 40035 at HTTP 200 is InvalidRequest with the errcode as code."""
    with pytest.raises(InvalidRequest) as info:
        api.notify.send_result(424242, agent_id=7)
    assert info.value.code == "40035" and info.value.status == 200


def test_html_answer_is_an_api_error_with_a_hint(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A non-JSON page is reported, not a JSONDecodeError."""
    dingtalk.fail_next("POST", GROUP, status=403, body="<html><body>Access denied</body></html>")
    with pytest.raises(ApiError) as info:
        api.robot.send_to_group("cid1", "hello")
    assert "expected JSON" in str(info.value) and "IP-level ban" in str(info.value)


def test_ip_ban_stops_calling_dingtalk(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """punish: deny is not retried, and later calls fail locally until the ban ends."""
    api.access_token()
    ban = {"status": 1111, "wait": 5, "source": "x5", "punish": "deny", "uuid": "u"}
    dingtalk.fail_next("POST", GROUP, status=200, body=ban)
    with pytest.raises(RateLimited) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.retry_after == 300
    with pytest.raises(RateLimited) as again:
        api.robot.send_to_group("cid1", "hello")
    assert "blocked" in str(again.value)
    assert dingtalk.count("POST", GROUP) == 1


def test_retry_can_be_disabled(dingtalk: FakeDingTalk) -> None:
    """NO_RETRY makes one attempt."""
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, retry=NO_RETRY)
    dingtalk.fail_next("POST", GROUP, status=500)
    with pytest.raises(ApiError):
        api.robot.send_to_group("cid1", "hello")
    assert dingtalk.count("POST", GROUP) == 1


def test_retry_policy_delays_grow_and_are_capped() -> None:
    """Backoff doubles up to `max`; a server-suggested wait wins when longer."""
    policy = RetryPolicy(initial=1.0, max=5.0, jitter=0.0)
    assert [policy.delay(n, None) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    throttled = RateLimited(403, "x", "y", retry_after=3.0)
    assert policy.delay(1, throttled) == 3.0


def test_explicit_proxy_is_used(dingtalk: FakeDingTalk) -> None:
    """proxy= routes every call through the proxy (here: the emulator's other host)."""
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, proxy=dingtalk.api_base)
    with pytest.raises(ApiError):
        api.access_token("old")  # the "proxy" (api host) does not serve /gettoken
    assert dingtalk.requests_to("GET", "/gettoken")[-1].host == "api"


def test_environment_proxy_is_honoured(
    dingtalk: FakeDingTalk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without proxy=, HTTP_PROXY from the environment applies (requests' trust_env)."""
    monkeypatch.setenv("HTTP_PROXY", dingtalk.api_base)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, retry=NO_RETRY)
    with pytest.raises(ApiError):
        api.access_token("old")
    assert dingtalk.requests_to("GET", "/gettoken")[-1].host == "api"


def test_ca_bundle_is_used_for_verification(dingtalk: FakeDingTalk, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """ca_bundle= is passed to requests as the verify path."""
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not really a certificate")
    calls = []

    class Spy(requests.Session):
        def request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls.append(kwargs.get("verify"))
            return super().request(*args, **kwargs)

    api = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, ca_bundle=str(bundle), session=Spy()
    )
    api.access_token()
    assert calls == [str(bundle)]


def test_sending_stays_light() -> None:
    """import dingsync + building an ApiClient loads neither tenacity nor websocket-client."""
    code = (
        "import sys, dingsync\n"
        "dingsync.ApiClient(dingsync.Credentials(client_id='a', client_secret='b'))\n"
        "print([m for m in ('tenacity', 'websocket', 'click') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_client_repr_hides_secret_and_tokens(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """repr(ApiClient) and repr(its token provider) show neither the secret nor a token."""
    token = api.access_token().value
    for text in (repr(api), repr(api.tokens), repr(api.credentials)):
        assert dingtalk.client_secret not in text
        assert token not in text
