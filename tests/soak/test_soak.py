"""Soak: three dingworker replicas of one app, sharing Redis for dedupe, against the emulator
with redelivery on, while faults are injected; then a barrage of malformed frames.

Phase 1 (faults): chatbot messages and events are pushed at a steady rate while a seeded plan
drops connections, sends SYSTEM disconnect, stalls connections (resumed before the watchdog
notices, or after it replaced them), fails the gateway's connections/open with 5xx and 429,
and expires the access tokens (some handlers use the OpenAPI, so tokens are refreshed). Some
messages are slow (redelivered while they run, often to another replica) and some fail once.
Checked: every push is acked in the end; every message was handled exactly once across the
replicas (each handler counts its message in Redis); no replica died; memory stayed flat.

Phase 2 (fuzz): malformed frames (non-JSON, invalid UTF-8, binary, JSON non-objects, wrong
types, missing fields, bad payloads, unknown routes, deep nesting, 512 KiB) interleaved with
well-formed ones, redelivery off. Checked: no connection was replaced, every well-formed frame
was handled once and acked, every ack the replicas sent was well-formed.

Size: short by default (part of every test run); ``DINGSYNC_SOAK=full`` (``make soak``) runs
the full size. ``DINGSYNC_SOAK_SEED`` replays a seed; the seed is printed either way.
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterator, List, Set

import attrs
import pytest

from dingsync.testing import FakeDingTalk, Push

from ._harness import (
    APP,
    FAULT_KINDS,
    HUGE,
    TOKEN_PATH,
    FaultInjector,
    Replica,
    Timers,
    fault_plan,
    fuzz_stream,
    owner_pid,
    table,
    wait_for,
)
from .soak_app import API_SENDS, BY_WORKER, FLAKY_FAILURES, HANDLED


@attrs.frozen
class Size:
    name: str
    pushes: int
    faults: int
    fuzz: int
    rate: float  # pushes per second in phase 1
    rss_growth_mib: float  # allowed RSS growth per replica over phase 1
    timeout: float  # for the whole test


SHORT = Size("short", pushes=2_000, faults=10, fuzz=1_000, rate=180, rss_growth_mib=20, timeout=240)
FULL = Size("full", 20_000, faults=50, fuzz=10_000, rate=180, rss_growth_mib=30, timeout=1_800)
SIZE = FULL if os.environ.get("DINGSYNC_SOAK", "").lower() == "full" else SHORT

REPLICAS = 3
DEAD_AFTER = 2.0
REDELIVER_EVENTS_AFTER = 1.5
REDELIVER_CALLBACKS_AFTER = 2.0
SLOW_SECONDS = 3.0  # longer than both redelivery delays
WARMUP = 150
WINDOW = 600  # un-acked pushes allowed in flight before the pusher waits
GOOD_EVERY = 4  # phase 2: one well-formed frame after this many malformed ones

pytestmark = [
    pytest.mark.soak,
    pytest.mark.timeout(SIZE.timeout),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, uses signals"),
]


def directives(rng: random.Random) -> str:
    roll = rng.random()
    found = []
    if roll < 0.007:
        found.append("slow")
    elif roll < 0.014:
        found.append("flaky")
    if rng.random() < 0.06:
        found.append("api")
    if rng.random() < 0.05:
        found.append("reply")
    return " ".join(found)


class Pusher:
    """Pushes chatbot messages and events, remembering each one's Push record and the Redis
    key its handler counts it under."""

    def __init__(self, fake: FakeDingTalk, rng: random.Random) -> None:
        self.fake = fake
        self.rng = rng
        self.expected: Dict[str, str] = {}  # messageId -> handled key
        self.records: List[Push] = []
        self.unacked: List[Push] = []
        self.kinds: Counter[str] = Counter()
        self.flaky = 0

    def push(self, label: str, *, huge: bool = False, retries: bool = True) -> str:
        """One chatbot message or event; ``retries=False`` (redelivery off): no directive
        that needs a redelivery (slow, flaky)."""
        fake, rng = self.fake, self.rng
        n = len(self.records)
        todo = directives(rng) if not huge else ""
        if not retries:
            todo = " ".join(d for d in todo.split() if d not in ("slow", "flaky"))
        self.flaky += "flaky" in todo
        if rng.random() < 0.5:
            msg_id = f"{label}-{n}"
            text = f"{label} {n} {todo}"
            mid = fake.push_chatbot(text, msg_id=msg_id, conversation_type=rng.choice("12"))
            key = f"msg:{msg_id}"
            self.kinds["chatbot"] += 1
        else:
            data: Dict[str, Any] = {"seq": n, "do": todo}
            if huge:
                data["blob"] = "x" * HUGE
            mid = fake.push_event("soak_event", data)
            key = f"ev:{mid}"
            self.kinds["event"] += 1
        record = fake.pushes[-1]  # only this thread pushes, so the newest is ours
        assert record.message_id == mid
        self.expected[mid] = key
        self.records.append(record)
        self.unacked.append(record)
        return mid

    def outstanding(self) -> int:
        self.unacked = [p for p in self.unacked if not p.acked]
        return len(self.unacked)

    def where(self) -> str:
        left = [p for p in self.records if not p.acked]
        return f"{len(left)} un-acked, e.g. {left[:5]}; pending {len(self.fake.pending)}"


@pytest.fixture
def replicas() -> Iterator[List[Replica]]:
    started: List[Replica] = []
    yield started
    for replica in started:
        replica.stop()  # SIGTERM, then SIGKILL: nothing outlives the test


def handled_counts(redis_client: Any) -> Dict[str, int]:
    return {k.decode(): int(v) for k, v in redis_client.hgetall(HANDLED).items()}


def check_exactly_once(counts: Dict[str, int], expected: Set[str], context: str) -> Dict[str, int]:
    """Every expected key handled once; keys of malformed frames (fuzz-) at most once; nothing
    else. Returns the fuzz keys' counts."""
    twice = {k: c for k, c in counts.items() if c != 1}
    missing = expected - set(counts)
    fuzz = {k: c for k, c in counts.items() if "fuzz-" in k}
    extra = set(counts) - expected - set(fuzz)
    assert not twice, f"{context}: handled more than once: {sorted(twice.items())[:20]}"
    assert not missing, f"{context}: never handled: {sorted(missing)[:20]} ({len(missing)})"
    assert not extra, f"{context}: handled but never pushed: {sorted(extra)[:20]}"
    return fuzz


