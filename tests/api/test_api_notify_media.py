"""api.notify (work notifications) and api.media (uploads) against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from dingsync import messages as m
from dingsync.api import ApiClient
from dingsync.errors import ConfigurationError, RequestTimeout, UnsupportedMessage
from dingsync.testing import FakeDingTalk

SEND = "/topapi/message/corpconversation/asyncsend_v2"
UPLOAD = "/media/upload"


def test_work_notice_is_sent_with_the_query_token(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """asyncsend_v2 gets a comma-separated user list and a snake_case msg."""
    task = api.notify.send(m.Markdown("Leave", "approved"), agent_id=123, user_ids=["u1", "u2"])
    notice = dingtalk.work_notices[0]
    assert notice.task_id == task
    assert notice.user_ids == ("u1", "u2")
    assert notice.msg == {"msgtype": "markdown", "markdown": {"title": "Leave", "text": "approved"}}
    request = dingtalk.requests_to("POST", SEND)[0]
    assert "access_token" in request.query
    assert "x-acs-dingtalk-access-token" not in request.headers


def test_silent_drops_show_in_the_send_result(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Duplicate content the same day and unknown users come back from getsendresult."""
    dingtalk.mark_users_invalid("ghost")
    api.notify.send("same text", agent_id=1, user_ids=["u1"])
    task = api.notify.send("same text", agent_id=1, user_ids=["u1", "ghost", "u2"])
    result = api.notify.send_result(task, agent_id=1)
    assert result.forbidden_user_ids == ("u1",)
    assert result.forbidden[0].code == "143106"
    assert result.invalid_user_ids == ("ghost",)
    assert result.unread_user_ids == ("u2",)
    assert not result.all_delivered


def test_action_card_work_notice(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Multi-button cards use btn_json_list with snake_case keys."""
    card = m.ActionCard(
        "Approve?", "expense #7", buttons=[("Yes", "https://y"), ("No", "https://n")]
    )
    api.notify.send(card, agent_id=1, dept_ids=["42"])
    msg = dingtalk.work_notices[0].msg
    assert msg["action_card"]["btn_json_list"][1] == {"title": "No", "action_url": "https://n"}
    assert dingtalk.work_notices[0].dept_ids == ("42",)


def test_notify_validates_locally(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Bad agent ids, no recipients and unsupported types fail before any request."""
    with pytest.raises(ConfigurationError):
        api.notify.send("x", agent_id=0, user_ids=["u1"])
    with pytest.raises(ConfigurationError):
        api.notify.send("x", agent_id=1)
    with pytest.raises(ConfigurationError):
        api.notify.send("x", agent_id=1, user_ids="u1")  # type: ignore[arg-type]
    with pytest.raises(UnsupportedMessage):
        api.notify.send(m.Image("https://example.com/a.png"), agent_id=1, user_ids=["u1"])
    assert dingtalk.count("POST", SEND) == 0


def test_notify_send_is_not_repeated_after_a_timeout(dingtalk: FakeDingTalk) -> None:
    """asyncsend_v2 has no idempotency key: a read timeout is reported, not retried."""
    api = ApiClient(dingtalk.credentials, endpoints=dingtalk.endpoints, timeout=(2.0, 0.3))
    api.access_token("old")
    dingtalk.fail_next("POST", SEND, status=200, body={"errcode": 0, "task_id": 1}, delay=1.0)
    with pytest.raises(RequestTimeout) as info:
        api.notify.send("x", agent_id=1, user_ids=["u1"])
    assert info.value.maybe_sent
    assert dingtalk.count("POST", SEND) == 1


def test_upload_bytes_and_path(dingtalk: FakeDingTalk, api: ApiClient, tmp_path: Path) -> None:
    """Both forms upload as multipart with the 'media' part; the media_id is usable."""
    media = api.media.upload(b"\x89PNG fake", "image", filename="chart.png")
    stored = dingtalk.media[media.media_id]
    assert media.media_id.startswith("@") and stored.data == b"\x89PNG fake"
    assert stored.filename == "chart.png" and stored.type == "image"
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4")
    uploaded = api.media.upload(report, "file")
    assert dingtalk.media[uploaded.media_id].filename == "report.pdf"
    api.robot.send_to_group("cid1", m.File(uploaded.media_id, "report.pdf"))


@pytest.mark.parametrize(
    ("size", "media_type", "name", "limit"),
    [
        (2 * 1024 * 1024 + 1, "voice", "a.mp3", "2.0 MB"),
        (20 * 1024 * 1024 + 1, "image", "a.png", "20.0 MB"),
    ],
)
def test_upload_size_limits_are_checked_first(
    dingtalk: FakeDingTalk, api: ApiClient, size: int, media_type: str, name: str, limit: str
) -> None:
    """An oversized file is refused locally with the limit in the message."""
    with pytest.raises(ConfigurationError, match=limit):
        api.media.upload(b"x" * size, media_type, filename=name)
    assert dingtalk.count("POST", UPLOAD) == 0


def test_upload_extension_and_type_checks(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Wrong extensions, unknown types and nameless bytes are configuration errors."""
    with pytest.raises(ConfigurationError, match="mp4"):
        api.media.upload(b"x", "video", filename="clip.avi")
    with pytest.raises(ConfigurationError):
        api.media.upload(b"x", "sticker", filename="a.png")
    with pytest.raises(ConfigurationError):
        api.media.upload(b"x", "image")
    with pytest.raises(ConfigurationError):
        api.media.upload("/no/such/file.png", "image")
    assert dingtalk.count("POST", UPLOAD) == 0


def test_expired_old_token_on_upload_is_refreshed(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """The old-style 40014 answer on a non-topapi path also triggers one refresh."""
    api.media.upload(b"a", "image", filename="a.png")
    dingtalk.expire_tokens()
    api.media.upload(b"b", "image", filename="b.png")
    assert dingtalk.count("GET", "/gettoken") == 2
    assert len(dingtalk.media) == 2
