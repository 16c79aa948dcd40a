"""The emulator's OpenAPI routes spoken to directly over HTTP (what any client would see)."""

from __future__ import annotations

import json
from typing import Any, Dict

import pytest
import requests

from dingsync.api.webhook import sign
from dingsync.testing import FakeDingTalk


def token(fake: FakeDingTalk, kind: str = "new") -> str:
    return fake.issue_token(kind)[0]


def post(
    fake: FakeDingTalk, path: str, body: Any, *, auth: bool = True, method: str = "POST"
) -> requests.Response:
    headers = {"x-acs-dingtalk-access-token": token(fake)} if auth else {}
    return requests.request(method, fake.api_base + path, json=body, headers=headers, timeout=5)


def oapi(fake: FakeDingTalk, path: str, body: Any, **query: str) -> Dict[str, Any]:
    params = {"access_token": token(fake, "old"), **query}
    result: Dict[str, Any] = requests.post(
        fake.oapi_base + path, params=params, json=body, timeout=5
    ).json()
    return result


def send_body(fake: FakeDingTalk, **changes: Any) -> Dict[str, Any]:
    body = {
        "robotCode": fake.client_id,
        "userIds": ["u1"],
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "hi"}),
    }
    body.update(changes)
    return body


BATCH = "/v1.0/robot/oToMessages/batchSend"


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"msgParam": {"content": "hi"}}, "invalidParameter.msgParam.invalid"),
        ({"msgParam": "not json"}, "invalidParameter.msgParam.invalid"),
        ({"msgParam": json.dumps({"text": "hi"})}, "invalidParameter.param.invalid"),
        ({"msgParam": json.dumps({"content": 3})}, "invalidParameter.param.invalid"),
        ({"msgKey": "sampleActionCard1"}, "invalidParameter.msgKey.invalid"),
        ({"msgKey": ""}, "invalidParameter.msgKey.empty"),
        ({"userIds": [f"u{i}" for i in range(21)]}, "invalidParameter.userIds.overMax"),
        ({"userIds": []}, "invalidParameter.userIds.empty"),
        ({"robotCode": "someone-else"}, "invalidParameter.robotCode.auth"),
        ({"robotCode": ""}, "invalidParameter.robotCode.empty"),
    ],
)
def test_batch_send_validation(dingtalk: FakeDingTalk, changes: Dict[str, Any], code: str) -> None:
    """The documented invalidParameter.* codes, with the new-style error envelope."""
    answer = post(dingtalk, BATCH, send_body(dingtalk, **changes))
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == code and body["requestid"] and answer.headers["x-acs-request-id"]
    assert dingtalk.sent == []


def test_action_card_field_typos_fail_loudly(dingtalk: FakeDingTalk) -> None:
    """sampleActionCard6 wants buttonUrl1, not buttonURL1 (§3.6)."""
    param = {
        "title": "t",
        "text": "x",
        "buttonTitle1": "a",
        "buttonURL1": "u",
        "buttonTitle2": "b",
        "buttonUrl2": "u",
    }
    answer = post(
        dingtalk, BATCH, send_body(dingtalk, msgKey="sampleActionCard6", msgParam=json.dumps(param))
    )
    assert answer.json()["code"] == "invalidParameter.param.invalid"
    assert "buttonURL1" in answer.json()["message"]


def test_new_api_reads_only_the_header(dingtalk: FakeDingTalk) -> None:
    """?access_token= is ignored by the new-style API; a missing header is MissingParameter."""
    answer = requests.post(
        dingtalk.api_base + BATCH,
        params={"access_token": token(dingtalk)},
        json=send_body(dingtalk),
        timeout=5,
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "AuthenticationFailed.MissingParameter"
    bad = requests.post(
        dingtalk.api_base + BATCH,
        headers={"x-acs-dingtalk-access-token": "nope"},
        json=send_body(dingtalk),
        timeout=5,
    )
    assert bad.json()["code"] == "InvalidAuthentication"


def test_old_api_reads_only_the_query_token(dingtalk: FakeDingTalk) -> None:
    """The header is ignored on topapi paths: errcode 88 / sub_code 40000 at HTTP 200."""
    answer = requests.post(
        dingtalk.oapi_base + "/topapi/message/corpconversation/asyncsend_v2",
        headers={"x-acs-dingtalk-access-token": token(dingtalk, "old")},
        json={
            "agent_id": 1,
            "userid_list": "u1",
            "msg": {"msgtype": "text", "text": {"content": "x"}},
        },
        timeout=5,
    )
    assert answer.status_code == 200
    assert answer.json()["errcode"] == 88 and answer.json()["sub_code"] == "40000"


def test_group_message_size_limit(dingtalk: FakeDingTalk) -> None:
    """A group msgParam over 15,000 bytes is refused."""
    body = {
        "robotCode": dingtalk.client_id,
        "openConversationId": "cid1",
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "x" * 15_000}),
    }
    answer = post(dingtalk, "/v1.0/robot/groupMessages/send", body)
    assert answer.status_code == 400 and "overMax" in answer.json()["code"]