def test_soak(redis_base_url: str, replicas: List[Replica], tmp_path: Path) -> None:
    import redis

    seed = int(os.environ.get("DINGSYNC_SOAK_SEED") or random.SystemRandom().randrange(2**31))
    tag = f"[soak {SIZE.name} seed={seed}]"
    print(f"\n{tag} DINGSYNC_SOAK_SEED={seed} replays this run")
    rng = random.Random(seed)
    started = time.monotonic()
    events: List[str] = []

    def note(line: str) -> None:
        events.append(f"{time.monotonic() - started:7.2f}s {line}")

    records_db = redis.Redis.from_url(f"{redis_base_url}/1")
    dedupe_db = redis.Redis.from_url(f"{redis_base_url}/0")
    records_db.flushdb()
    dedupe_db.flushdb()

    with FakeDingTalk(seed=seed) as fake:
        fake.redeliver_events_after = REDELIVER_EVENTS_AFTER
        fake.redeliver_callbacks_after = REDELIVER_CALLBACKS_AFTER
        env = {
            **fake.env(),
            "SOAK_RECORD_URL": f"{redis_base_url}/1",
            "SOAK_SLOW_SECONDS": str(SLOW_SECONDS),
        }
        args = [APP, "--dedupe", f"{redis_base_url}/0", "--dead-after", str(DEAD_AFTER)]
        args += ["--health-port", "0", "--grace", "15", "--max-runtime", str(SIZE.timeout + 60)]
        for n in range(REPLICAS):
            name = f"worker-{n + 1}"
            replicas.append(Replica(name, args, env, tmp_path / f"{name}.log"))

        def failure_details() -> str:
            tails = "\n".join(f"--- {r.name} (pid {r.pid})\n{r.log_tail(25)}" for r in replicas)
            return f"{tag}\nrecent events:\n" + "\n".join(events[-30:]) + "\n" + tails

        def all_alive(when: str) -> None:
            dead = [f"{r.name} exit {r.proc.returncode}" for r in replicas if not r.alive()]
            assert not dead, f"{tag} died {when}: {dead}\n{failure_details()}"

        for replica in replicas:
            replica.find_health_url(timeout=30)
        wait_for(
            lambda: len({owner_pid(c) for c in fake.live_connections}) == REPLICAS,
            30,
            "all replicas connected",
            details=failure_details,
        )
        note("all replicas connected")

        # -- warm-up: pools, Redis connections, the token, the session webhook ---------------
        timers = Timers()
        pusher = Pusher(fake, rng)
        for _ in range(WARMUP):
            pusher.push("warm")
        fake.push_chatbot("warm api reply", msg_id="warm-api")
        pusher.expected[fake.pushes[-1].message_id] = "msg:warm-api"
        pusher.records.append(fake.pushes[-1])
        wait_for(lambda: all(p.acked for p in pusher.records), 60, "warm-up acked")
        time.sleep(0.5)  # let the allocator settle after the warm-up burst
        rss_start = {r.name: r.rss_kib() for r in replicas}
        note(f"warm-up done; RSS {rss_start}")

        # -- phase 1: pushes under faults -----------------------------------------------------
        injector = FaultInjector(fake, rng, timers, dead_after=DEAD_AFTER, log=note)
        first = len(pusher.records)
        plan = fault_plan(rng, SIZE.faults, first, first + SIZE.pushes)
        token_fetches_before = fake.count("POST", TOKEN_PATH)
        phase1_started = time.monotonic()
        next_fault = 0
        for i in range(SIZE.pushes):
            index = first + i
            while next_fault < len(plan) and plan[next_fault][0] <= index:
                injector.inject(plan[next_fault][1])
                next_fault += 1
            pusher.push("soak")
            if i % 10 == 9:
                timers.run_due()
                if pusher.outstanding() > WINDOW:
                    wait_for(
                        lambda: pusher.outstanding() <= WINDOW // 2,
                        120,
                        "the in-flight window to drain",
                        timers=timers,
                        details=lambda: pusher.where() + "\n" + failure_details(),
                    )
                ahead = phase1_started + (i + 1) / SIZE.rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
        while next_fault < len(plan):
            injector.inject(plan[next_fault][1])
            next_fault += 1
        pushed_for = time.monotonic() - phase1_started
        note(f"phase 1: {SIZE.pushes} pushed in {pushed_for:.1f}s")
        settle = wait_for(
            lambda: pusher.outstanding() == 0,
            180,
            "every phase-1 push acked",
            timers=timers,
            details=lambda: pusher.where() + "\n" + failure_details(),
        )
        timers.flush()
        fake.resume()
        note(f"phase 1: all acked {settle:.1f}s after the last push")
        all_alive("in phase 1")
        assert not fake.violations, f"{tag} ack violations: {fake.violations[:10]}"
        check_exactly_once(
            handled_counts(records_db), set(pusher.expected.values()), f"{tag} phase 1"
        )
        wait_for(
            lambda: all(r.health()["in_flight"] == 0 for r in replicas),
            30,
            "handlers idle",
        )
        time.sleep(0.5)
        rss_phase1 = {r.name: r.rss_kib() for r in replicas}
        health_phase1 = {r.name: r.health() for r in replicas}
        redeliveries = len(fake.redeliveries)
        phase1_acks = Counter(a.get("code") for a in fake.acks)
        token_fetches = fake.count("POST", TOKEN_PATH) - token_fetches_before
        phase1_seconds = time.monotonic() - phase1_started
        growth = {n: (rss_phase1[n] - rss_start[n]) / 1024 for n in rss_start}
        over = {n: round(g, 1) for n, g in growth.items() if g > SIZE.rss_growth_mib}
        assert not over, f"{tag} RSS grew more than {SIZE.rss_growth_mib} MiB: {over}"

        # -- phase 2: malformed frames between well-formed ones ------------------------------
        fake.redeliver_events_after = fake.redeliver_callbacks_after = None
        wait_for(
            lambda: (
                len(fake.live_connections) == REPLICAS
                and not any(c.draining or c.stalled for c in fake.live_connections)
            ),
            30,
            "one settled connection per replica",
            details=lambda: f"{fake.live_connections}",
        )
        conns_before = {c.id for c in fake.live_connections}
        opened_before = {r.name: r.health()["connections_opened"] for r in replicas}
        violations_before = len(fake.violations)
        good = Pusher(fake, rng)
        fuzz_kinds: Counter[str] = Counter()
        fuzz_ids: Set[str] = set()
        phase2_started = time.monotonic()
        for n, (kind, data, binary) in enumerate(fuzz_stream(rng, SIZE.fuzz)):
            fuzz_ids.add(fake.push_raw(data, binary=binary))
            fuzz_kinds[kind] += 1
            if n % GOOD_EVERY == GOOD_EVERY - 1:
                good.push("good", huge=(n // GOOD_EVERY) % 50 == 7, retries=False)
            if n % 20 == 19 and good.outstanding() > WINDOW // 4:
                wait_for(
                    lambda: good.outstanding() <= WINDOW // 8,
                    60,
                    "phase-2 window to drain",
                    details=lambda: good.where() + "\n" + failure_details(),
                )
        wait_for(
            lambda: good.outstanding() == 0,
            60,
            "every well-formed phase-2 frame acked",
            details=lambda: good.where() + "\n" + failure_details(),
        )
        wait_for(
            lambda: all(p.state == "sent" for p in fake.pushes[-SIZE.fuzz :]),
            30,
            "every malformed frame written",
        )
        time.sleep(0.5)  # the last garbage acks
        phase2_seconds = time.monotonic() - phase2_started
        all_alive("in phase 2")
        conns_after = {c.id for c in fake.live_connections}
        opened_after = {r.name: r.health()["connections_opened"] for r in replicas}
        new_conns = opened_after != opened_before or conns_after != conns_before
        assert not new_conns, (
            f"{tag} malformed frames cost connections: opened {opened_before} -> "
            f"{opened_after}\n{failure_details()}"
        )
        garbage_acks = fake.violations[violations_before:]
        # By design: acks naming the garbage's own messageIds, and pings whose non-JSON data
        # was echoed as the protocol asks.
        expected_kinds = ("does not match a pushed message", "data: not valid JSON")
        odd = [v for v in garbage_acks if not any(k in v for k in expected_kinds)]
        assert not odd, f"{tag} malformed acks in phase 2: {odd[:10]}"
        good_ids = set(good.expected)
        about_good = [v for v in garbage_acks if any(g in v for g in good_ids)]
        assert not about_good, f"{tag}: {about_good[:5]}"

        # -- the end: counters, SIGTERM, and the final exactly-once check -------------------
        wait_for(
            lambda: all(r.health()["in_flight"] == 0 for r in replicas),
            30,
            "handlers idle",
        )
        health_end = {r.name: r.health() for r in replicas}
        rss_end = {r.name: r.rss_kib() for r in replicas}
        all_alive("before SIGTERM")
        for replica in replicas:
            replica.terminate()
        codes = {}
        for replica in replicas:
            try:
                codes[replica.name] = replica.proc.wait(timeout=30)
            except Exception:
                codes[replica.name] = None
        assert all(code == 0 for code in codes.values()), (
            f"{tag} exit codes after SIGTERM: {codes}\n{failure_details()}"
        )
        all_expected = set(pusher.expected.values()) | set(good.expected.values())
        fuzz_handled = check_exactly_once(handled_counts(records_db), all_expected, f"{tag} end")
        logs = "\n".join(r.log_text() for r in replicas)
        reader_errors = logs.count("unexpected error in the reader")
        internal_errors = logs.count("internal error while handling")
        assert reader_errors == 0 and internal_errors == 0, (
            f"{tag} reader errors {reader_errors}, internal errors {internal_errors}\n"
            f"{failure_details()}"
        )

        # -- the summary ----------------------------------------------------------------------
        def total(health: Dict[str, Dict[str, Any]], key: str) -> int:
            return sum(int(h[key]) for h in health.values())

        by_worker = {k.decode(): int(v) for k, v in records_db.hgetall(BY_WORKER).items()}
        faults = ", ".join(f"{k} {injector.counts[k]}" for k in FAULT_KINDS if injector.counts[k])
        rss_rows = [
            (
                f"RSS {r.name} (pid {r.pid})",
                f"{rss_start[r.name] / 1024:.1f} -> {rss_phase1[r.name] / 1024:.1f} MiB "
                f"(phase 1 {growth[r.name]:+.1f}), after fuzz {rss_end[r.name] / 1024:.1f} MiB; "
                f"handled {by_worker.get(str(r.pid), 0)}",
            )
            for r in replicas
        ]
        rows = [
            ("seed", seed),
            (
                "replicas",
                f"{REPLICAS} dingworker processes, Redis dedupe, dead-after {DEAD_AFTER}s",
            ),
            (
                "phase 1 pushes",
                f"{len(pusher.records)} ({pusher.kinds['chatbot']} chatbot, "
                f"{pusher.kinds['event']} event; {WARMUP + 1} warm-up)",
            ),
            ("faults", f"{sum(injector.counts.values())}: {faults}"),
            (
                "acks (phase 1, by code)",
                f"{sum(phase1_acks.values())}: "
                + ", ".join(f"{c} x{n}" for c, n in sorted(phase1_acks.items(), key=str))
                + f"; every push acked 200 in the end ({settle:.1f}s after the last)",
            ),
            ("redeliveries by the emulator", redeliveries),
            ("duplicates suppressed", f"{total(health_phase1, 'redeliveries_skipped')} (phase 1)"),
            (
                "handled (exactly once)",
                f"{len(all_expected)} well-formed + {len(fuzz_handled)} fuzz",
            ),
            ("deliberate handler failures", f"{int(records_db.get(FLAKY_FAILURES) or 0)} flaky"),
            (
                "handler errors (all replicas)",
                f"{total(health_end, 'handler_errors')} "
                f"({total(health_end, 'handler_errors') - pusher.flaky} besides the flaky ones)",
            ),
            (
                "OpenAPI sends / token fetches",
                f"{int(records_db.get(API_SENDS) or 0)} / {token_fetches}",
            ),
            (
                "reconnects (client / gateway opens)",
                f"{total(health_phase1, 'reconnects')} / {len(fake.connections)} connections",
            ),
            (
                "fuzz frames",
                f"{sum(fuzz_kinds.values())}: "
                + ", ".join(f"{k} {v}" for k, v in sorted(fuzz_kinds.items())),
            ),
            (
                "fuzz: well-formed between",
                f"{len(good.records)} all acked; reconnects 0; garbage acks {len(garbage_acks)}",
            ),
            *rss_rows,
            (
                "wall time",
                f"{time.monotonic() - started:.1f}s (phase 1 {phase1_seconds:.1f}s, "
                f"fuzz {phase2_seconds:.1f}s)",
            ),
        ]
        print(table(rows, f"dingsync soak ({SIZE.name})"))
        print("fault log:\n  " + "\n  ".join(e for e in events if "fault" in e))
    records_db.close()
    dedupe_db.close()
