"""The chat window's server side: the page and its files, the event feed, the rest of the
control API over HTTP, uploads, read status, and transcripts (record, save, replay)."""

from __future__ import annotations

import base64
import collections
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
import requests

import dingsync
from dingsync.testing import FakeDingTalk
from dingsync.testing._chat_feed import feed_of
from dingsync.testing.transcripts import (
    assert_transcript,
    load_transcript,
    record_transcript,
    replay_transcript,
)

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
from benchmarks.chromium import running_bot  # noqa: E402
from examples import calc  # noqa: E402

PAGE_BUDGET = 150 * 1024  # HTML + JS + CSS, uncompressed


def assets(html: str) -> List[str]:
    return re.findall(r'(?:src|href)="(/_emulator/static/[^"]+)"', html)


def test_root_url_serves_the_page_and_every_asset_it_names(
    fake: FakeDingTalk, http: requests.Session
) -> None:
    """GET / is the chat window; each script and stylesheet it links is served with its type."""
    page = http.get(fake.api_base + "/")
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    names = assets(page.text)
    assert sorted(names) == [
        "/_emulator/static/chat.css",
        "/_emulator/static/chat.js",
        "/_emulator/static/vendor/marked.umd.js",
        "/_emulator/static/vendor/purify.min.js",
    ]
    for name in names:
        response = http.get(fake.api_base + name)
        assert response.status_code == 200, name
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        assert response.headers["Content-Type"].startswith(kind)


def test_page_weight_is_within_budget(fake: FakeDingTalk, http: requests.Session) -> None:
    """HTML + JS + CSS of the window stay under 150 KB uncompressed."""
    html = http.get(fake.api_base + "/").content
    total = len(html) + sum(len(http.get(fake.api_base + n).content) for n in assets(html.decode()))
    assert total <= PAGE_BUDGET, f"the page weighs {total} bytes"


@pytest.mark.parametrize("name", ["../_fake.py", "vendor/../../_http.py", "nope.js", ""])
def test_static_route_serves_only_the_static_folder(
    fake: FakeDingTalk, http: requests.Session, name: str
) -> None:
    """Unknown names and paths that climb out of the folder are a 404, never a source file."""
    response = http.get(fake.api_base + "/_emulator/static/" + name)
    assert response.status_code == 404
    assert response.json()["code"] == "InvalidAction.NotFound"


def read_events(
    http: requests.Session, url: str, count: int = 0, until: str = "", **headers: str
) -> List[Dict]:
    """Events of the feed at ``url``: ``count`` of them, or up to the first API call to ``until``."""
    events: List[Dict[str, Any]] = []
    with http.get(url, stream=True, timeout=10, headers=headers) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for line in response.iter_lines(chunk_size=1, decode_unicode=True):
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if len(events) == count or (until and events[-1].get("path") == until):
                    break
    return events


def test_feed_streams_the_frame_ack_reply_and_api_call_of_a_message(
    http: requests.Session,
) -> None:
    """One chat turn appears in the feed as a connection, the push, its ack (with latency), the
    session-webhook reply and the OpenAPI calls; a reconnect resumes after Last-Event-ID."""
    with running_bot(calc.route) as (fake, _):
        mid = fake.push_chatbot("1+1", conversation_id="cid-feed")
        fake.wait_for_ack(mid)
        fake.wait_for_reply()
        events = read_events(http, fake.api_base + "/_emulator/feed", 6)
        kinds = [e["kind"] for e in events]
        assert kinds[:1] == ["connection"] and {"push", "ack", "reply", "api"} <= set(kinds)
        assert [e["seq"] for e in events] == list(range(1, 7))
        push = next(e for e in events if e["kind"] == "push")
        assert push["messageId"] == mid and push["data"]["text"]["content"] == "1+1"
        ack = next(e for e in events if e["kind"] == "ack")
        assert ack["code"] == 200 and ack["latencyMs"] >= 0
        reply = next(e for e in events if e["kind"] == "reply")
        assert reply["conversationId"] == "cid-feed" and reply["body"]["text"]["content"] == "2"
        later = read_events(http, fake.api_base + "/_emulator/feed", 1, **{"Last-Event-ID": "5"})
        assert later[0]["seq"] == 6


