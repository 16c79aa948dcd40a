"""Where a message's CPU goes: each stage of dingsync's receive path timed on its own.

Usage::

    python -m benchmarks.hotpath              # 3,000 chatbot frames, best of 7 passes
    python -m benchmarks.hotpath --frames 200 --repeat 2

One thread, no sockets: the same pre-serialised chatbot frames the throughput figure pushes go
through each stage in turn, and each stage's best pass over all frames is reported per message.
The last rows time the whole path the StreamClient runs per frame (the reader's part and the
handler thread's part, with the socket I/O and the thread handoff left out) and the work the raw
websocket-client loop of figure 1 does in Python (``json.loads``, the ack text and
websocket-client's framing of it; its three ``recv`` and two other system calls per message are
not in it). Under load both take longer than here (caches are shared with the emulator and the
kernel); the throughput figure measures that.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import websocket

import dingsync
from dingsync.context import Context
from dingsync.dedupe import Deduper, MemoryDedupeStore
from dingsync.frames import Frame
from dingsync.models import ChatbotMessage
from dingsync.stream.wsio import TEXT, Masker
from dingsync.testing import FakeDingTalk

from .clients.raw_client import CALLBACK_ACK

Stage = Tuple[str, Callable[[], None]]


class _NoSocket:
    """What the client's handler path needs of a connection, writing nowhere."""

    number = 1
    gateway_id = "bench"
    last_alive = 1.0
    closed = False
    retiring = False
    paused = False

    def send(self, text: str) -> bool:
        text.encode("utf-8", "backslashreplace")  # what the real one does before queuing it
        return True


def _frames(count: int) -> List[bytes]:
    with FakeDingTalk() as fake:
        return [p.text.encode() for p in fake.prepare_chatbot(count, text="hello bench {i}")]


def stages(raw: Sequence[bytes]) -> List[Stage]:
    """The stages, each a function running that stage once over every frame."""
    texts = [r.decode() for r in raw]
    objs = [json.loads(t) for t in texts]
    frames = [Frame.from_wire(t) for t in texts]
    datas = [f.json() for f in frames]
    route = dingsync.Router()
    route.chatbot(lambda msg, ctx: None)
    (chatbot,) = route.routes
    messages = [ChatbotMessage.from_wire(d) for d in datas]
    acks = [route.invoke(chatbot, m, Context(frame=f, message=m)) for f, m in zip(frames, messages)]
    masker = Masker()
    deduper: Deduper[Any] = Deduper(MemoryDedupeStore(max_entries=len(raw) * 2))
    keys = [f"bench:msg:{m.msg_id}" for m in messages]

    def dedupe() -> None:
        store = deduper.store
        assert isinstance(store, MemoryDedupeStore)
        store._entries.clear()  # every pass sees new messages, as a burst does
        for key, ack in zip(keys, acks):
            deduper.claim(key, None)
            deduper.remember(key, ack)
            deduper.finish(key)

    client = dingsync.StreamClient(
        dingsync.Credentials(client_id="bench", client_secret="bench-secret"), route
    )
    conn: Any = _NoSocket()
    jobs: List[Any] = []

    def queue(job: Any, **_: Any) -> bool:
        jobs.append(job)
        return True

    client._pool.submit = queue  # type: ignore[method-assign]

    def reader_part() -> None:
        jobs.clear()
        for r in raw:
            client._reader._handle_raw(r, conn)

    def handler_part() -> None:  # runs the jobs the reader part queued last
        client._jobs.deduper.store._entries.clear()  # type: ignore[attr-defined]
        for job in jobs:
            client._jobs.run(job)

    def raw_loop() -> None:
        frame = websocket.ABNF.create_frame
        for t in texts:
            mid = json.loads(t)["headers"]["messageId"]
            frame(CALLBACK_ACK % mid, websocket.ABNF.OPCODE_TEXT).format()

    pairs = list(zip(frames, messages))
    return [
        ("frame JSON decode (json.loads)", _each(json.loads, texts)),
        ("Frame + Headers objects", _each(Frame.from_dict, objs)),
        ("data JSON decode", _each(Frame.json, frames)),
        ("ChatbotMessage object", _each(ChatbotMessage.from_wire, datas)),
        ("dedupe: claim, remember, finish", dedupe),
        (
            "Context + handler call + Ack",
            _each(
                lambda fm: route.invoke(chatbot, fm[1], Context(frame=fm[0], message=fm[1])), pairs
            ),
        ),
        (
            "Ack text + websocket frame (masked)",
            _each(lambda ack: masker.encode(TEXT, ack.to_wire().encode()), acks),
        ),
        ("dingsync, reader's part (decode, route, queue)", reader_part),
        ("dingsync, handler thread's part (decode, dedupe, handler, ack)", handler_part),
        ("raw loop's Python work (json.loads, ack text, framing)", raw_loop),
    ]


def _each(work: Callable[[Any], Any], items: Sequence[Any]) -> Callable[[], None]:
    """A stage that runs ``work`` on every item."""

    def stage() -> None:
        for item in items:
            work(item)

    return stage


def measure(stage: Callable[[], None], count: int, repeat: int) -> float:
    """Best pass of ``repeat`` (GC off during a pass), in µs per message."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            stage()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best / count * 1e6


def table(results: Sequence[Tuple[str, float]]) -> str:
    lines = ["| stage | µs per message |", "|---|---|"]
    lines += [f"| {name} | {us:.2f} |" for name, us in results]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    raw = _frames(args.frames)
    results = []
    for name, stage in stages(raw):
        results.append((name, measure(stage, len(raw), args.repeat)))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