def test_read_status_takes_query_parameters(dingtalk: FakeDingTalk) -> None:
    """readStatus is a GET with processQueryKey and robotCode in the query."""
    key = post(dingtalk, BATCH, send_body(dingtalk)).json()["processQueryKey"]
    answer = requests.get(
        dingtalk.api_base + "/v1.0/robot/oToMessages/readStatus",
        params={"processQueryKey": key, "robotCode": dingtalk.client_id},
        headers={"x-acs-dingtalk-access-token": token(dingtalk)},
        timeout=5,
    )
    assert answer.json()["messageReadInfoList"][0]["readStatus"] == "UNREAD"


def test_group_read_query_pages(dingtalk: FakeDingTalk) -> None:
    """groupMessages/query pages readers with maxResults/nextToken."""
    body = {
        "robotCode": dingtalk.client_id,
        "openConversationId": "cid1",
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "x"}),
    }
    key = post(dingtalk, "/v1.0/robot/groupMessages/send", body).json()["processQueryKey"]
    dingtalk.mark_read(key, "a", "b", "c")
    query = {"processQueryKey": key, "openConversationId": "cid1", "robotCode": dingtalk.client_id}
    first = post(dingtalk, "/v1.0/robot/groupMessages/query", {**query, "maxResults": 2}).json()
    assert first["readUserIds"] == ["a", "b"] and first["hasMore"]
    rest = post(
        dingtalk,
        "/v1.0/robot/groupMessages/query",
        {**query, "maxResults": 2, "nextToken": first["nextToken"]},
    )
    assert rest.json()["readUserIds"] == ["c"] and not rest.json()["hasMore"]
    too_many = post(dingtalk, "/v1.0/robot/groupMessages/query", {**query, "maxResults": 201})
    assert too_many.json()["code"] == "invalidParameter.pageSize.invalid"
    for foreign in ("not-a-token", 3, "٣"):  # another service's token, a number, a non-ASCII digit
        answer = post(dingtalk, "/v1.0/robot/groupMessages/query", {**query, "nextToken": foreign})
        assert answer.status_code == 400, foreign
        assert answer.json()["code"] == "invalidParameter.param.invalid"


def test_card_values_must_be_strings(dingtalk: FakeDingTalk) -> None:
    """A non-string cardParamMap value is a 400 param error."""
    body = {"cardTemplateId": "t", "outTrackId": "o", "cardData": {"cardParamMap": {"n": 1}}}
    answer = post(dingtalk, "/v1.0/card/instances", body)
    assert answer.status_code == 400 and answer.json()["code"].startswith("param.")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"outTrackId": "o", "cardData": {}}, "param.cardTemplateIdEmpty"),
        ({"cardTemplateId": "t", "cardData": {}}, "param.outTrackIdEmpty"),
        ({"cardTemplateId": "t", "outTrackId": "o"}, "param.cardPublicDataEmpty"),
    ],
)
def test_card_create_required_fields(
    dingtalk: FakeDingTalk, body: Dict[str, Any], code: str
) -> None:
    """Empty template id, outTrackId or card data are the documented param.* codes."""
    assert post(dingtalk, "/v1.0/card/instances", body).json()["code"] == code