def test_feed_never_shows_secrets_of_api_calls(http: requests.Session) -> None:
    """The inspector's copy of the token and gateway calls has the secret, token and ticket
    masked."""
    with running_bot(calc.route) as (fake, _):
        fake.wait_for_ack(fake.push_chatbot("1+1"))
        fake.wait_for_reply()
        events = read_events(http, fake.api_base + "/_emulator/feed", until="/robot/sendBySession")
    text = json.dumps([e for e in events if e["kind"] == "api"])
    assert fake.client_secret not in text
    opened = next(e for e in events if e["kind"] == "api" and "gateway" in e["path"])
    assert opened["request"]["clientSecret"] == "***" and opened["response"]["ticket"] == "***"
    reply = next(e for e in events if e["kind"] == "api" and e["path"] == "/robot/sendBySession")
    assert reply["query"] == {"session": "***"}


def test_feed_reports_read_and_recalled_robot_messages(
    fake: FakeDingTalk, http: requests.Session
) -> None:
    """A robot message appears in the feed when sent, again when read and again when recalled."""
    feed = feed_of(fake)
    api = dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints)
    seen: List[Dict[str, Any]] = []

    def sent_events() -> List[Dict[str, Any]]:
        seen.extend(e for e in feed.since(seen[-1]["seq"] if seen else 0) if e["kind"] == "sent")
        return seen

    try:
        key = api.robot.send_to_users(
            ["user-1"], dingsync.messages.Text("hello")
        ).process_query_keys[0]
        assert [(e["readBy"], e["recalled"]) for e in sent_events()] == [([], False)]
        http.post(
            fake.api_base + "/_emulator/read", json={"processQueryKey": key, "userIds": ["user-1"]}
        ).raise_for_status()
        api.robot.recall_users([key])
    finally:
        api.close()
    assert [(e["readBy"], e["recalled"]) for e in sent_events()] == [
        ([], False),
        (["user-1"], True),
    ]
    assert seen[0]["msgParam"] == {"content": "hello"} and seen[0]["userIds"] == ["user-1"]


def post(http: requests.Session, fake: FakeDingTalk, path: str, body: Any = None) -> Any:
    return http.post(fake.api_base + "/_emulator/" + path, json=body or {})


def test_fault_knobs_over_http(http: requests.Session) -> None:
    """ping, stall/resume, disconnect and drop act on the bot's connection; connections and
    violations read the gateway's state."""
    with running_bot(calc.route) as (fake, _):
        conn = fake.connections[0].id
        pinged = post(http, fake, "ping").json()
        assert pinged["connection"] == conn
        assert fake.wait_for_ack(pinged["messageId"])["code"] == 200
        assert post(http, fake, "stall").json() == {"connection": conn}
        assert fake.connections[0].stalled
        assert post(http, fake, "resume").json() == {"stalled": []}
        assert post(http, fake, "drop").json() == {"connection": conn}
        fake.wait_until(lambda: len(fake.live_connections) == 1 and fake.connections[-1].id != conn)
        second = fake.connections[-1].id
        told = post(http, fake, "disconnect", {"close_after": 0.5}).json()
        assert told["connection"] == second and "messageId" in told
        fake.wait_until(lambda: len(fake.connections) == 3 and not fake.connections[1].alive)
        listed = http.get(fake.api_base + "/_emulator/connections").json()["connections"]
        assert [c["id"] for c in listed][:2] == [conn, second]
        assert [c["alive"] for c in listed] == [False, False, True]
        assert listed[0]["closeCode"] == 1006
        assert http.get(fake.api_base + "/_emulator/violations").json() == {"violations": []}


