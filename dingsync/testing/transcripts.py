"""Transcripts: a conversation with a bot saved as JSON, and replayed as a regression test.

A transcript is a list of turns; each turn is one user message and what the bot answered to it:
session-webhook replies, robot OpenAPI messages to the same chat, and cards delivered there
(their template, initial data, streamed text and final status). The chat window saves one with
its "Save transcript" button (``GET /_emulator/transcript?conversation_id=...``);
:func:`record_transcript` does the same in Python.

:func:`replay_transcript` starts a fresh emulator, runs a router against it with a real
``StreamClient``, sends the user messages again, one at a time, and compares the bot's answers
with the saved ones. :func:`assert_transcript` turns the differences into a pytest failure:

Example::

    from dingsync.testing.transcripts import assert_transcript
    from myapp.handlers import route

    def test_calc_conversation():
        assert_transcript("tests/transcripts/calc.json", route)
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import attrs

from . import payloads
from ._openapi import CardInstance
from ._records import webhook_text

if TYPE_CHECKING:
    from ..routing import Router
    from ..stream.client import StreamClient
    from ._fake import FakeDingTalk
    from ._records import Push

__all__ = [
    "TRANSCRIPT_VERSION",
    "ReplayResult",
    "record_transcript",
    "load_transcript",
    "replay_transcript",
    "assert_transcript",
    "running_router",
]

TRANSCRIPT_VERSION = 1
_CARD_CREATES = ("/v1.0/card/instances", "/v1.0/card/instances/createAndDeliver")
Transcript = Dict[str, Any]


@attrs.frozen
class ReplayResult:
    """The outcome of :func:`replay_transcript`: ``ok`` when every turn was answered the same.

    ``differences`` has one readable line per mismatch, naming the turn and both answers.
    """

    turns: int
    differences: Tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.differences

    def __bool__(self) -> bool:
        return self.ok


# -- recording ---------------------------------------------------------------------------------
def _in_chat(data: Mapping[str, Any], group: Optional[str], user: Optional[str]) -> bool:
    """Whether a robot message or card went to the chat of ``data``'s message."""
    if data.get("conversationType") == "2":
        return group == data.get("conversationId")
    return user is not None and user == data.get("senderStaffId")


def _card_in_chat(card: CardInstance, data: Mapping[str, Any]) -> bool:
    spaces = [s.split(".", 1) for s in card.spaces]
    group = next((sid for kind, sid in spaces if kind == "IM_GROUP"), None)
    user = next((sid for kind, sid in spaces if kind == "IM_ROBOT"), None)
    return _in_chat(data, group, user)


def _answers(
    fake: FakeDingTalk,
    push: Push,
    data: Mapping[str, Any],
    until: Optional[float],
    cards: List[str],
) -> List[Dict[str, Any]]:
    """What the bot sent to the chat of ``push`` from its arrival until ``until``.

    ``cards`` lists the conversation's cards (outTrackIds) in the order they appeared; new ones
    are added, and a card answer names its place in it (clicks refer to cards that way, since
    outTrackIds differ from run to run).
    """
    start = push.pushed_at

    def within(at: float) -> bool:
        return at >= start and (until is None or at < until)

    found: List[Tuple[float, Dict[str, Any]]] = []
    for reply in list(fake.replies):
        if reply.message_id == push.message_id:
            found.append((reply.at, {"via": "reply", "msgtype": reply.msgtype, "body": reply.body}))
    for sent in list(fake.sent):
        user = sent.user_ids[0] if len(sent.user_ids) == 1 else None
        if within(sent.at) and _in_chat(data, sent.open_conversation_id, user):
            found.append(
                (sent.at, {"via": "robot", "msgKey": sent.msg_key, "msgParam": sent.msg_param})
            )
    seen = set()
    for request in list(fake.requests):
        if request.method != "POST" or request.path not in _CARD_CREATES or not within(request.at):
            continue
        try:
            body = request.json()
        except ValueError:
            continue
        card = fake.cards.get(str(body.get("outTrackId")))
        if card is None or card.out_track_id in seen or not _card_in_chat(card, data):
            continue
        seen.add(card.out_track_id)
        if card.out_track_id not in cards:
            cards.append(card.out_track_id)
        answer = {
            "via": "card",
            "card": cards.index(card.out_track_id) + 1,
            "templateId": card.template_id,
            "cardData": (body.get("cardData") or {}).get("cardParamMap") or {},
            "streams": dict(card.streams),
            "status": card.status,
        }
        found.append((request.at, answer))
    found.sort(key=lambda pair: pair[0])
    return [answer for _, answer in found]


