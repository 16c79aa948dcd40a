"""Custom robots at the edges (issue 14): machine-wide pacing, deadlines, size, missing secret."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import List

import pytest

from dingsync import messages as m
from dingsync.api.webhook import MAX_WEBHOOK_BYTES, WebhookRobot
from dingsync.errors import ConfigurationError, SignatureMismatch, WebhookThrottled
from dingsync.ratelimit import FileRateLimiter, MemoryRateLimiter
from dingsync.testing import FakeDingTalk

TOKEN = "a1b2c3d4e5f6webhooktoken"
SECRET = "SEC0123456789abcdefsecret"
SEND = "/robot/send"


class FakeTime:
    """A clock and a sleep that advances it, so waits cost nothing."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self.slept: List[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


_SENDER = textwrap.dedent(
    """
    import sys
    from dingsync.api.webhook import WebhookRobot
    from dingsync.errors import WebhookThrottled
    robot = WebhookRobot(sys.argv[1])
    try:
        for i in range(int(sys.argv[2])):
            robot.send(f"cron run message {i}")
    except WebhookThrottled as exc:
        print(exc.code)
    """
)


def _run_sender(dingtalk: FakeDingTalk, count: int) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _SENDER, dingtalk.webhook_url(TOKEN), str(count)],
        env={**os.environ, **dingtalk.env()},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


# -- 6. pacing and penalties across processes ---------------------------------------------------
def test_pacing_is_shared_by_the_processes_of_a_machine(dingtalk: FakeDingTalk) -> None:
    """After another process sent 20 this minute, the 21st is held back here, not sent."""
    dingtalk.add_webhook_robot(TOKEN)
    assert _run_sender(dingtalk, 20) == ""
    robot = WebhookRobot(dingtalk.webhook_url(TOKEN), max_wait=0.5)
    with pytest.raises(WebhookThrottled) as info:
        robot.send("the 21st")
    assert info.value.code == "local"
    assert dingtalk.count("POST", SEND) == 20


def test_a_penalty_seen_by_one_process_is_honoured_by_the_next(dingtalk: FakeDingTalk) -> None:
    """A 410100 in one cron run keeps the next run from calling DingTalk during the penalty."""
    dingtalk.add_webhook_robot(TOKEN)
    dingtalk.fail_next(
        "POST", SEND, status=200, body={"errcode": 410100, "errmsg": "send too fast"}
    )
    assert _run_sender(dingtalk, 1) == "410100"
    with pytest.raises(WebhookThrottled) as info:
        WebhookRobot(dingtalk.webhook_url(TOKEN)).send("next run")
    assert info.value.code == "410100" and "nothing was sent" in str(info.value)
    assert dingtalk.count("POST", SEND) == 1


def test_file_limiters_share_slots_and_penalties(tmp_path: Path) -> None:
    """Two FileRateLimiter objects on one file (two processes) share one budget."""
    clock = FakeTime()
    path = tmp_path / "pacing.json"
    first = FileRateLimiter(path, limit=3, period=60.0, clock=clock, sleep=clock.sleep)
    second = FileRateLimiter(path, limit=3, period=60.0, clock=clock, sleep=clock.sleep)
    assert [first.try_acquire("r"), second.try_acquire("r"), first.try_acquire("r")] == [0, 0, 0]
    assert second.try_acquire("r") == pytest.approx(60.0)
    clock.now += 60.0
    assert second.try_acquire("r") == 0.0
    first.penalize("r", 600.0)
    assert second.penalty_remaining("r") == pytest.approx(600.0)
    assert second.try_acquire("r") == pytest.approx(600.0)


def test_an_unwritable_pacing_file_degrades_to_this_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A pacing file that cannot be written still paces within the process, with a warning."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    clock = FakeTime()
    limiter = FileRateLimiter(blocker / "pacing.json", limit=1, clock=clock, sleep=clock.sleep)
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        assert limiter.try_acquire("r") == 0.0
        assert limiter.try_acquire("r") > 0
    assert sum("pacing within this process" in r.getMessage() for r in caplog.records) == 1


# -- 10. deadlines and loud waits ---------------------------------------------------------------
def test_a_webhook_send_never_waits_past_its_deadline(dingtalk: FakeDingTalk) -> None:
    """Slot waits of all attempts count against one deadline: no second minute-long wait."""
    dingtalk.add_webhook_robot(TOKEN)
    clock = FakeTime()
    limiter = MemoryRateLimiter(limit=1, clock=clock, sleep=clock.sleep)
    robot = WebhookRobot(
        dingtalk.webhook_url(TOKEN), rate_limiter=limiter, clock=clock, sleep=clock.sleep
    )
    robot.send("first")
    busy = {"errcode": -1, "errmsg": "系统繁忙"}
    dingtalk.fail_next("POST", SEND, status=200, body=busy)
    with pytest.raises(WebhookThrottled) as info:
        robot.send("second")  # waits 60 s, is refused as busy, would need another 60 s
    assert info.value.code == "local"
    assert sum(s for s in clock.slept if s > 1.0) == pytest.approx(60.0)
    assert dingtalk.count("POST", SEND) == 2


def test_a_wait_for_a_slot_is_logged(
    dingtalk: FakeDingTalk, caplog: pytest.LogCaptureFixture
) -> None:
    """The 21st message of a minute waits about a minute and says so first."""
    dingtalk.add_webhook_robot(TOKEN)
    clock = FakeTime()
    limiter = MemoryRateLimiter(limit=1, clock=clock, sleep=clock.sleep)
    robot = WebhookRobot(
        dingtalk.webhook_url(TOKEN), rate_limiter=limiter, clock=clock, sleep=clock.sleep
    )
    robot.send("one")
    with caplog.at_level(logging.WARNING, logger="dingsync"):
        robot.send("two")
    assert clock.slept and clock.slept[0] == pytest.approx(60.0)
    assert any("waiting 60.0 s for a free slot" in r.getMessage() for r in caplog.records)


# -- 11. size and a missing secret --------------------------------------------------------------
def test_an_oversized_webhook_message_is_refused_locally(dingtalk: FakeDingTalk) -> None:
    dingtalk.add_webhook_robot(TOKEN)
    robot = WebhookRobot(dingtalk.webhook_url(TOKEN))
    with pytest.raises(ConfigurationError, match="nothing was sent"):
        robot.send(m.Text("x" * MAX_WEBHOOK_BYTES))
    assert dingtalk.count("POST", SEND) == 0


def test_a_missing_secret_is_named_as_such(dingtalk: FakeDingTalk) -> None:
    """A signed robot without secret= says to set the secret, not to fix the clock."""
    dingtalk.add_webhook_robot(TOKEN, secret=SECRET)
    with pytest.raises(SignatureMismatch) as info:
        WebhookRobot(dingtalk.webhook_url(TOKEN)).send("hello")
    text = str(info.value)
    assert "DINGTALK_WEBHOOK_SECRET" in text and "clock" not in text


def test_without_a_cache_dir_pacing_holds_within_the_process(
    dingtalk: FakeDingTalk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unusable cache directory costs the machine-wide pacing, not the ability to send."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DINGSYNC_CACHE_DIR", str(blocker / "cache"))
    dingtalk.add_webhook_robot(TOKEN)
    robot = WebhookRobot(dingtalk.webhook_url(TOKEN))
    assert isinstance(robot._limiter, MemoryRateLimiter)
    robot.send("still sent")
    assert [x.text for x in dingtalk.webhook_messages] == ["still sent"]
