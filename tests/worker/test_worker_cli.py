"""The dingworker command through click's CliRunner: argument checks, exit codes, logging setup."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import sys
import threading
from typing import Any, Dict, Iterator, List, Optional

import pytest
from cli_runner import cli_runner
from click.testing import Result

import dingsync
from dingsync.errors import ImportFromStringError
from dingworker.cli import JsonFormatter, Outcome, configure_logging, load_router, main, run_worker
from dingworker.signals import ShutdownRequest, capture_signals

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(autouse=True)
def clean_imports() -> Iterator[None]:
    """Each test imports the fixture modules afresh and leaves sys.path as it found it."""
    path = list(sys.path)
    yield
    sys.path[:] = path
    for name in ("dw_ok_app", "dw_raises_import_error"):
        sys.modules.pop(name, None)


def invoke(args: List[str], env: Optional[Dict[str, Optional[str]]] = None) -> Result:
    base: Dict[str, Optional[str]] = {
        "DINGTALK_CLIENT_ID": None,
        "DINGTALK_CLIENT_SECRET": None,
        "DINGTALK_OPENAPI_ENDPOINT": None,
        "DINGTALK_OAPI_ENDPOINT": None,
    }
    base.update(env or {})
    return cli_runner().invoke(main, args, env=base, catch_exceptions=False)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_help_lists_the_options_and_hides_the_secret() -> None:
    """--help documents every option and the env vars, never a secret's value."""
    result = invoke(["--help"], {"DINGTALK_CLIENT_SECRET": "s3cret-value"})
    assert result.exit_code == 0
    for option in (
        "--app-dir",
        "--factory",
        "--client-id",
        "--client-secret",
        "--concurrency",
        "--dead-after",
        "--max-runtime",
        "--grace",
        "--health-port",
        "--log-level",
        "--log-format",
        "--emulator",
        "DINGTALK_CLIENT_ID",
        "DINGTALK_CLIENT_SECRET",
    ):
        assert option in result.output
    assert "s3cret-value" not in result.output


@pytest.mark.parametrize(
    ("app", "extra", "fragments"),
    [
        ("no_such_module_xyz:route", [], ["no module named 'no_such_module_xyz'", "--app-dir"]),
        ("dw_ok_app:nope", [], ["has no attribute 'nope'"]),
        ("dw_ok_app:NOT_A_ROUTER", [], ["is a dict, not a dingsync.Router"]),
        ("dw_ok_app:create_route", [], ["not a dingsync.Router", "did you mean --factory?"]),
        ("dw_raises_import_error:route", [], ["dingsync_no_such_dependency", "install it"]),
        ("dw_ok_app", [], ['"module:attribute"']),
        ("dw_ok_app:NOT_A_ROUTER", ["--factory"], ["not callable", "drop --factory"]),
        ("dw_ok_app:create_nothing", ["--factory"], ["returned a object, not a dingsync.Router"]),
    ],
)
def test_bad_app_exits_2_with_one_line(app: str, extra: List[str], fragments: List[str]) -> None:
    """Every kind of bad APP is a usage error with a one-line fix, not a traceback."""
    result = invoke(["--app-dir", FIXTURES, *extra, app])
    assert_one_line_error(result, *fragments)


def test_missing_credentials_exit_2_naming_the_variables() -> None:
    """Without credentials (and without --emulator) the message names both env vars."""
    result = invoke(["--app-dir", FIXTURES, "dw_ok_app:route"])
    assert_one_line_error(result, "DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET", "--emulator")


def test_half_the_credentials_is_still_missing() -> None:
    """A client id alone is not enough."""
    result = invoke(["--app-dir", FIXTURES, "dw_ok_app:route"], {"DINGTALK_CLIENT_ID": "id"})
    assert_one_line_error(result, "DINGTALK_CLIENT_SECRET")


def test_malformed_credentials_are_a_usage_error() -> None:
    """A secret pasted with a space in it is refused before any network I/O."""
    result = invoke(
        [
            "--app-dir",
            FIXTURES,
            "--client-id",
            "id",
            "--client-secret",
            "has space",
            "dw_ok_app:route",
        ]
    )
    assert_one_line_error(result, "client_secret")
    assert "has space" not in result.output


def test_bad_endpoint_env_is_a_usage_error() -> None:
    """A malformed DINGTALK_OPENAPI_ENDPOINT is reported, not raised."""
    result = invoke(
        ["--app-dir", FIXTURES, "dw_ok_app:route"],
        {
            "DINGTALK_CLIENT_ID": "id",
            "DINGTALK_CLIENT_SECRET": "secret",
            "DINGTALK_OPENAPI_ENDPOINT": "ftp://nowhere",
        },
    )
    assert_one_line_error(result, "ftp://nowhere")


@pytest.mark.parametrize(
    "option", [["--concurrency", "0"], ["--log-format", "xml"], ["--grace", "-1"]]
)
def test_bad_option_values_exit_2(option: List[str]) -> None:
    """click validates ranges and choices (exit 2)."""
    result = invoke([*option, "--app-dir", FIXTURES, "dw_ok_app:route"])
    assert result.exit_code == 2