def _click_answer(fake: FakeDingTalk, message_id: str) -> List[Dict[str, Any]]:
    """The bot's answer to a card click: the card update in its ack (none when it sent none)."""
    ack = next(
        (a for a in list(fake.acks) if a.get("headers", {}).get("messageId") == message_id), None
    )
    data = _json(ack.get("data")) if ack is not None else None
    response = _json(data.get("response")) if isinstance(data, dict) else None
    if ack is None or not response:
        return []
    return [{"via": "cardUpdate", "code": ack.get("code"), "response": response}]


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _click(data: Mapping[str, Any]) -> Dict[str, Any]:
    private = _json(data.get("content"))
    params = (
        private.get("cardPrivateData", {}).get("params", {}) if isinstance(private, dict) else {}
    )
    return {"params": params, "user": data.get("userId")}


def record_transcript(fake: FakeDingTalk, conversation_id: str) -> Transcript:
    """The conversation ``conversation_id`` on ``fake`` so far, as a transcript (a JSON object).

    Its turns are the user messages and the clicks on the conversation's cards, in order.

    Raises:
        LookupError: no user message of that conversation was pushed.

    Example:
        >>> transcript = record_transcript(fake, "cid-chat-1")        # doctest: +SKIP
        >>> [t["text"] for t in transcript["turns"]]                  # doctest: +SKIP
        ['1+1']
    """
    pushes = [(p, p.data) for p in list(fake.pushes)]
    messages = [
        (p, d)
        for p, d in pushes
        if p.topic == payloads.CHATBOT_TOPIC
        and isinstance(d, dict)
        and d.get("conversationId") == conversation_id
    ]
    if not messages:
        raise LookupError(f"no user message in conversation {conversation_id!r} on this emulator")
    first = messages[0][1]
    mine = {c.out_track_id for c in list(fake.cards.values()) if _card_in_chat(c, first)}
    clicks = [
        (p, d)
        for p, d in pushes
        if p.topic == payloads.CARD_CALLBACK_TOPIC
        and isinstance(d, dict)
        and d.get("outTrackId") in mine
    ]
    turns = sorted(messages + clicks, key=lambda pair: pair[0].pushed_at)
    cards: List[str] = []
    out: List[Dict[str, Any]] = []
    for index, (push, data) in enumerate(turns):
        until = turns[index + 1][0].pushed_at if index + 1 < len(turns) else None
        if push.topic == payloads.CARD_CALLBACK_TOPIC:
            out_track_id = data.get("outTrackId")
            card = cards.index(out_track_id) + 1 if out_track_id in cards else None
            click = {"card": card, **_click(data)}
            out.append({"click": click, "bot": _click_answer(fake, push.message_id)})
            continue
        msgtype = str(data.get("msgtype", "text"))
        turn: Dict[str, Any] = {
            "sender": data.get("senderStaffId"),
            "nick": data.get("senderNick"),
            "msgtype": msgtype,
            "text": (data.get("text") or {}).get("content", "") if msgtype == "text" else "",
            "atUsers": list(data.get("atUsers", [])),
            "bot": _answers(fake, push, data, until, cards),
        }
        if msgtype != "text":
            turn["content"] = data.get("content")
            files = _files_of(fake, data.get("content"))
            if files:
                turn["files"] = files
        out.append(turn)
    return {
        "dingsyncTranscript": TRANSCRIPT_VERSION,
        "conversation": {
            "id": conversation_id,
            "type": first.get("conversationType", "1"),
            "title": first.get("conversationTitle"),
        },
        "turns": out,
    }


def _files_of(fake: FakeDingTalk, content: Any) -> Dict[str, Dict[str, str]]:
    """The bytes behind the download codes of a picture/file message, for the replay."""
    codes: List[str] = []
    items = content.get("richText", [content]) if isinstance(content, dict) else []
    for item in items:
        if isinstance(item, dict):
            codes += [item[k] for k in ("downloadCode", "pictureDownloadCode") if k in item]
    files = {}
    for code in codes:
        stored = fake.files.get(code)
        if stored is not None:
            files[code] = {
                "filename": stored.filename,
                "contentType": stored.content_type,
                "data": base64.b64encode(stored.data).decode("ascii"),
            }
    return files


