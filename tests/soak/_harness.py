"""The soak's moving parts: dingworker replicas, the fault injector, the frame fuzzer and the
summary table. The test itself (``test_soak.py``) only strings them together."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from child_processes import die_with_parent, stop_process

from dingsync.testing import Connection, FakeDingTalk, payloads

REPO = Path(__file__).resolve().parents[2]
APP = "tests.soak.soak_app:route"
OPEN_PATH = "/v1.0/gateway/connections/open"
TOKEN_PATH = "/v1.0/oauth2/accessToken"


# -- replicas ------------------------------------------------------------------------------
class Replica:
    """One ``python -m dingworker`` process; its log goes to a file (never a pipe that could
    fill up and block it)."""

    def __init__(self, name: str, args: Sequence[str], env: Dict[str, str], log: Path) -> None:
        self.name = name
        self.log_path = log
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
        full_env.update(env)
        full_env["PYTHONUNBUFFERED"] = "1"
        self._log = open(log, "wb")  # closed in stop()
        self.proc = subprocess.Popen(
            die_with_parent([sys.executable, "-m", "dingworker", *args]),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=str(REPO),
            start_new_session=True,  # a Ctrl-C in the terminal is the test's to handle
        )
        self.pid = self.proc.pid
        self.health_url: Optional[str] = None

    def log_text(self) -> str:
        return self.log_path.read_text("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def find_health_url(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"health on (http://[0-9.]+:[0-9]+)/healthz", self.log_text())
            if found:
                self.health_url = found.group(1)
                return self.health_url
            if not self.alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: no health server line\n{self.log_tail()}")

    def health(self) -> Dict[str, Any]:
        """The stream client's counters, from ``/healthz`` (200 or 503, JSON either way)."""
        assert self.health_url is not None
        try:
            with urllib.request.urlopen(self.health_url + "/healthz", timeout=5) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read()
        details = json.loads(body)
        assert isinstance(details, dict)
        return details

    def rss_kib(self) -> int:
        """Resident memory (VmRSS) from /proc."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        assert found, status
        return int(found.group(1))

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


def owner_pid(conn: Connection) -> Optional[int]:
    """The worker a gateway connection belongs to (dingsync stamps ``pid=`` into localIp)."""
    found = re.search(r"pid=(\d+)", conn.local_ip or "")
    return int(found.group(1)) if found else None


# -- timers and waiting ------------------------------------------------------------------------
class Timers:
    """Delayed actions run by the test thread itself whenever it waits (no extra threads)."""

    def __init__(self) -> None:
        self._due: List[Tuple[float, str, Callable[[], None]]] = []

    def later(self, delay: float, label: str, action: Callable[[], None]) -> None:
        self._due.append((time.monotonic() + delay, label, action))
        self._due.sort(key=lambda item: item[0])

    def run_due(self) -> None:
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, action = self._due.pop(0)
            action()

    def flush(self) -> None:
        """Wait for every pending action and run it."""
        while self._due:
            time.sleep(max(0.0, min(0.05, self._due[0][0] - time.monotonic())))
            self.run_due()

    def __len__(self) -> int:
        return len(self._due)


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    *,
    timers: Optional[Timers] = None,
    details: Callable[[], str] = lambda: "",
) -> float:
    """Poll ``predicate`` (running due timers meanwhile); returns the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if timers is not None:
            timers.run_due()
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not reached within {timeout:.0f}s. {details()}")
        time.sleep(0.02)
    return time.monotonic() - started


# -- faults --------------------------------------------------------------------------------
FAULT_KINDS = (
    "drop",
    "disconnect",
    "stall+resume",
    "stall+watchdog",
    "open-5xx",
    "open-429",
    "token-expiry",
)


def fault_plan(rng: random.Random, count: int, first: int, last: int) -> List[Tuple[int, str]]:
    """``count`` faults at push indexes spread over ``[first, last)``, each kind at least once
    (when count allows), in a seeded order."""
    kinds = list(FAULT_KINDS[:count])
    kinds += [rng.choice(FAULT_KINDS) for _ in range(count - len(kinds))]
    rng.shuffle(kinds)
    slot = (last - first) / max(count, 1)
    return [(first + int(slot * n + rng.uniform(0, slot)), kind) for n, kind in enumerate(kinds)]


