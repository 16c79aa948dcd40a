"""WebhookRobot against the emulator: signing, keywords, pacing, penalties, msgUuid, redaction."""

from __future__ import annotations

import threading
import time
from typing import Any, List

import pytest
import requests

import dingsync
from dingsync import messages as m
from dingsync.api.webhook import WebhookRobot, sign
from dingsync.config import Endpoints
from dingsync.errors import (
    ConfigurationError,
    IpNotWhitelisted,
    KeywordMissing,
    RateLimited,
    SignatureMismatch,
    TimestampInvalid,
    UnsupportedMessage,
    WebhookError,
    WebhookNotFound,
    WebhookThrottled,
)
from dingsync.ratelimit import MemoryRateLimiter, RedisRateLimiter
from dingsync.testing import FakeDingTalk

TOKEN = "a1b2c3d4e5f6webhooktoken"
SECRET = "SEC0123456789abcdefsecret"
SEND = "/robot/send"


def robot_for(fake: FakeDingTalk, **kwargs: Any) -> WebhookRobot:
    kwargs.setdefault("sleep", lambda s: None)
    return WebhookRobot(fake.webhook_url(TOKEN), **kwargs)


def test_signed_send_is_delivered(dingtalk: FakeDingTalk) -> None:
    """A signed message passes the emulator's HMAC check and carries a msgUuid."""
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    robot = robot_for(dingtalk, secret=SECRET)
    msg_uuid = robot.send(m.Markdown("Deploy", "**v1.2** live", at_all=True))
    [received] = dingtalk.webhook_messages
    assert received.msgtype == "markdown" and received.msg_uuid == msg_uuid
    assert received.body["at"]["isAtAll"] is True
    query = dingtalk.requests_to("POST", SEND)[0].query
    assert query["sign"] == sign(SECRET, int(query["timestamp"]))


def test_bare_token_uses_the_configured_oapi_host(dingtalk: FakeDingTalk) -> None:
    """A token without URL goes to endpoints.oapi + /robot/send."""
    dingtalk.add_webhook_robot(TOKEN)
    WebhookRobot(TOKEN, endpoints=dingtalk.endpoints).send("plain")
    assert dingtalk.webhook_messages[0].text == "plain"


def test_wrong_secret_is_a_signature_error(dingtalk: FakeDingTalk) -> None:
    """'sign not match' becomes SignatureMismatch, which is not retried."""
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    with pytest.raises(SignatureMismatch) as info:
        robot_for(dingtalk, secret="SECwrong").send("hi")
    assert info.value.code == "310000"
    assert dingtalk.count("POST", SEND) == 1


def test_clock_off_by_more_than_an_hour(dingtalk: FakeDingTalk) -> None:
    """A timestamp outside ±1 h of the server clock is TimestampInvalid."""
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    late = robot_for(dingtalk, secret=SECRET, clock=lambda: time.time() - 3700)
    with pytest.raises(TimestampInvalid):
        late.send("hi")
    robot_for(dingtalk, secret=SECRET, clock=lambda: time.time() - 3500).send("hi")


def test_keywords_are_checked_before_sending(dingtalk: FakeDingTalk) -> None:
    """keywords= refuses locally; without it the server's 310000 answer is typed the same."""
    dingtalk.add_webhook_robot(TOKEN, keywords=("alert",))
    with pytest.raises(KeywordMissing, match="nothing was sent"):
        robot_for(dingtalk, keywords=["alert"]).send("disk full")
    assert dingtalk.count("POST", SEND) == 0
    with pytest.raises(KeywordMissing):
        robot_for(dingtalk).send("disk full")
    robot_for(dingtalk, keywords=["alert"]).send(m.Markdown("alert", "disk full"))
    assert len(dingtalk.webhook_messages) == 1


def test_ip_whitelist_refusal(dingtalk: FakeDingTalk) -> None:
    """'ip X not in whitelist' becomes IpNotWhitelisted."""
    dingtalk.add_webhook_robot(TOKEN, ip_whitelist=("10.0.0.1",))
    with pytest.raises(IpNotWhitelisted):
        robot_for(dingtalk).send("hi")


