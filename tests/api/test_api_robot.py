"""api.robot against the emulator: sends, chunking, recall, read status, downloads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from dingsync import messages as m
from dingsync.api import ApiClient
from dingsync.errors import ApiError, ConfigurationError, ConnectionLost, InvalidRequest
from dingsync.testing import FakeDingTalk

BATCH = "/v1.0/robot/oToMessages/batchSend"

EVERY_OPENAPI_MESSAGE = [
    m.Text("hello"),
    m.Markdown("Title", "**bold**"),
    m.Image("@lAimage"),
    m.Link("Title", "text", "https://example.com", pic_url="@lApic"),
    m.ActionCard("T", "body", buttons=[("One", "https://x/1")]),
    m.ActionCard("T", "body", buttons=[("One", "https://x/1"), ("Two", "https://x/2")]),
    m.ActionCard("T", "body", buttons=[(f"B{i}", f"https://x/{i}") for i in range(3)]),
    m.ActionCard("T", "body", buttons=[(f"B{i}", f"https://x/{i}") for i in range(4)]),
    m.ActionCard("T", "body", buttons=[(f"B{i}", f"https://x/{i}") for i in range(5)]),
    m.ActionCard(
        "T", "body", buttons=[("Yes", "https://y"), ("No", "https://n")], orientation="horizontal"
    ),
    m.Audio("@lAvoice", duration_ms=4000),
    m.File("@lAfile", "report.xlsx"),
    m.Video("@lAvideo", "@lAcover", duration=30, width=640, height=480),
]


@pytest.mark.parametrize("message", EVERY_OPENAPI_MESSAGE, ids=lambda x: x.to_openapi()[0])
def test_every_message_type_passes_the_emulator_schema(
    dingtalk: FakeDingTalk, api: ApiClient, message: m.Message
) -> None:
    """Each msgKey rendering has exactly the keys DingTalk documents (§3.6)."""
    api.robot.send_to_group("cid1", message)
    assert dingtalk.sent[-1].msg_key == message.to_openapi()[0]


def test_45_users_take_3_calls(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Recipients are sent in chunks of 20."""
    users = [f"user{i}" for i in range(45)]
    result = api.robot.send_to_users(users, "hi")
    assert dingtalk.count("POST", BATCH) == 3
    assert len(result.process_query_keys) == 3
    assert [len(x.user_ids) for x in dingtalk.sent] == [20, 20, 5]
    assert result.all_delivered