class FaultInjector:
    """Applies one fault of a kind to the emulator; delayed halves (resume) go on ``timers``."""

    def __init__(
        self,
        fake: FakeDingTalk,
        rng: random.Random,
        timers: Timers,
        *,
        dead_after: float,
        log: Callable[[str], None],
    ) -> None:
        self.fake = fake
        self.rng = rng
        self.timers = timers
        self.dead_after = dead_after
        self.log = log
        self.counts: Counter[str] = Counter()

    def _victim(self) -> Connection:
        fake = self.fake

        def usable() -> List[Connection]:
            return [c for c in fake.live_connections if not c.draining and not c.stalled]

        wait_for(
            lambda: bool(usable()),
            60,
            "a live connection to inject a fault into",
            timers=self.timers,
        )
        return self.rng.choice(usable())

    def inject(self, kind: str) -> None:
        fake, rng = self.fake, self.rng
        if kind == "drop":
            conn = fake.drop(self._victim())
            detail = f"dropped {conn.id[:8]} (pid {owner_pid(conn)})"
        elif kind == "disconnect":
            conn = self._victim()
            close_after = rng.uniform(0.2, 2.0)
            fake.disconnect(close_after=close_after, connection=conn)
            detail = (
                f"disconnect {conn.id[:8]} (pid {owner_pid(conn)}), close in {close_after:.1f}s"
            )
        elif kind in ("stall+resume", "stall+watchdog"):
            conn = fake.stall(self._victim())
            # Resumed before the watchdog notices, or long after it replaced the connection
            # (as the real gateway would eventually notice the dead TCP connection).
            if kind == "stall+resume":
                delay = rng.uniform(0.2, self.dead_after * 0.4)
            else:
                delay = rng.uniform(self.dead_after + 2.5, self.dead_after + 4.5)
            self.timers.later(delay, f"resume {conn.id[:8]}", lambda: fake.resume(conn))
            detail = f"stalled {conn.id[:8]} (pid {owner_pid(conn)}), resume in {delay:.1f}s"
        elif kind in ("open-5xx", "open-429"):
            times = rng.randint(1, 2)
            if kind == "open-5xx":
                status = rng.choice((500, 502, 503))
                fake.fail_next("POST", OPEN_PATH, status=status, times=times)
            else:
                status = 429
                body = {"code": "Throttling", "message": "Request was denied due to flow control"}
                fake.fail_next("POST", OPEN_PATH, status=429, body=body, times=times)
            conn = fake.drop(self._victim())  # its reconnect meets the failures
            detail = f"{times}x HTTP {status} on open, dropped {conn.id[:8]}"
        elif kind == "token-expiry":
            fake.expire_tokens()
            detail = "access tokens expired"
        else:  # pragma: no cover - the plan only holds known kinds
            raise ValueError(kind)
        self.counts[kind] += 1
        self.log(f"fault {sum(self.counts.values())}: {kind}: {detail}")


# -- fuzzing -------------------------------------------------------------------------------
HUGE = 512 * 1024


def _junk_text(rng: random.Random, size: int) -> str:
    alphabet = 'abc{}[]":,\\ \n\t\x00\x1f✓钉€𝄞'
    return "".join(rng.choice(alphabet) for _ in range(size))


def _envelope(n: int, *, type_: Any = "CALLBACK", topic: Any = None, data: Any = "{}") -> Dict:
    return {
        "specVersion": "1.0",
        "type": type_,
        "headers": {
            "messageId": f"fuzz-{n}",
            "topic": payloads.CHATBOT_TOPIC if topic is None else topic,
            "contentType": "application/json",
            "time": "1700000000000",
        },
        "data": data,
    }


def _event_envelope(n: int, data: Any) -> Dict:
    frame = _envelope(n, type_="EVENT", topic="*", data=data)
    frame["headers"].update(eventType="soak_event", eventId=f"fuzz-{n}")
    return frame


def _chatbot_data(n: int) -> Dict[str, Any]:
    return {
        "msgId": f"fuzz-msg-{n}",
        "msgtype": "text",
        "text": {"content": "fuzz"},
        "conversationId": "cidFuzz",
        "conversationType": "1",
        "senderStaffId": "u1",
        "createAt": 1700000000000,
    }