def test_factory_runs_against_the_emulator_and_exits_after_max_runtime() -> None:
    """--factory --emulator --max-runtime: builds the Router, runs, drains and exits 0."""
    result = invoke(
        [
            "--app-dir",
            FIXTURES,
            "--factory",
            "--emulator",
            "--max-runtime",
            "0.5",
            "dw_ok_app:create_route",
        ]
    )
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()[:2]
    assert re.fullmatch(r"chat with your bot: http://127\.0\.0\.1:\d+/", first)
    assert second == "DINGSYNC_EMULATOR=" + first.split(": ", 1)[1].rstrip("/")
    assert "/_emulator/chatbot" in result.stderr
    assert "stopped cleanly" in result.stderr


def test_run_restores_signal_handlers_and_logging() -> None:
    """After a run, SIGINT/SIGTERM handlers and the root logger are what they were."""
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    result = invoke(
        ["--app-dir", FIXTURES, "--emulator", "--max-runtime", "0.3", "dw_ok_app:route"]
    )
    assert result.exit_code == 0, result.output
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert root.handlers == handlers and root.level == level


def test_load_router_accepts_a_router_and_a_factory() -> None:
    """load_router returns the Router itself, or the factory's result."""
    router = load_router("dw_ok_app:route", app_dir=FIXTURES)
    assert isinstance(router, dingsync.Router)
    assert load_router("dw_ok_app:create_route", factory=True, app_dir=FIXTURES) is router


def test_load_router_refuses_a_class() -> None:
    """The Router class itself is not an app: the message asks for an instance."""
    with pytest.raises(ImportFromStringError, match="the Router class itself; name an instance"):
        load_router("dingsync:Router")
    with pytest.raises(ImportFromStringError, match=r"is a class \(Decimal\)"):
        load_router("decimal:Decimal")


def test_json_formatter_fields() -> None:
    """JSON lines carry time, level, logger, message, and message_id / exception when present."""
    out = io.StringIO()
    with configure_logging("debug", "json", out):
        log = logging.getLogger("dingsync.test")
        log.info("plain")
        log.warning("with id", extra={"message_id": "m-1"})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("failed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["plain", "with id", "failed"]
    assert set(lines[0]) == {"time", "level", "logger", "message"}
    assert lines[1]["message_id"] == "m-1" and lines[1]["level"] == "WARNING"
    assert lines[0]["logger"] == "dingsync.test" and lines[0]["time"].endswith("+00:00")
    assert "ValueError: bad" in lines[2]["exception"]


def test_text_format_tags_the_message_id() -> None:
    """Text lines end with [message_id=...] when the record has one."""
    out = io.StringIO()
    with configure_logging("info", "text", out):
        logging.getLogger("dingsync.test").info("acked", extra={"message_id": "m-2"})
        logging.getLogger("dingsync.test").debug("hidden at info")
    assert out.getvalue().rstrip().endswith("dingsync.test: acked [message_id=m-2]")
    assert "hidden" not in out.getvalue()


def test_json_formatter_is_plain_json() -> None:
    """Non-ASCII text stays readable."""
    record = logging.LogRecord("x", logging.INFO, "f", 1, "你好", None, None)
    assert json.loads(JsonFormatter().format(record))["message"] == "你好"


def test_signals_first_drains_second_hard() -> None:
    """First signal: drain; second: hard; handlers restored afterwards."""
    request = ShutdownRequest()
    before = signal.getsignal(signal.SIGTERM)
    with capture_signals(request) as installed:
        assert installed
        os.kill(os.getpid(), signal.SIGTERM)
        assert request.drain and not request.hard
        os.kill(os.getpid(), signal.SIGINT)
        assert request.hard and request.last_signal == signal.SIGINT
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_are_not_installed_off_the_main_thread() -> None:
    """In another thread capture_signals installs nothing (Python would refuse)."""
    seen: List[Any] = []

    def run() -> None:
        with capture_signals(ShutdownRequest()) as installed:
            seen.append(installed)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [False]


class StubClient:
    """Stands in for StreamClient in run_worker: records stop() calls, can die on start()."""

    instances: List[StubClient] = []
    die = False

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        self.error: Optional[BaseException] = None
        self.stops: List[bool] = []
        self.stats = dingsync.stream.StreamStats()
        StubClient.instances.append(self)

    def start(self) -> StubClient:
        if StubClient.die:
            self.error = dingsync.ReconnectGaveUp("gave up after 3 attempts", attempts=3)
        return self

    def stop(self, timeout: float = 30.0, *, drain: bool = True) -> None:
        self.stops.append(drain)


@pytest.fixture()
def stub_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[StubClient]]:
    import dingsync.stream

    monkeypatch.setattr(dingsync, "StreamClient", StubClient)
    StubClient.instances = []
    StubClient.die = False
    yield StubClient


CREDS = dingsync.Credentials(client_id="id", client_secret="secret")


def test_client_that_gives_up_exits_1(
    stub_client: type[StubClient], caplog: pytest.LogCaptureFixture
) -> None:
    """When the stream client's thread dies (ReconnectGaveUp), the worker logs it and exits 1."""
    stub_client.die = True
    outcome = run_worker(dingsync.Router(), credentials=CREDS, grace=1)
    assert outcome == Outcome(1, clean=True)
    assert "ReconnectGaveUp: gave up after 3 attempts" in caplog.text


def test_another_thread_can_request_the_stop(stub_client: type[StubClient]) -> None:
    """shutdown.request() from any thread drains and returns exit code 0."""
    request = ShutdownRequest()
    timer = threading.Timer(0.1, request.request, args=("deploy",))
    timer.start()
    outcome = run_worker(dingsync.Router(), credentials=CREDS, shutdown=request)
    timer.join()
    assert outcome == Outcome(0, clean=True)
    assert stub_client.instances[0].stops == [True]