def test_a_failed_later_chunk_reports_who_got_the_message(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """When chunk 2 of 3 is refused, the error's .partial lists the sent keys and unsent users."""
    users = [f"user{i}" for i in range(45)]
    dingtalk.mark_users_flow_controlled("user3")
    dingtalk.fail_next(
        "POST",
        BATCH,
        status=400,
        body={"code": "invalidParameter.param.invalid", "message": "bad", "requestid": "r"},
        after=1,
    )
    with pytest.raises(InvalidRequest) as info:
        api.robot.send_to_users(users, "hi")
    partial = info.value.partial
    assert len(partial.process_query_keys) == 1
    assert partial.flow_controlled_user_ids == ("user3",)
    assert partial.unsent_user_ids == tuple(users[20:])
    assert not partial.all_delivered
    assert [len(x.user_ids) for x in dingtalk.sent] == [20]


def test_undelivered_users_are_reported(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Invalid and flow-controlled ids come back in the result instead of being hidden."""
    dingtalk.mark_users_invalid("ghost")
    dingtalk.mark_users_flow_controlled("busy")
    result = api.robot.send_to_users(["ok", "ghost", "busy", "ok"], m.Markdown("t", "x"))
    assert result.invalid_user_ids == ("ghost",)
    assert result.flow_controlled_user_ids == ("busy",)
    assert not result.all_delivered
    assert dingtalk.sent[0].delivered_to == ("ok",)
    assert dingtalk.sent[0].user_ids == ("ok", "ghost", "busy")


def test_user_ids_must_be_a_list(api: ApiClient) -> None:
    """A bare string is a mistake, not 11 one-letter users."""
    with pytest.raises(ConfigurationError):
        api.robot.send_to_users("manager593", "hi")
    with pytest.raises(ConfigurationError):
        api.robot.send_to_users([], "hi")


def test_group_send_records_the_message(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """The group send carries robotCode = client id and a JSON-string msgParam."""
    key = api.robot.send_to_group("cidABC==", m.Markdown("Nightly", "all green"))
    sent = dingtalk.group_messages("cidABC==")[0]
    assert sent.process_query_key == key
    assert sent.robot_code == dingtalk.client_id
    assert sent.msg_param == {"title": "Nightly", "text": "all green"}


def test_oversized_group_message_is_refused_locally(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Over 15,000 bytes of msgParam fails before any request, naming the limit."""
    with pytest.raises(ConfigurationError, match="15,000"):
        api.robot.send_to_group("cid1", m.Text("字" * 6000))
    assert dingtalk.count("POST", "/v1.0/robot/groupMessages/send") == 0


def test_webhook_only_messages_are_refused(api: ApiClient) -> None:
    """A FeedCard has no OpenAPI form."""
    with pytest.raises(ConfigurationError):
        api.robot.send_to_group("cid1", m.FeedCard([("a", "https://a", "https://a.png")]))


def test_recall_users_and_group(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Recalls report which keys worked and why the others did not."""
    keys = api.robot.send_to_users(["u1"], "oops").process_query_keys
    result = api.robot.recall_users(list(keys) + ["unknown"])
    assert result.succeeded == keys
    assert "unknown" in result.failed
    assert dingtalk.sent[0].recalled
    group_key = api.robot.send_to_group("cid1", "oops")
    assert api.robot.recall_group("cid1", [group_key]).succeeded == (group_key,)
    again = api.robot.recall_group("cid1", [group_key])
    assert again.failed == {group_key: "message already recalled"}


def test_read_status(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """Read state per recipient, as marked in the emulator."""
    key = api.robot.send_to_users(["u1", "u2"], "hi").process_query_keys[0]
    dingtalk.mark_read(key, "u2")
    status = api.robot.read_status(key)
    assert status.read_user_ids == ("u2",)
    assert {u.user_id for u in status.users} == {"u1", "u2"}


def test_read_status_of_an_unknown_key(api: ApiClient) -> None:
    """An unknown processQueryKey is a validation error."""
    with pytest.raises(InvalidRequest):
        api.robot.read_status("nope")


def test_private_chat_send_recall_and_read(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A private-chat message goes out with its cool app code, can be recalled only through
    the private-chat recall, and its readers come back from the private-chat query."""
    key = api.robot.send_to_private_chat("cidP2P==", m.Text("hi"), cool_app_code="COOLAPP1")
    (sent,) = dingtalk.group_messages("cidP2P==")
    assert (sent.kind, sent.process_query_key, sent.msg_param) == (
        "private",
        key,
        {"content": "hi"},
    )
    dingtalk.mark_read(key, "u2")
    assert api.robot.private_chat_read_status(key).read_user_ids == ("u2",)
    with pytest.raises(InvalidRequest):
        api.robot.group_read_status(key)  # not a group message
    assert api.robot.recall_group("cidP2P==", [key]).failed == {key: "processQueryKey not found"}
    assert api.robot.recall_private_chat("cidP2P==", [key]).succeeded == (key,)


def test_private_chat_send_without_the_cool_app_code_is_refused_locally(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """DingTalk requires coolAppCode for private chats: an empty one fails before any request."""
    with pytest.raises(ConfigurationError, match="cool_app_code"):
        api.robot.send_to_private_chat("cidP2P==", "hi", cool_app_code="")
    assert dingtalk.count("POST", "/v1.0/robot/privateChatMessages/send") == 0


def test_group_read_status_follows_every_page(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """450 readers at 200 per page: three queries, every reader once, in order."""
    key = api.robot.send_to_group("cidBIG==", "all hands")
    readers = [f"user{i:03d}" for i in range(450)]
    dingtalk.mark_read(key, *readers)
    status = api.robot.group_read_status(key, open_conversation_id="cidBIG==")
    assert status.send_status == "SUCCESS"
    assert status.read_user_ids == tuple(sorted(readers))
    assert dingtalk.count("POST", "/v1.0/robot/groupMessages/query") == 3
    small = api.robot.group_read_status(key, page_size=100)
    assert small.read_user_ids == status.read_user_ids
    assert dingtalk.count("POST", "/v1.0/robot/groupMessages/query") == 3 + 5


def test_a_repeated_page_token_ends_the_paging(dingtalk: FakeDingTalk, api: ApiClient) -> None:
    """A server that keeps answering hasMore with the token it was just given would page
    forever: the paging stops at the repeat and returns what it read."""
    page = {"sendStatus": "SUCCESS", "readUserIds": ["u1"], "hasMore": True, "nextToken": "t1"}
    dingtalk.fail_next("POST", "/v1.0/robot/groupMessages/query", status=200, body=page, times=5)
    status = api.robot.group_read_status("key")
    assert status.read_user_ids == ("u1", "u1")
    assert dingtalk.count("POST", "/v1.0/robot/groupMessages/query") == 2


@pytest.mark.parametrize("page_size", [0, 201, "200"])
def test_group_read_page_size_is_checked_locally(
    dingtalk: FakeDingTalk, api: ApiClient, page_size: object
) -> None:
    """maxResults above 200 is DingTalk's invalidParameter.pageSize.invalid: refused before any
    request, with the allowed range in the message."""
    with pytest.raises(ConfigurationError, match="1..200"):
        api.robot.group_read_status("key", page_size=page_size)  # type: ignore[arg-type]
    assert dingtalk.count("POST", "/v1.0/robot/groupMessages/query") == 0


# -- downloads -----------------------------------------------------------------------------------
def test_download_url_and_download(dingtalk: FakeDingTalk, api: ApiClient, tmp_path: Path) -> None:
    """A download code resolves to a URL; the file lands complete, progress is reported."""
    data = os.urandom(300_000)
    dingtalk.add_file("code-1", data, filename="report.pdf")
    assert api.robot.download_url("code-1").startswith(dingtalk.oapi_base)
    seen: List[Tuple[int, Optional[int]]] = []
    path = api.robot.download(
        "code-1", tmp_path / "out.pdf", progress=lambda d, t: seen.append((d, t))
    )
    assert Path(path).read_bytes() == data
    assert seen[-1] == (len(data), len(data))
    assert os.listdir(tmp_path) == ["out.pdf"]


def test_download_into_a_directory(dingtalk: FakeDingTalk, api: ApiClient, tmp_path: Path) -> None:
    """A directory destination gets the file's own name."""
    dingtalk.add_file("code-2", b"hello", filename="notes.txt")
    assert api.robot.download("code-2", tmp_path) == str(tmp_path / "notes.txt")


def test_failed_download_leaves_no_partial_file(
    dingtalk: FakeDingTalk, api: ApiClient, tmp_path: Path
) -> None:
    """An exception mid-stream removes the temporary file and never creates dest."""
    dingtalk.add_file("code-3", os.urandom(500_000), filename="big.bin")

    def explode(done: int, total: Optional[int]) -> None:
        if done > 100_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        api.robot.download("code-3", tmp_path / "big.bin", progress=explode)
    assert os.listdir(tmp_path) == []


def test_dropped_download_is_retried_then_complete(
    dingtalk: FakeDingTalk, api: ApiClient, tmp_path: Path
) -> None:
    """A connection dropped on the blob is retried from scratch; a persistent one leaves nothing."""
    dingtalk.add_file("code-4", b"x" * 1000, filename="x.bin")
    url = api.robot.download_url("code-4")
    blob_path = url.split(dingtalk.oapi_base, 1)[1]
    dingtalk.fail_next("GET", blob_path, reset=True)
    api._http.download_to(url, str(tmp_path / "x.bin"))
    assert (tmp_path / "x.bin").read_bytes() == b"x" * 1000
    os.unlink(tmp_path / "x.bin")
    dingtalk.fail_next("GET", blob_path, reset=True, times=10)
    with pytest.raises(ConnectionLost):
        api._http.download_to(url, str(tmp_path / "x.bin"))
    assert os.listdir(tmp_path) == []
    assert dingtalk.count("GET", blob_path) == 2 + 4


def test_expired_download_url(dingtalk: FakeDingTalk, api: ApiClient, tmp_path: Path) -> None:
    """An expired URL is an ApiError that says how to recover; no file is left."""
    dingtalk.add_file("code-5", b"data", filename="a.bin")
    url = api.robot.download_url("code-5")
    dingtalk.advance(dingtalk.download_url_ttl + 1)
    with pytest.raises(ApiError, match="download_url"):
        api._http.download_to(url, str(tmp_path / "a.bin"))
    assert os.listdir(tmp_path) == []


def test_unknown_download_code(api: ApiClient, tmp_path: Path) -> None:
    """An unknown code is a validation error before any file is created."""
    with pytest.raises(InvalidRequest):
        api.robot.download("missing", tmp_path / "x")
    assert os.listdir(tmp_path) == []


def test_download_to_a_missing_directory(
    dingtalk: FakeDingTalk, api: ApiClient, tmp_path: Path
) -> None:
    """A destination in a directory that does not exist fails before any request."""
    dingtalk.add_file("code-6", b"data")
    with pytest.raises(ConfigurationError, match="not a directory"):
        api.robot.download("code-6", tmp_path / "missing" / "x.bin")
    assert dingtalk.count("POST", "/v1.0/robot/messageFiles/download") == 0


def test_a_chunk_that_may_have_gone_out_is_not_called_unsent(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    """A dropped connection on chunk 2 puts those users in maybe_sent, the rest in unsent."""
    users = [f"user{i}" for i in range(45)]
    dingtalk.fail_next("POST", BATCH, reset=True, after=1)
    with pytest.raises(ConnectionLost) as info:
        api.robot.send_to_users(users, "hi")
    partial = info.value.partial
    assert partial.delivered_user_ids == tuple(users[:20])
    assert partial.maybe_sent_user_ids == tuple(users[20:40])
    assert partial.unsent_user_ids == tuple(users[40:])
    assert not partial.all_delivered


def test_a_failed_first_chunk_still_says_who_was_not_sent(
    dingtalk: FakeDingTalk, api: ApiClient
) -> None:
    users = [f"user{i}" for i in range(25)]
    dingtalk.fail_next("POST", BATCH, status=400, body={"code": "param.invalid", "message": "x"})
    with pytest.raises(InvalidRequest) as info:
        api.robot.send_to_users(users, "hi")
    assert info.value.partial.delivered_user_ids == ()
    assert info.value.partial.unsent_user_ids == tuple(users)