def _nested(rng: random.Random, depth: int) -> str:
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def fuzz_frame(rng: random.Random, n: int) -> Tuple[str, bytes, bool]:
    """One malformed frame: (kind, payload, binary). Never a SYSTEM ``disconnect``: that one
    replaces the connection by design."""
    kind = rng.choice(
        (
            "not-json",
            "invalid-utf8",
            "binary",
            "json-non-object",
            "wrong-types",
            "missing-fields",
            "bad-payload",
            "unknown-route",
            "nested",
            "surrogate",
            "huge",
        )
    )
    text: Any
    binary = False
    if kind == "not-json":
        text = rng.choice(
            ("", " ", "{", "}", "{'single': 'quotes'}", "NaN", "undefined", '{"type":')
            + (_junk_text(rng, rng.randint(1, 300)),)
        )
    elif kind == "invalid-utf8":
        good = json.dumps(_envelope(n, data=json.dumps(_chatbot_data(n)))).encode()
        cut = rng.randrange(len(good))
        bad = rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"))
        return kind, good[:cut] + bad + good[cut:], False
    elif kind == "binary":
        if rng.random() < 0.5:
            return kind, bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))), True
        return kind, json.dumps(_envelope(n, data="not json")).encode(), True
    elif kind == "json-non-object":
        text = json.dumps(
            rng.choice(([], [1, 2, 3], "string", 42, 4.2, True, None, [_envelope(n)], [{}]))
        )
    elif kind == "wrong-types":
        frame = _envelope(n, data=json.dumps(_chatbot_data(n)))
        field = rng.choice(("type", "headers", "messageId", "topic", "data", "specVersion"))
        bad = rng.choice((None, 5, 4.5, [], {}, [1], {"x": 1}, True, ""))
        if field in ("messageId", "topic"):
            frame["headers"][field] = bad
        else:
            frame[field] = bad
        text = json.dumps(frame)
    elif kind == "missing-fields":
        frame = _envelope(n, data=json.dumps(_chatbot_data(n)))
        field = rng.choice(("type", "headers", "messageId", "topic", "data"))
        if field in ("messageId", "topic"):
            del frame["headers"][field]
        else:
            del frame[field]
        text = json.dumps(frame)
    elif kind == "bad-payload":
        if rng.random() < 0.5:
            data = _chatbot_data(n)
            field = rng.choice(("msgId", "msgtype", "text", "conversationId"))
            if rng.random() < 0.5:
                del data[field]
            elif field == "msgId":  # never a number: "5" would be a valid id shared by frames
                data[field] = rng.choice(([], None, {"x": []}))
            else:
                data[field] = rng.choice((5, [], None, {"x": []}))
            body = json.dumps(data)
            frame = _envelope(n, data=rng.choice((body, "not json", "[]", "5", '"s"', "")))
        else:
            data = rng.choice(("not json", "[]", "5", "null", '"s"'))
            frame = _event_envelope(n, data)
        text = json.dumps(frame)
    elif kind == "unknown-route":
        frame = rng.choice(
            (
                _envelope(n, topic="/v1.0/no/such/topic"),
                _envelope(n, type_="EVENT", topic="*"),  # no eventType
                _envelope(n, type_="SYSTEM", topic="no-such-system-topic"),
                _envelope(n, type_="SYSTEM", topic="ping", data="not json"),
                _envelope(n, type_="NOT_A_TYPE"),
            )
        )
        text = json.dumps(frame)
    elif kind == "nested":
        depth = rng.choice((50, 900, 5000, 100_000))
        if rng.random() < 0.5:
            text = _nested(rng, depth)
        else:
            text = json.dumps(_event_envelope(n, _nested(rng, depth)))
    elif kind == "surrogate":  # a lone surrogate: escaped (valid JSON) or UTF-8-encoded (invalid)
        frame = rng.choice(
            (
                _envelope(n, type_="SYSTEM", topic="ping", data='{"opaque":"x"}'),
                _envelope(n, topic="/v1.0/no/such/topic"),
                _envelope(n, data=json.dumps(_chatbot_data(n))),
            )
        )
        frame["headers"]["messageId"] = f"fuzz-{n}-\ud800"
        text = json.dumps(frame, ensure_ascii=rng.random() < 0.5)
        return kind, text.encode("utf-8", "surrogatepass"), False
    else:  # huge
        shape = rng.choice(("junk", "data", "header"))
        if shape == "junk":
            text = "x" * HUGE
        elif shape == "data":
            text = json.dumps(_envelope(n, data="{" + "x" * HUGE))
        else:
            frame = _envelope(n, data=json.dumps(_chatbot_data(n)))
            frame["headers"]["x-junk"] = "y" * HUGE
            text = json.dumps(frame)
    return kind, text.encode("utf-8"), binary


def fuzz_stream(rng: random.Random, count: int) -> Iterator[Tuple[str, bytes, bool]]:
    for n in range(count):
        yield fuzz_frame(rng, n)


# -- the summary ---------------------------------------------------------------------------
def table(rows: Sequence[Tuple[str, Any]], title: str) -> str:
    width = max(len(k) for k, _ in rows)
    lines = [title, "-" * len(title)]
    lines += [f"{k:<{width}}  {v}" for k, v in rows]
    return "\n".join(lines)