def test_unknown_token(dingtalk: FakeDingTalk) -> None:
    """300005 'token is not exist' becomes WebhookNotFound."""
    with pytest.raises(WebhookNotFound):
        robot_for(dingtalk).send("hi")


def test_unsupported_message_types(dingtalk: FakeDingTalk) -> None:
    """Images cannot go through a webhook: refused locally."""
    dingtalk.add_webhook_robot(TOKEN)
    with pytest.raises(UnsupportedMessage):
        robot_for(dingtalk).send(m.Image("@lAx"))
    assert dingtalk.count("POST", SEND) == 0


def test_same_msg_uuid_is_delivered_once(dingtalk: FakeDingTalk) -> None:
    """Resending with the returned msg_uuid does not post twice."""
    dingtalk.add_webhook_robot(TOKEN)
    robot = robot_for(dingtalk)
    first = robot.send("once")
    robot.send("once", msg_uuid=first)
    assert len(dingtalk.webhook_messages) == 1


def test_retry_after_a_drop_reuses_the_msg_uuid(dingtalk: FakeDingTalk) -> None:
    """The automatic retry sends the same msgUuid, so DingTalk can drop a duplicate."""
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    dingtalk.fail_next("POST", SEND, reset=True)
    robot_for(dingtalk, secret=SECRET).send("retried")
    bodies = [r.json() for r in dingtalk.requests_to("POST", SEND)]
    assert len(bodies) == 2 and bodies[0]["msgUuid"] == bodies[1]["msgUuid"]
    assert len(dingtalk.webhook_messages) == 1


def test_system_busy_is_retried(dingtalk: FakeDingTalk) -> None:
    """errcode -1 is transient."""
    dingtalk.add_webhook_robot(TOKEN)
    dingtalk.fail_next("POST", SEND, status=200, body={"errcode": -1, "errmsg": "系统繁忙"})
    robot_for(dingtalk).send("hi")
    assert len(dingtalk.webhook_messages) == 1


def test_throttle_penalty_is_honoured_locally(dingtalk: FakeDingTalk) -> None:
    """After 410100 the robot refuses without calling DingTalk until the 10 minutes are over."""
    dingtalk.add_webhook_robot(TOKEN)
    dingtalk.webhook_rate_limit = 1
    now = [time.time()]
    robot = robot_for(
        dingtalk, clock=lambda: now[0], rate_limiter=MemoryRateLimiter(clock=lambda: now[0])
    )
    robot.send("first")
    with pytest.raises(WebhookThrottled) as info:
        robot.send("second")
    assert info.value.code == "410100" and info.value.retry_after == 600
    assert isinstance(info.value, RateLimited)
    calls = dingtalk.count("POST", SEND)
    with pytest.raises(WebhookThrottled) as local:
        robot.send("third")
    assert "nothing was sent" in str(local.value)
    assert dingtalk.count("POST", SEND) == calls
    now[0] += 601
    dingtalk.advance(601)
    robot.send("fourth")
    assert [x.text for x in dingtalk.webhook_messages] == ["first", "fourth"]


@pytest.mark.parametrize("code", [130101, 660026])
def test_legacy_throttle_codes(dingtalk: FakeDingTalk, code: int) -> None:
    """130101 and 660026 are the same throttle."""
    dingtalk.add_webhook_robot(TOKEN)
    dingtalk.fail_next("POST", SEND, status=200, body={"errcode": code, "errmsg": "send too fast"})
    with pytest.raises(WebhookThrottled):
        robot_for(dingtalk).send("hi")


