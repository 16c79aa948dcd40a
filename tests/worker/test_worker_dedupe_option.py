"""dingworker --dedupe: memory (the default) or a Redis URL shared by replicas."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any, Dict, List, Optional

import pytest
from cli_runner import cli_runner
from click.testing import CliRunner, Result

import dingsync
from dingworker import cli
from dingworker.cli import Outcome, build_dedupe_store

APP = "dw_ok_app:route"
FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ENV = {
    "DINGTALK_CLIENT_ID": "dedupe-test-id",
    "DINGTALK_CLIENT_SECRET": "dedupe-test-secret",
    "DINGTALK_OPENAPI_ENDPOINT": None,
    "DINGTALK_OAPI_ENDPOINT": None,
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> List[Dict[str, Any]]:
    """run_worker replaced by a recorder: the command is checked up to the point it would run."""
    seen: List[Dict[str, Any]] = []

    def fake_run_worker(router: Any, **kwargs: Any) -> Outcome:
        seen.append(kwargs)
        return Outcome(0)

    monkeypatch.setattr(cli, "run_worker", fake_run_worker)
    path = list(sys.path)
    yield seen
    sys.path[:] = path
    sys.modules.pop("dw_ok_app", None)


def invoke(*args: str) -> Result:
    return cli_runner().invoke(
        cli.main, ["--app-dir", FIXTURES, *args, APP], env=ENV, catch_exceptions=False
    )


def assert_usage_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_memory_is_the_default(calls: List[Dict[str, Any]]) -> None:
    """Without --dedupe (or with --dedupe memory) the client keeps its own in-memory store."""
    for args in ((), ("--dedupe", "memory"), ("--dedupe", "MEMORY")):
        result = invoke(*args)
        assert result.exit_code == 0, result.output
        assert calls.pop()["dedupe"] is None
        assert "dedupe: in memory" in result.stderr


def test_redis_url_builds_a_shared_store(calls: List[Dict[str, Any]]) -> None:
    """A redis:// URL: a RedisDedupeStore on that host, port and db, kept dedupe_ttl seconds;
    the log line names the server but never the password."""
    result = invoke("--dedupe", "redis://:pa55word@127.0.0.1:6390/3")
    assert result.exit_code == 0, result.output
    store = calls.pop()["dedupe"]
    assert isinstance(store, dingsync.RedisDedupeStore)
    assert store.ttl == dingsync.StreamConfig().dedupe_ttl
    kwargs = store.redis.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6390, 3)
    assert "dedupe: Redis at 127.0.0.1:6390/3" in result.stderr
    assert "pa55word" not in result.output
    assert "pa55word" not in repr(store)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("sqlite:///tmp/x.db", "not a sqlite value"),
        ("memcached", "not a plain value"),
        ("redis://127.0.0.1:notaport/0", "not a usable Redis URL"),
        ("redis://127.0.0.1:6379/0?db=abc", "not a usable Redis URL"),
    ],
)
def test_bad_values_are_usage_errors(
    calls: List[Dict[str, Any]], value: str, fragment: str
) -> None:
    assert_usage_error(invoke("--dedupe", value), "--dedupe", fragment)
    assert not calls


def test_missing_redis_package_is_a_usage_error(
    calls: List[Dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the redis package: exit 2 and how to install it, before anything runs."""
    monkeypatch.setitem(sys.modules, "redis", None)  # makes `import redis` fail
    # From a checkout the hint names it; the index has no dingsync to install.
    assert_usage_error(invoke("--dedupe", "redis://127.0.0.1:6379/0"), "pip install", "[redis]'")
    assert not calls
    assert build_dedupe_store("memory") is None  # memory never needs it


def test_redis_is_imported_only_when_used() -> None:
    """Loading the command (and building the memory store) does not import redis."""
    code = (
        "import sys; from dingworker.cli import build_dedupe_store; "
        "assert build_dedupe_store('memory') is None; "
        "print('redis' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False", out.stderr


def test_help_documents_the_option() -> None:
    result = CliRunner().invoke(cli.main, ["--help"])
    assert "--dedupe URL" in result.output and "redis://" in result.output


def test_run_worker_hands_the_store_to_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """run_worker(dedupe=...) gives the StreamClient that store."""
    built: List[Optional[Any]] = []

    class Client:
        def __init__(self, *args: Any, dedupe: Any = None, **kwargs: Any) -> None:
            built.append(dedupe)
            raise RuntimeError("stop here")

    monkeypatch.setattr(dingsync, "StreamClient", Client)
    store = dingsync.MemoryDedupeStore(ttl=5)
    with pytest.raises(RuntimeError, match="stop here"):
        cli.run_worker(
            dingsync.Router(),
            credentials=dingsync.Credentials(client_id="id", client_secret="secret"),
            dedupe=store,
        )
    assert built == [store]