def test_deliver_rejects_bad_space_ids(dingtalk: FakeDingTalk) -> None:
    """openSpaceId must be dtv1.card//TYPE.id[;TYPE.id]."""
    post(
        dingtalk, "/v1.0/card/instances", {"cardTemplateId": "t", "outTrackId": "o", "cardData": {}}
    )
    answer = post(
        dingtalk, "/v1.0/card/instances/deliver", {"outTrackId": "o", "openSpaceId": "IM_GROUP.cid"}
    )
    assert answer.json()["code"] == "param.openSpaceIdInvalid"
    missing_robot = post(
        dingtalk,
        "/v1.0/card/instances/deliver",
        {"outTrackId": "o", "openSpaceId": "dtv1.card//IM_GROUP.cid"},
    )
    assert missing_robot.json()["result"][0]["success"] is False


def test_streaming_guid_dedup(dingtalk: FakeDingTalk) -> None:
    """The same guid twice appends once."""
    post(
        dingtalk, "/v1.0/card/instances", {"cardTemplateId": "t", "outTrackId": "s", "cardData": {}}
    )
    call = {"outTrackId": "s", "guid": "g1", "key": "content", "content": "ab", "isFull": False}
    post(dingtalk, "/v1.0/card/streaming", call, method="PUT")
    post(dingtalk, "/v1.0/card/streaming", call, method="PUT")
    assert dingtalk.cards["s"].streams["content"] == "ab"


# -- custom robots ---------------------------------------------------------------------------------
def robot_post(fake: FakeDingTalk, body: Any, **query: str) -> Dict[str, Any]:
    result: Dict[str, Any] = requests.post(
        fake.oapi_base + "/robot/send", params=query, json=body, timeout=5
    ).json()
    return result


TEXT = {"msgtype": "text", "text": {"content": "alert: hi"}}


def test_signature_window_follows_the_emulator_clock(dingtalk: FakeDingTalk) -> None:
    """A timestamp is accepted within ±1 h of the emulator's clock only."""
    dingtalk.add_webhook_robot("t1", secret="SECs")
    now_ms = dingtalk.now_ms()
    good = robot_post(
        dingtalk, TEXT, access_token="t1", timestamp=str(now_ms), sign=sign("SECs", now_ms)
    )
    assert good["errcode"] == 0
    dingtalk.advance(3601)
    late = robot_post(
        dingtalk, TEXT, access_token="t1", timestamp=str(now_ms), sign=sign("SECs", now_ms)
    )
    assert late == {
        "errcode": 310000,
        "errmsg": "invalid timestamp",
        "request_id": late["request_id"],
    }
    fresh = dingtalk.now_ms()
    wrong = robot_post(
        dingtalk, TEXT, access_token="t1", timestamp=str(fresh), sign=sign("SECx", fresh)
    )
    assert wrong["errmsg"] == "sign not match"


def test_unknown_webhook_token(dingtalk: FakeDingTalk) -> None:
    """An unknown token is 300005 'token is not exist' (the live probe's answer)."""
    answer = robot_post(dingtalk, TEXT, access_token="missing")
    assert (answer["errcode"], answer["errmsg"]) == (300005, "token is not exist")


def test_webhook_rate_limit_and_penalty(dingtalk: FakeDingTalk) -> None:
    """The 21st message within 60 s earns 410100, which lasts 10 minutes of emulator time."""
    dingtalk.add_webhook_robot("t2")
    for _ in range(20):
        assert robot_post(dingtalk, TEXT, access_token="t2")["errcode"] == 0
    assert robot_post(dingtalk, TEXT, access_token="t2")["errcode"] == 410100
    dingtalk.advance(120)
    assert robot_post(dingtalk, TEXT, access_token="t2")["errcode"] == 410100
    dingtalk.advance(600)
    assert robot_post(dingtalk, TEXT, access_token="t2")["errcode"] == 0
    assert dingtalk.webhook_robots["t2"].throttled == 2


def test_webhook_message_validation(dingtalk: FakeDingTalk) -> None:
    """Unsupported msgtypes are 400105; missing fields 40035; msgUuid dedups."""
    dingtalk.add_webhook_robot("t3")
    assert (
        robot_post(dingtalk, {"msgtype": "image", "image": {}}, access_token="t3")["errcode"]
        == 400105
    )
    assert (
        robot_post(dingtalk, {"msgtype": "link", "link": {"title": "x"}}, access_token="t3")[
            "errcode"
        ]
        == 40035
    )
    body = {**TEXT, "msgUuid": "u-1"}
    robot_post(dingtalk, body, access_token="t3")
    robot_post(dingtalk, body, access_token="t3")
    assert len(dingtalk.webhook_messages) == 1