def load_transcript(source: Union[str, Path, Mapping[str, Any]]) -> Transcript:
    """A transcript from a JSON file (or a dict, checked and returned).

    Raises:
        ValueError: the file is not a transcript this version understands.

    Example:
        >>> load_transcript({"dingsyncTranscript": 1, "conversation": {"id": "c"}, "turns": []})
        {'dingsyncTranscript': 1, 'conversation': {'id': 'c'}, 'turns': []}
    """
    if isinstance(source, Mapping):
        data: Any = dict(source)
        where = "the transcript"
    else:
        where = str(source)
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ValueError(f"{where} is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("dingsyncTranscript") != TRANSCRIPT_VERSION:
        raise ValueError(
            f"{where} is not a dingsync transcript (version {TRANSCRIPT_VERSION}); "
            "save one from the chat window or with record_transcript()"
        )
    if not isinstance(data.get("turns"), list) or not isinstance(data.get("conversation"), dict):
        raise ValueError(f"{where} needs a 'conversation' object and a 'turns' list")
    return data


# -- replaying ---------------------------------------------------------------------------------
def _describe(answer: Optional[Mapping[str, Any]]) -> str:
    if answer is None:
        return "nothing"
    via = answer.get("via")
    if via == "reply":
        body = answer.get("body") or {}
        text = webhook_text(body, str(answer.get("msgtype")))
        return f"a {answer.get('msgtype')} reply {text!r}"
    if via == "robot":
        param = answer.get("msgParam") or {}
        text = param.get("content", param.get("text"))
        return f"a robot {answer.get('msgKey')} {text!r}"
    if via == "card":
        return (
            f"a card {answer.get('templateId')} with {answer.get('cardData')}"
            f" streamed {answer.get('streams')} ({answer.get('status')})"
        )
    if via == "cardUpdate":
        response = answer.get("response") or {}
        return f"a card update {response.get('cardData', response)}"
    return json.dumps(answer, ensure_ascii=False)


def _compare(index: int, turn: Mapping[str, Any], got: List[Dict[str, Any]]) -> List[str]:
    expected = list(turn.get("bot") or [])
    if got == expected:
        return []
    click = turn.get("click")
    if isinstance(click, Mapping):
        where = f"turn {index + 1} ({click.get('user')} clicks card {click.get('card')}"
        where += f" with {click.get('params')})"
    else:
        said = turn.get("text") or turn.get("msgtype")
        where = f"turn {index + 1} ({turn.get('sender')}: {said!r})"
    lines = []
    for n in range(max(len(expected), len(got))):
        want = expected[n] if n < len(expected) else None
        have = got[n] if n < len(got) else None
        if want != have:
            lines.append(
                f"{where}, answer {n + 1}: expected {_describe(want)}, got {_describe(have)}"
            )
    return lines


def replay_transcript(
    transcript: Union[str, Path, Mapping[str, Any]],
    router: Router,
    *,
    timeout: float = 5.0,
    settle: float = 1.0,
) -> ReplayResult:
    """Send a transcript's user messages (and card clicks) to ``router`` again and compare the
    bot's answers.

    A fresh emulator and ``StreamClient`` are started and stopped. Each message waits for its
    ack (up to ``timeout`` seconds), then for the answers to match the saved ones for up to
    ``settle`` seconds (answers sent after the ack, e.g. by a route acked on receipt, still
    count); what differs then is reported.

    Example:
        >>> result = replay_transcript("tests/transcripts/calc.json", route)  # doctest: +SKIP
        >>> result.ok, result.differences                                    # doctest: +SKIP
        (True, ())
    """
    from ._fake import FakeDingTalk

    data = load_transcript(transcript)
    conversation = data["conversation"]
    differences: List[str] = []
    cards: List[str] = []  # the replay's cards, in the order they appeared
    with FakeDingTalk() as fake, running_router(fake, router, timeout=timeout):
        for index, turn in enumerate(data["turns"]):
            replay = _replay_click if isinstance(turn.get("click"), Mapping) else _replay_turn
            differences += replay(fake, conversation, index, turn, cards, timeout, settle)
    return ReplayResult(turns=len(data["turns"]), differences=tuple(differences))


@contextlib.contextmanager
def running_router(
    fake: FakeDingTalk, router: Router, *, timeout: float = 5.0
) -> Iterator[StreamClient]:
    """``router`` served by a ``StreamClient`` (with an ``ApiClient``) connected to ``fake``,
    for as long as the ``with`` block runs; stopped, with its handlers drained, at the end.

    Example:
        >>> with FakeDingTalk() as fake, running_router(fake, route):   # doctest: +SKIP
        ...     fake.wait_for_ack(fake.push_chatbot("1+1"))
    """
    import dingsync  # the replay is a client of the emulator: imported only when used

    with dingsync.ApiClient(fake.credentials, endpoints=fake.endpoints) as api:
        client = dingsync.StreamClient(
            fake.credentials,
            router,
            endpoints=fake.endpoints,
            api=api,
        )
        client.start()
        try:
            fake.wait_for_connections(1, timeout)
            yield client
        finally:
            client.stop(timeout=timeout)


def _settled(compare: Any, settle: float) -> List[str]:
    """``compare()``'s differences once it has none, or after ``settle`` seconds."""
    deadline = time.monotonic() + settle
    while True:
        problems: List[str] = compare()
        if not problems or time.monotonic() >= deadline:
            return problems
        time.sleep(0.02)


def _replay_click(
    fake: FakeDingTalk,
    conversation: Mapping[str, Any],
    index: int,
    turn: Mapping[str, Any],
    cards: List[str],
    timeout: float,
    settle: float,
) -> List[str]:
    click = turn["click"]
    number = click.get("card")
    if not isinstance(number, int) or not 0 < number <= len(cards):
        return [f"turn {index + 1}: card {number} was not sent in the replay, nothing to click"]
    message_id = fake.push_card_callback(
        cards[number - 1], dict(click.get("params") or {}), user_id=str(click.get("user") or "")
    )
    try:
        fake.wait_for_ack(message_id, timeout)
    except TimeoutError as exc:
        return [f"turn {index + 1}: the bot did not ack the click: {exc}"]
    return _settled(lambda: _compare(index, turn, _click_answer(fake, message_id)), settle)


def _replay_turn(
    fake: FakeDingTalk,
    conversation: Mapping[str, Any],
    index: int,
    turn: Mapping[str, Any],
    cards: List[str],
    timeout: float,
    settle: float,
) -> List[str]:
    for code, stored in (turn.get("files") or {}).items():
        fake.add_file(
            code,
            base64.b64decode(stored["data"]),
            filename=stored.get("filename", "file.bin"),
            content_type=stored.get("contentType", "application/octet-stream"),
        )
    kwargs: Dict[str, Any] = {}
    if conversation.get("title"):
        kwargs["conversation_title"] = conversation["title"]
    if turn.get("content") is not None:
        kwargs["content"] = turn["content"]
    message_id = fake.push_chatbot(
        turn.get("text") or "",
        conversation_type=str(conversation.get("type", "1")),
        conversation_id=str(conversation["id"]),
        sender_staff_id=str(turn.get("sender") or "user-1"),
        sender_nick=turn.get("nick"),
        msgtype=str(turn.get("msgtype", "text")),
        at_users=list(turn.get("atUsers") or []),
        **kwargs,
    )
    try:
        fake.wait_for_ack(message_id, timeout)
    except TimeoutError as exc:
        return [f"turn {index + 1}: the bot did not ack the message: {exc}"]
    push = fake._by_id[message_id]
    data = push.data
    return _settled(lambda: _compare(index, turn, _answers(fake, push, data, None, cards)), settle)


def assert_transcript(
    transcript: Union[str, Path, Mapping[str, Any]], router: Router, **options: float
) -> None:
    """Replay ``transcript`` against ``router``; raise AssertionError listing what differs.

    ``options`` are :func:`replay_transcript`'s ``timeout`` and ``settle``.

    Example:
        >>> assert_transcript("tests/transcripts/calc.json", route)  # doctest: +SKIP
    """
    result = replay_transcript(transcript, router, **options)
    if not result.ok:
        lines = "\n  ".join(result.differences)
        raise AssertionError(f"the bot answered differently than the transcript:\n  {lines}")
