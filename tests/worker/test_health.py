"""dingworker.health: /healthz follows the source, /metrics is valid Prometheus text."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from datetime import datetime, timezone
from typing import Any, Dict, Mapping, Tuple

import pytest

from dingworker.health import HealthServer, render_metrics

# labels: ``app`` on the worker's own samples; ``channel`` and ``outcome`` on the send counter
# of dingsync.metrics (prometheus-client), which follows them
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$")


def parse_prometheus(text: str) -> Dict[str, Tuple[str, float]]:
    """A strict parser of the subset we emit (an ``app`` label at most): every sample has HELP
    and TYPE first; labelled samples are keyed with their label."""
    assert text.endswith("\n")
    types: Dict[str, str] = {}
    helps: set[str] = set()
    samples: Dict[str, Tuple[str, float]] = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helps, f"duplicate HELP for {name}"
            helps.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge"), line
            types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, label, value = match.group(1), match.group(2) or "", float(match.group(3))
            assert name in types and name in helps, f"{name} has no TYPE/HELP"
            if types[name] == "counter":
                assert name.endswith("_total") and value >= 0
            samples[name + label] = (types[name], value)
    return samples


def _get(url: str) -> Tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


STATS: Dict[str, Any] = {
    "connected": True,
    "connections_opened": 2,
    "reconnects": 1,
    "frames_received": 10,
    "acks_sent": 9,
    "redeliveries_skipped": 1,
    "handler_errors": 0,
    "in_flight": 1,
    "last_frame_at": datetime(2024, 1, 1, tzinfo=timezone.utc),
    "last_alive_at": 1_700_000_000.5,
}


class Switch:
    def __init__(self) -> None:
        self.healthy = True

    def __call__(self) -> Tuple[bool, Mapping[str, Any]]:
        return self.healthy, dict(STATS, connected=self.healthy)


def test_healthz_follows_the_source() -> None:
    """200 with the stats as JSON while healthy, 503 when not."""
    switch = Switch()
    with HealthServer(switch, port=0) as server:
        status, ctype, body = _get(server.url + "/healthz")
        assert (status, ctype) == (200, "application/json")
        doc = json.loads(body)
        assert doc["status"] == "ok" and doc["frames_received"] == 10
        assert doc["last_frame_at"].startswith("2024-01-01")
        switch.healthy = False
        status, _, body = _get(server.url + "/healthz")
        assert status == 503 and json.loads(body)["status"] == "unhealthy"


def test_metrics_are_prometheus_text() -> None:
    """/metrics parses strictly and carries the counters and gauges."""
    with HealthServer(Switch(), port=0) as server:
        status, ctype, body = _get(server.url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    samples = parse_prometheus(body)
    assert samples["dingsync_frames_received_total"] == ("counter", 10.0)
    assert samples["dingsync_acks_sent_total"] == ("counter", 9.0)
    assert samples["dingsync_reconnects_total"] == ("counter", 1.0)
    assert samples["dingsync_handler_errors_total"] == ("counter", 0.0)
    assert samples["dingsync_connected"] == ("gauge", 1.0)
    assert samples["dingsync_in_flight"] == ("gauge", 1.0)
    assert samples["dingsync_healthy"] == ("gauge", 1.0)
    assert samples["dingsync_last_frame_timestamp_seconds"][1] == 1704067200.0
    assert samples["dingsync_last_alive_timestamp_seconds"][1] == 1_700_000_000.5


def test_missing_and_none_values_are_left_out() -> None:
    """Keys the source does not report (or reports as None) produce no sample."""
    samples = parse_prometheus(render_metrics(False, {"last_frame_at": None, "acks_sent": 0}))
    assert set(samples) == {"dingsync_healthy", "dingsync_acks_sent_total"}
    assert samples["dingsync_healthy"][1] == 0.0


def test_failing_source_is_unhealthy_not_a_crash() -> None:
    """A source that raises yields 503 with the error, and the server keeps serving."""

    def broken() -> Tuple[bool, Mapping[str, Any]]:
        raise RuntimeError("boom")

    with HealthServer(broken, port=0) as server:
        status, _, body = _get(server.url + "/healthz")
        assert status == 503 and "boom" in json.loads(body)["error"]
        assert _get(server.url + "/metrics")[0] == 200


def test_unknown_path_is_404() -> None:
    """Other paths answer 404 and name the real ones."""
    with HealthServer(Switch(), port=0) as server:
        status, _, body = _get(server.url + "/nope")
    assert status == 404 and "/healthz" in body


@pytest.mark.parametrize("path", ["/healthz", "/metrics"])
def test_head_has_no_body(path: str) -> None:
    """HEAD works for probes that only look at the status."""
    with HealthServer(Switch(), port=0) as server:
        request = urllib.request.Request(server.url + path, method="HEAD")
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200 and resp.read() == b""


def test_stop_is_idempotent() -> None:
    """stop() twice is harmless."""
    server = HealthServer(Switch(), port=0).start()
    server.stop()
    server.stop()