def test_redelivery_knob_sets_and_clears_the_timeouts(
    fake: FakeDingTalk, http: requests.Session
) -> None:
    """POST redelivery turns redelivery of un-acked frames on (seconds) and off (null)."""
    assert post(http, fake, "redelivery", {"events": 5, "callbacks": 2.5}).json() == {
        "events": 5.0,
        "callbacks": 2.5,
    }
    assert fake.redeliver_callbacks_after == 2.5
    assert post(http, fake, "redelivery", {"callbacks": None}).json()["callbacks"] is None
    bad = post(http, fake, "redelivery", {"events": -1})
    assert bad.status_code == 400 and "events must be" in bad.json()["message"]


def test_knobs_without_a_connection_answer_409(fake: FakeDingTalk, http: requests.Session) -> None:
    """With no bot connected, a knob says so instead of failing with a 500."""
    for name in ("ping", "drop", "stall", "disconnect"):
        response = post(http, fake, name)
        assert response.status_code == 409, name
        assert response.json()["code"] == "NoConnection"
    unknown = post(http, fake, "drop", {"connection": "nope"})
    assert unknown.status_code == 400 and "unknown connection" in unknown.json()["message"]


def test_uploaded_file_reaches_the_bot_as_a_download_code(
    http: requests.Session, tmp_path: Path
) -> None:
    """A file sent from the window is fetched by the bot through messageFiles/download."""
    got: List[bytes] = []
    route = dingsync.Router()

    @route.chatbot
    def on_file(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        assert ctx.api is not None
        path = ctx.api.robot.download(msg.content.download_code or "", tmp_path / "got.txt")
        got.append(Path(path).read_bytes())

    with running_bot(route) as (fake, _):
        data = base64.b64encode(b"hello file").decode()
        code = post(http, fake, "upload", {"filename": "a.txt", "data": data}).json()
        sent = post(
            http,
            fake,
            "chatbot",
            {"msgtype": "file", "content": {"downloadCode": code["downloadCode"]}, "text": ""},
        ).json()
        assert fake.wait_for_ack(sent["messageId"])["code"] == 200
    assert got == [b"hello file"]


def test_transcript_records_replays_green_and_red(fake: FakeDingTalk, tmp_path: Path) -> None:
    """A recorded chat replays without differences against the same bot and names the turn
    whose answer changed against another."""
    with running_bot(calc.route, fake):
        for text in ("1+1", "hello"):
            fake.wait_for_ack(fake.push_chatbot(text, conversation_id="cid-t"))
        fake.wait_until(lambda: len(fake.replies) == 2)
    transcript = record_transcript(fake, "cid-t")
    assert [t["text"] for t in transcript["turns"]] == ["1+1", "hello"]
    assert transcript["turns"][0]["bot"] == [
        {"via": "reply", "msgtype": "text", "body": {"msgtype": "text", "text": {"content": "2"}}}
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(transcript))
    assert_transcript(path, calc.route)

    changed = dingsync.Router()

    @changed.chatbot
    def other(msg: dingsync.ChatbotMessage, ctx: dingsync.Context) -> None:
        ctx.reply_text("I am a different bot" if msg.text == "hello" else calc.answer(msg.text))

    with pytest.raises(AssertionError, match=r"turn 2 \(user-1: 'hello'\), answer 1: expected"):
        assert_transcript(path, changed, settle=0.2)
    assert replay_transcript(transcript, calc.route).turns == 2


def test_transcript_route_and_bad_transcripts(fake: FakeDingTalk, http: requests.Session) -> None:
    """GET transcript is a JSON download; an unknown conversation is a 404; a file that is not
    a transcript is refused with what to do."""
    fake.push_chatbot("hi", conversation_id="cid-x")
    response = http.get(
        fake.api_base + "/_emulator/transcript", params={"conversation_id": "cid-x"}
    )
    assert response.headers["Content-Disposition"] == 'attachment; filename="transcript-cid-x.json"'
    assert load_transcript(response.json())["turns"][0]["text"] == "hi"
    missing = http.get(fake.api_base + "/_emulator/transcript", params={"conversation_id": "no"})
    assert missing.status_code == 404 and missing.json()["code"] == "ConversationNotFound"
    with pytest.raises(ValueError, match="not a dingsync transcript"):
        load_transcript({"turns": []})


def test_dingsync_emulator_prints_the_chat_window_and_how_to_point_each_sdk(
    http: requests.Session,
) -> None:
    """`dingsync emulator` names the chat window's URL (which serves the page and its assets)
    and says how the official SDKs reach it: Python by the env var, Go by WithOpenApiHost, Node
    and Java hard-coded."""
    process = subprocess.Popen(
        [sys.executable, "-m", "dingsync.cli", "emulator"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines: List[str] = []
        while not lines or not lines[-1].startswith("Press Ctrl-C"):
            line = process.stdout.readline()
            assert line, f"the emulator exited: {process.stderr.read() if process.stderr else ''}"
            lines.append(line.rstrip("\n"))
        out = "\n".join(lines)
        url = re.search(r"chat window: (http://127\.0\.0\.1:\d+/)", out)
        assert url, out
        page = http.get(url.group(1), timeout=5)
        assert page.status_code == 200 and "chat.js" in page.text
        assert http.get(url.group(1) + "_emulator/static/chat.js", timeout=5).status_code == 200
        assert "Python (dingtalk-stream): reads DINGTALK_OPENAPI_ENDPOINT" in out
        assert f'client.WithOpenApiHost("{url.group(1).rstrip("/")}")' in out
        assert "Node and Java hard-code their gateway URL" in out
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=20)


def test_feed_keeps_up_when_the_request_log_is_full(fake: FakeDingTalk) -> None:
    """Once the bounded request log is full (its length no longer grows), new API calls still
    reach the feed."""
    fake.exchanges = collections.deque(maxlen=3)  # type: ignore[misc]
    feed = feed_of(fake)
    paths: List[str] = []

    def call(n: int) -> None:
        requests.get(f"{fake.api_base}/v1.0/nope/{n}", timeout=5)
        paths.extend(e["path"] for e in feed.since(0) if e["kind"] == "api")

    for n in range(5):
        call(n)
    assert sorted(set(paths)) == [f"/v1.0/nope/{n}" for n in range(5)]


def test_transcript_helpers_are_public_in_dingsync_testing() -> None:
    """The replay helpers are importable from dingsync.testing and pinned in both __all__s."""
    import dingsync.testing as testing
    from dingsync.testing import transcripts

    names = {"ReplayResult", "assert_transcript", "load_transcript", "record_transcript"}
    names |= {"replay_transcript", "running_router"}
    assert set(transcripts.__all__) == names | {"TRANSCRIPT_VERSION"}
    assert names <= set(testing.__all__)
    assert all(getattr(testing, n) is getattr(transcripts, n) for n in names)


def test_knobs_refuse_unknown_fields_and_bad_values(
    fake: FakeDingTalk, http: requests.Session
) -> None:
    """A typo in a knob's body is a 400 naming the known fields, before anything happens."""
    with running_bot(calc.route, fake):
        typo = post(http, fake, "disconnect", {"close_afer": 1})
        assert typo.status_code == 400
        assert (
            typo.json()["message"] == "unknown field(s) close_afer; known: close_after, connection"
        )
        bad = post(http, fake, "disconnect", {"close_after": "soon"})
        assert bad.status_code == 400 and "close_after must be" in bad.json()["message"]
        assert post(http, fake, "drop", {"hard": True}).status_code == 400
        assert all(c.alive and not c.draining for c in fake.connections)


def test_feed_reports_protocol_violations_and_nacks(fake: FakeDingTalk) -> None:
    """A client's malformed ack reaches the inspector as a violation; its code is in the ack
    event."""
    from _fake_ws_helpers import connect, recv_json

    feed = feed_of(fake)
    ws = connect(fake)
    try:
        mid = fake.push_chatbot("hi")
        frame = recv_json(ws)
        ws.send(
            json.dumps({"code": "200", "headers": {"messageId": frame["headers"]["messageId"]}})
        )
        fake.wait_until(lambda: len(fake.violations) >= 1)
    finally:
        ws.close()
    events = feed.since(0)
    ack = next(e for e in events if e["kind"] == "ack")
    assert ack["messageId"] == mid and ack["code"] == "200"
    violations = [e["text"] for e in events if e["kind"] == "violation"]
    assert violations and all(v.startswith("ack on connection") for v in violations)
    assert any("code: expected an int, got str" in v for v in violations)


def test_transcript_replays_card_clicks_and_reports_a_changed_card_update(
    fake: FakeDingTalk,
) -> None:
    """Clicks on a conversation's card are turns of its transcript: they replay on the card the
    bot sends in the replay, and a different card update is reported with the click."""
    from examples import cards

    with running_bot(cards.route, fake):
        fake.wait_for_ack(fake.push_chatbot("lunch?", conversation_id="cid-vote"))
        (card,) = fake.cards.values()
        for vote in ("yes", "yes", "no"):
            fake.wait_for_ack(fake.push_card_callback(card.out_track_id, {"vote": vote}))
    transcript = record_transcript(fake, "cid-vote")
    turns = transcript["turns"]
    assert turns[0]["bot"][0]["card"] == 1 and turns[0]["bot"][0]["cardData"]["yes"] == "0"
    assert [t["click"] for t in turns[1:]] == [
        {"card": 1, "params": {"vote": v}, "user": "user-1"} for v in ("yes", "yes", "no")
    ]
    last = turns[3]["bot"][0]["response"]["cardData"]["cardParamMap"]
    assert (last["yes"], last["no"]) == ("2", "1")
    assert replay_transcript(transcript, cards.route).differences == ()

    stubborn = dingsync.Router()
    stubborn.chatbot(cards.on_message)

    @stubborn.card_callback
    def yes_only(cb: dingsync.CardCallback, ctx: dingsync.Context) -> dingsync.CardResponse:
        if cb.params.get("vote") == "no":
            return dingsync.CardResponse()  # the changed bot ignores "no" votes
        return cards.on_vote(cb, ctx)

    result = replay_transcript(transcript, stubborn, settle=0.2)
    assert len(result.differences) == 1
    assert result.differences[0].startswith(
        "turn 4 (user-1 clicks card 1 with {'vote': 'no'}), answer 1: expected a card update"
    )
    assert "got a card update {'cardUpdateOptions'" in result.differences[0]


def test_openapi_knobs_over_http(fake: FakeDingTalk, http: requests.Session) -> None:
    """fail_next, expire_tokens, advance, expire_session and webhook_robot do over HTTP what
    the FakeDingTalk methods of the same names do."""
    token_path = "/v1.0/oauth2/accessToken"
    armed = post(http, fake, "fail_next", {"method": "post", "path": token_path, "status": 503})
    assert armed.json() == {"method": "POST", "path": token_path}
    creds = {"appKey": fake.client_id, "appSecret": fake.client_secret}
    assert http.post(fake.api_base + token_path, json=creds).status_code == 503
    token = http.post(fake.api_base + token_path, json=creds).json()["accessToken"]
    assert fake.token_valid(token, "new")
    assert post(http, fake, "expire_tokens").json() == {}
    assert not fake.token_valid(token, "new")
    before = fake.now()
    assert post(http, fake, "advance", {"seconds": 60}).json()["now"] >= before + 60
    mid = fake.push_chatbot("hi")
    assert post(http, fake, "expire_session", {"messageId": mid}).status_code == 200
    gone = post(http, fake, "expire_session", {"message_id": "nope"})
    assert gone.status_code == 404 and gone.json()["code"] == "SessionNotFound"
    robot = post(http, fake, "webhook_robot", {"token": "tok", "keywords": ["deploy"]}).json()
    assert robot["url"] == fake.webhook_url("tok")
    assert fake.webhook_robots["tok"].keywords == ("deploy",)
    typo = post(http, fake, "fail_next", {"method": "GET", "path": "/x", "stauts": 500})
    assert typo.status_code == 400 and "unknown field(s) stauts" in typo.json()["message"]