def test_three_threads_never_exceed_20_a_minute(dingtalk: FakeDingTalk) -> None:
    """Shared pacing keeps every 60-second window at 20 messages; the emulator never throttles.

    Waiting advances the emulator's clock instead of sleeping. Fake time jumps instantly, so a
    jump must not happen between a thread taking a slot and its request reaching the emulator
    (real time cannot pass 60 s during a local request): a gate held from the slot to the
    answer keeps the fake faithful.
    """
    dingtalk.add_webhook_robot(TOKEN)
    gate = threading.RLock()
    asked = threading.local()  # when this thread learnt how long to wait

    class GatedLimiter(MemoryRateLimiter):
        def try_acquire(self, key: str) -> float:
            gate.acquire()
            asked.at = dingtalk.now()
            wait = super().try_acquire(key)
            if wait > 0:
                gate.release()
            return wait  # with a slot, the gate stays held until the answer arrives

    class GatedSession(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            try:
                return super().request(*args, **kwargs)
            finally:
                gate.release()

    def sleep(seconds: float) -> None:
        # threads sleeping at the same time wake at the same time: the clock moves to this
        # thread's wake-up time unless another sleeper already moved it past that
        with gate:
            behind = asked.at + seconds - dingtalk.now()
            if behind > 0:
                dingtalk.advance(behind)

    limiter = GatedLimiter(limit=20, period=61.0, clock=dingtalk.now, sleep=sleep)
    robot = WebhookRobot(
        dingtalk.webhook_url(TOKEN),
        rate_limiter=limiter,
        clock=dingtalk.now,
        sleep=sleep,
        max_wait=600.0,
        session=GatedSession(),
    )
    errors: List[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                robot.send(f"thread {n} message {i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert dingtalk.webhook_rejections == []
    stamps = sorted(x.at for x in dingtalk.webhook_messages)
    assert len(stamps) == 60
    assert max(sum(1 for t in stamps if s <= t < s + 60) for s in stamps) <= 20
    assert stamps[-1] - stamps[0] < 4 * 61  # paced, not serialised into penalties


def test_redis_limiter_paces_two_robots_sharing_a_webhook(
    dingtalk: FakeDingTalk, redis_url: str, redis_client: Any
) -> None:
    """Two robot objects (two processes) sharing a Redis limiter stay under the cap together."""
    dingtalk.add_webhook_robot(TOKEN)

    def make() -> WebhookRobot:
        limiter = RedisRateLimiter(
            redis_url, limit=20, period=61.0, clock=dingtalk.now, sleep=dingtalk.advance
        )
        return WebhookRobot(
            dingtalk.webhook_url(TOKEN), rate_limiter=limiter, clock=dingtalk.now, max_wait=120.0
        )

    first, second = make(), make()
    for i in range(45):
        (first if i % 2 else second).send(f"m{i}")
    assert dingtalk.webhook_rejections == []
    stamps = sorted(x.at for x in dingtalk.webhook_messages)
    assert max(sum(1 for t in stamps if s <= t < s + 60) for s in stamps) <= 20


def test_token_and_secret_never_leak(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """repr(), error messages and logs contain neither the webhook token nor the signature."""
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    caplog.set_level("DEBUG")
    robot = robot_for(dingtalk, secret="SECwrong-but-secret")
    with pytest.raises(WebhookError) as info:
        robot.send("hi")
    sent_sign = dingtalk.requests_to("POST", SEND)[0].query["sign"]
    for text in (repr(robot), str(info.value), repr(info.value), caplog.text):
        assert TOKEN not in text
        assert "SECwrong" not in text
        assert sent_sign not in text


def test_constructor_validation() -> None:
    """Empty tokens, URLs without a token, blank secrets and string keywords are refused."""
    for bad in ("", "https://oapi.dingtalk.com/robot/send"):
        with pytest.raises(ConfigurationError):
            WebhookRobot(bad)
    with pytest.raises(ConfigurationError):
        WebhookRobot("tok", secret="  ")
    with pytest.raises(ConfigurationError):
        WebhookRobot("tok", keywords="alert")  # type: ignore[arg-type]
    assert repr(WebhookRobot("tok", endpoints=Endpoints())).startswith("WebhookRobot(url=")


def test_webhook_robot_is_exported() -> None:
    """dingsync.WebhookRobot is the class of this module."""
    assert dingsync.WebhookRobot is WebhookRobot