def test_webhook_requires_json_content_type(dingtalk: FakeDingTalk) -> None:
    """A form body is 43004."""
    dingtalk.add_webhook_robot("t4")
    answer = requests.post(
        dingtalk.oapi_base + "/robot/send?access_token=t4", data="x=1", timeout=5
    )
    assert answer.json()["errcode"] == 43004


# -- media, notifications, files ---------------------------------------------------------------------
def test_media_upload_limits(dingtalk: FakeDingTalk) -> None:
    """Type, extension and size are checked with the legacy codes."""
    url = dingtalk.oapi_base + "/media/upload"
    params = {"access_token": token(dingtalk, "old")}
    ok = requests.post(
        url, params=params, data={"type": "voice"}, files={"media": ("a.amr", b"x")}, timeout=5
    )
    assert ok.json()["media_id"].startswith("@")
    big = requests.post(
        url,
        params=params,
        data={"type": "voice"},
        files={"media": ("a.amr", b"x" * (2 * 1024 * 1024 + 1))},
        timeout=5,
    )
    assert big.json()["errcode"] == 40006
    ext = requests.post(
        url, params=params, data={"type": "image"}, files={"media": ("a.txt", b"x")}, timeout=5
    )
    assert ext.json()["errcode"] == 40005
    kind = requests.post(
        url, params=params, data={"type": "gif"}, files={"media": ("a.gif", b"x")}, timeout=5
    )
    assert kind.json()["errcode"] == 40004


def test_notification_daily_limit(dingtalk: FakeDingTalk) -> None:
    """Past the per-user daily limit, recipients are forbidden with code 143105."""
    dingtalk.notify_daily_limit = 2
    tasks = [
        oapi(
            dingtalk,
            "/topapi/message/corpconversation/asyncsend_v2",
            {
                "agent_id": 9,
                "userid_list": "u1",
                "msg": {"msgtype": "text", "text": {"content": str(i)}},
            },
        )["task_id"]
        for i in range(3)
    ]
    result = oapi(
        dingtalk,
        "/topapi/message/corpconversation/getsendresult",
        {"agent_id": 9, "task_id": tasks[-1]},
    )
    assert result["send_result"]["forbidden_list"] == [
        {"code": "143105", "count": 2, "userid": "u1"}
    ]
    dingtalk.advance(86400)
    fresh = oapi(
        dingtalk,
        "/topapi/message/corpconversation/asyncsend_v2",
        {"agent_id": 9, "userid_list": "u1", "msg": {"msgtype": "text", "text": {"content": "0"}}},
    )
    assert dingtalk.work_notices[-1].delivered_to == ("u1",)
    expired = oapi(
        dingtalk,
        "/topapi/message/corpconversation/getsendresult",
        {"agent_id": 9, "task_id": tasks[0]},
    )
    assert expired["errcode"] != 0 and fresh["errcode"] == 0


def test_download_urls_expire(dingtalk: FakeDingTalk) -> None:
    """Blob URLs need no token and stop working after download_url_ttl (emulator clock)."""
    dingtalk.add_file("c1", b"payload", filename="p.bin")
    body = {"downloadCode": "c1", "robotCode": dingtalk.client_id}
    url = post(dingtalk, "/v1.0/robot/messageFiles/download", body).json()["downloadUrl"]
    assert requests.get(url, timeout=5).content == b"payload"
    dingtalk.advance(dingtalk.download_url_ttl + 1)
    assert requests.get(url, timeout=5).status_code == 403


def test_fail_next_works_on_openapi_routes(dingtalk: FakeDingTalk) -> None:
    """The core's failure injection applies to every route of this module."""
    dingtalk.fail_next("POST", BATCH, status=503)
    assert post(dingtalk, BATCH, send_body(dingtalk)).status_code == 503
    assert post(dingtalk, BATCH, send_body(dingtalk)).status_code == 200
    assert dingtalk.count("POST", BATCH) == 2


def test_records_have_useful_reprs(dingtalk: FakeDingTalk) -> None:
    """Recorded webhook robots never show their token or secret."""
    dingtalk.add_webhook_robot("secret-token", secret="SECvalue")
    text = repr(dingtalk.webhook_robots["secret-token"])
    assert "secret-token" not in text and "SECvalue" not in text
