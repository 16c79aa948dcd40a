"""Sending at the edges (issue 14): redirects, token blips, proxy 5xx, deadlines, pool size."""

from __future__ import annotations

import logging
import threading
from typing import Dict, List, Optional

import pytest
from _servers import Answer, json_answer, scripted, token_or, wait_until

from dingsync.api import ApiClient, RetryPolicy
from dingsync.config import Endpoints
from dingsync.errors import ApiError, RateLimited, TokenUnavailable, UnexpectedRedirect
from dingsync.testing import FakeDingTalk

GROUP = "/v1.0/robot/groupMessages/send"
TOKEN = "/v1.0/oauth2/accessToken"
QPM = {"code": "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi", "message": "slow down"}


def _client(dingtalk: FakeDingTalk, sleeps: List[float], **kwargs: object) -> ApiClient:
    return ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, sleep=sleeps.append, **kwargs
    )


# -- 1. redirects -------------------------------------------------------------------------------
def test_a_redirect_is_not_followed_and_names_the_target_host(dingtalk: FakeDingTalk) -> None:
    """A 302 on a send raises UnexpectedRedirect naming the host; the token never goes there."""
    with scripted(lambda *a: json_answer(200, {"processQueryKey": "stolen"})) as thief:
        target = f"http://localhost:{thief.port}/steal"

        def redirect(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
            return 302, {"Location": target}, b""

        with scripted(token_or(redirect)) as proxy:
            api = ApiClient(
                dingtalk.credentials, endpoints=Endpoints(api=proxy.url), sleep=lambda s: None
            )
            with pytest.raises(UnexpectedRedirect) as info:
                api.robot.send_to_group("cid1", "hello")
            api.close()
    assert info.value.location_host == "localhost"
    assert "localhost" in str(info.value) and info.value.maybe_sent is False
    assert thief.seen == []
    assert [path for _, path, _ in proxy.seen].count(GROUP) == 1


# -- 2. token endpoint blips --------------------------------------------------------------------
def test_a_cut_token_call_is_retried_and_the_send_goes_out(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """A dropped connection on oauth2/accessToken is retried on its own; the send succeeds."""
    dingtalk.fail_next("POST", TOKEN, reset=True, times=2)
    api.robot.send_to_group("cid1", "hello")
    assert dingtalk.count("POST", TOKEN) == 3
    assert dingtalk.count("POST", GROUP) == 1 and len(dingtalk.sent) == 1


def test_a_token_read_timeout_is_retried(dingtalk: FakeDingTalk) -> None:
    """A read timeout on the token endpoint is not a 'maybe sent' send failure: it is retried."""
    api = ApiClient(
        dingtalk.credentials, endpoints=dingtalk.endpoints, timeout=(2.0, 0.3), sleep=lambda s: None
    )
    dingtalk.fail_next("POST", TOKEN, status=200, body={"accessToken": "late"}, delay=1.0)
    api.robot.send_to_group("cid1", "hello")
    assert len(dingtalk.sent) == 1
    api.close()


def test_a_dead_token_endpoint_says_nothing_was_sent(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """TokenUnavailable (maybe_sent False) after the token's own retries; no retry squared."""
    dingtalk.fail_next("POST", TOKEN, reset=True, times=50)
    with pytest.raises(TokenUnavailable) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.maybe_sent is False
    assert "nothing was sent" in str(info.value)
    assert dingtalk.count("POST", TOKEN) == 4
    assert dingtalk.count("POST", GROUP) == 0


def test_a_failing_token_endpoint_is_not_retried_twice_over(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """A token endpoint answering 503 is retried by the fetch alone (4 requests, not 16)."""
    dingtalk.fail_next("POST", TOKEN, status=503, times=50)
    with pytest.raises(ApiError):
        api.robot.read_status("key")
    assert dingtalk.count("POST", TOKEN) == 4


# -- 3. a proxy's 5xx on a send -----------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_on_a_send_is_not_resent(dingtalk: FakeDingTalk, api: ApiClient, status: int) -> None:
    """A send answered 5xx may have been processed upstream: raised once with maybe_sent."""
    api.access_token()
    dingtalk.fail_next("POST", GROUP, status=status, body="<html>Bad Gateway</html>")
    with pytest.raises(ApiError) as info:
        api.robot.send_to_group("cid1", "hello")
    assert info.value.status == status and info.value.maybe_sent is True
    assert "not repeated" in str(info.value)
    assert dingtalk.count("POST", GROUP) == 1


def test_a_5xx_that_dingtalk_says_it_throttled_is_retried(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """DingTalk's own throttle body says the send was not processed: it is retried."""
    body = {"code": "Forbidden.AccessDenied.QpsLimitForApi", "message": "slow"}
    dingtalk.fail_next("POST", GROUP, status=503, body=body)
    api.robot.send_to_group("cid1", "hello")
    assert dingtalk.count("POST", GROUP) == 2 and len(dingtalk.sent) == 1


# -- 10. Retry-After, deadline, loud waits -----------------------------------------------------
def test_a_per_minute_throttle_waits_the_full_minute(
    dingtalk: FakeDingTalk, api: ApiClient, sleeps: List[float]
) -> None:
    """QpmLimit waits 60 s (it was capped at 30 s, which only earns another refusal)."""
    dingtalk.fail_next("POST", GROUP, status=403, body=QPM)
    api.robot.send_to_group("cid1", "hello")
    assert sleeps and sleeps[0] >= 60.0


def test_retry_after_header_is_honoured_in_full(dingtalk: FakeDingTalk) -> None:
    """A Retry-After of 45 s is waited in full before the one retry."""
    calls: List[str] = []

    def throttle_once(method: str, path: str, headers: Dict[str, str], body: bytes) -> Answer:
        calls.append(path)
        if len(calls) == 1:
            return json_answer(
                429, {"code": "Throttling", "message": "slow"}, **{"Retry-After": "45"}
            )
        return json_answer(200, {"processQueryKey": "k1"})

    sleeps: List[float] = []
    with scripted(token_or(throttle_once)) as server:
        api = ApiClient(
            dingtalk.credentials, endpoints=Endpoints(api=server.url), sleep=sleeps.append
        )
        assert api.robot.send_to_group("cid1", "hello") == "k1"
        api.close()
    assert len(sleeps) == 1 and sleeps[0] >= 45.0


def test_every_call_has_a_total_deadline(dingtalk: FakeDingTalk) -> None:
    """Two 60 s waits do not fit a 100 s deadline: the call gives up after one."""
    sleeps: List[float] = []
    api = _client(dingtalk, sleeps, retry=RetryPolicy(deadline=100.0))
    dingtalk.fail_next("POST", GROUP, status=403, body=QPM, times=10)
    with pytest.raises(RateLimited):
        api.robot.send_to_group("cid1", "hello")
    assert len(sleeps) == 1 and dingtalk.count("POST", GROUP) == 2
    api.close()


def test_waits_over_a_second_are_logged(
    dingtalk: FakeDingTalk, api: ApiClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A throttled call that waits a minute says so at WARNING, before waiting."""
    dingtalk.fail_next("POST", GROUP, status=403, body=QPM)
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        api.robot.send_to_group("cid1", "hello")
    assert any("retrying in 6" in r.getMessage() for r in caplog.records)


# -- the connection pool ------------------------------------------------------------------------
def _pool_full_warnings(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture, **kwargs: object
) -> int:
    threads = 16
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, **kwargs)  # type: ignore[arg-type]
    api.access_token()
    # every send is held 1 s, so all 16 connections are open at once
    held = {"processQueryKey": "k"}
    dingtalk.fail_next("POST", GROUP, status=200, body=held, delay=1.0, times=threads)
    errors: List[BaseException] = []

    def send() -> None:
        try:
            api.robot.send_to_group("cid1", "hello")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        workers = [threading.Thread(target=send) for _ in range(threads)]
        for worker in workers:
            # one connection at a time: a burst of 16 connects overflows the server's backlog
            before = dingtalk.count("POST", GROUP)
            worker.start()
            wait_until(lambda before=before: dingtalk.count("POST", GROUP) > before)  # type: ignore[misc]
        for worker in workers:
            worker.join()
    api.close()
    assert errors == []
    return sum("Connection pool is full" in r.getMessage() for r in caplog.records)


def test_pool_size_fits_the_threads_sharing_a_client(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """16 threads on ApiClient(pool_size=16) reuse connections; the default 10 discards some."""
    assert _pool_full_warnings(dingtalk, caplog, pool_size=16) == 0
    assert _pool_full_warnings(dingtalk, caplog) > 0


def test_pool_size_must_be_positive(dingtalk: FakeDingTalk) -> None:
    with pytest.raises(ValueError, match="pool_size"):
        ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, pool_size=0)


# -- secrets stay out of the new log lines and messages -----------------------------------------
def test_faulty_sends_log_no_secret(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    """Retries, token cuts, 5xx, throttled webhooks and proxies with passwords log no secret."""
    from dingsync.api.webhook import WebhookRobot
    from dingsync.errors import DingSyncError

    caplog.set_level(logging.DEBUG)
    secret, hook = "SECwebhooksigningsecret", "hooktoken0123456789"
    dingtalk.add_webhook_robot(hook, secret=secret)
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, sleep=lambda s: None)
    dingtalk.fail_next("POST", TOKEN, reset=True)
    dingtalk.fail_next("GET", "/gettoken", reset=True)
    api.robot.send_to_group("cid1", "hello")
    dingtalk.fail_next("POST", GROUP, status=502)
    with pytest.raises(DingSyncError) as failed:
        api.robot.send_to_group("cid1", "hello")
    dingtalk.fail_next("POST", "/topapi/message/corpconversation/asyncsend_v2", reset=True)
    with pytest.raises(DingSyncError) as lost:
        api.notify.send("hi", agent_id=1, user_ids=["u1"])
    robot = WebhookRobot(dingtalk.webhook_url(hook), secret=secret, sleep=lambda s: None)
    dingtalk.fail_next("POST", "/robot/send", reset=True)
    robot.send("hello")
    with_password = Endpoints(api="http://bob:hunter2@127.0.0.1:1")
    broken = ApiClient(dingtalk.credentials, endpoints=with_password, sleep=lambda s: None)
    with pytest.raises(DingSyncError) as unreachable:
        broken.robot.send_to_group("cid1", "hello")
    api.close()
    robot.close()
    broken.close()
    text = caplog.text + str(failed.value) + str(lost.value) + str(unreachable.value)
    tokens = [dingtalk.issue_token("new")[0], dingtalk.issue_token("old")[0]]
    for leaked in [dingtalk.client_secret, secret, hook, "hunter2", *tokens]:
        assert leaked not in text, leaked
    assert "retrying in" in caplog.text  # the log lines checked did happen


def test_a_failed_old_style_call_keeps_no_token_in_exception_attributes(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """The chained requests/urllib3 exceptions keep their URLs, with the token masked."""
    from dingsync.errors import DingSyncError

    dingtalk.fail_next("POST", "/topapi/message/corpconversation/asyncsend_v2", reset=True)
    with pytest.raises(DingSyncError) as info:
        api.notify.send("hi", agent_id=1, user_ids=["u1"])
    token = dingtalk.issue_token("old")[0]
    seen = []
    cause: Optional[BaseException] = info.value.__cause__
    while cause is not None:
        for holder in (cause, getattr(cause, "request", None), getattr(cause, "reason", None)):
            url = getattr(holder, "url", None)
            if isinstance(url, str):
                seen.append(url)
        cause = cause.__cause__ or cause.__context__
    assert seen and all(token not in url for url in seen), seen
