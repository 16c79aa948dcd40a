"""``make demo``: a scripted conversation with the calculator bot, with no DingTalk account.

It starts ``dingworker --emulator examples.calc:route`` as a real subprocess, reads the
emulator's address from the first line the worker prints (``DINGSYNC_EMULATOR=http://...``),
sends each question through the emulator's control API as a chat message, prints the bot's
reply, and finally stops the worker with SIGTERM, as a process manager would.

Example::

    $ python -m dingworker.demo
    you> 1+1
    bot> 2
    ...

Exit status: 0 when every question got a reply and the worker stopped cleanly; 1 otherwise, with
the reason (and the worker's log) on stderr.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, Callable, Dict, List, Optional, Sequence

import requests

from .emulator import EMULATOR_LINE_PREFIX

__all__ = ["main", "QUESTIONS", "Demo", "DemoError"]

#: The conversation: the seed's adding bot, a bit more arithmetic, and something that is not.
QUESTIONS = ("1+1", "2*(3+4)", "hello")

STARTUP_TIMEOUT = 10.0
REPLY_TIMEOUT = 5.0
STOP_TIMEOUT = 10.0


class DemoError(Exception):
    """The demo could not complete; the message says which step failed."""


def _repo_root() -> Path:
    # worker/ sits next to examples/ in a source checkout (the only place the demo runs from).
    return Path(__file__).resolve().parent.parent


class Demo:
    """One run of the demo: the worker subprocess and an HTTP session to its emulator.

    Example::

        with Demo() as demo:
            print(demo.ask("1+1"))   # "2"
            demo.stop()
    """

    def __init__(self, app: str = "examples.calc:route", *, app_dir: Optional[Path] = None):
        self.app = app
        self.app_dir = app_dir if app_dir is not None else _repo_root()
        self.base = ""
        self.proc: Optional[subprocess.Popen[str]] = None
        self.log: List[str] = []
        self._stdout: queue.Queue[Optional[str]] = queue.Queue()
        self._http = requests.Session()
        self._http.trust_env = False  # a proxy from the environment must not see loopback calls
        self._pumps: List[threading.Thread] = []

    def __enter__(self) -> Demo:
        try:
            self.start()
        except BaseException:  # a failed or interrupted start leaves no worker behind either
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
        self._http.close()

    def start(self) -> None:
        """Start the worker and wait until its emulator has a connected client."""
        if not self.app_dir.is_dir():
            raise DemoError(f"{self.app_dir} is not a directory; run the demo from the repository")
        env = {k: v for k, v in os.environ.items() if not k.startswith("DINGTALK_")}
        env["PYTHONUNBUFFERED"] = "1"
        command = [
            sys.executable,
            "-m",
            "dingworker",
            "--emulator",
            "--app-dir",
            str(self.app_dir),
            "--log-level",
            "warning",
            "--grace",
            "5",
            self.app,
        ]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._pumps = [
            _pump(self.proc.stdout, self._stdout.put),
            _pump(self.proc.stderr, self._keep_log),
        ]
        self.base = self._emulator_address()
        status = self._get("/_emulator/status", wait=STARTUP_TIMEOUT)
        if not status.get("connections"):
            raise DemoError(f"the worker did not connect to the emulator within {STARTUP_TIMEOUT}s")

    def _keep_log(self, line: Optional[str]) -> None:
        if line is not None:
            self.log.append(line.rstrip("\n"))

    def _emulator_address(self) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._stdout.get(timeout=max(remaining, 0.01))
            except queue.Empty:
                line = None
            if line is None:
                assert self.proc is not None
                try:  # stdout closed: the worker is exiting, give it a moment to finish
                    code: Optional[int] = self.proc.wait(timeout=1.0)
                except subprocess.TimeoutExpired:
                    code = None
                when = f"exited with code {code}" if code is not None else f"ran {STARTUP_TIMEOUT}s"
                raise DemoError(
                    f"dingworker {when} without printing its emulator address "
                    f"({EMULATOR_LINE_PREFIX}...)"
                )
            if line.startswith(EMULATOR_LINE_PREFIX):
                return line[len(EMULATOR_LINE_PREFIX) :].strip()

    def _get(self, path: str, **params: Any) -> Dict[str, Any]:
        response = self._http.get(self.base + path, params=params, timeout=REPLY_TIMEOUT + 5)
        response.raise_for_status()
        result: Dict[str, Any] = response.json()
        return result

    def ask(self, text: str) -> str:
        """Send ``text`` as a 1:1 chat message and return the bot's text reply."""
        response = self._http.post(
            self.base + "/_emulator/chatbot",
            json={"text": text, "sender_nick": "demo"},
            timeout=REPLY_TIMEOUT,
        )
        if response.status_code != 200:
            raise DemoError(f"the emulator refused the message {text!r}: {response.text}")
        message_id = response.json()["messageId"]
        found = self._get("/_emulator/replies", message_id=message_id, wait=REPLY_TIMEOUT)
        if not found["replies"]:
            raise DemoError(f"no reply to {text!r} within {REPLY_TIMEOUT}s")
        return reply_text(found["replies"][-1])

    def stop(self) -> int:
        """SIGTERM the worker (a graceful drain) and return its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise DemoError(f"the worker did not exit within {STOP_TIMEOUT}s of SIGTERM") from None

    def close(self) -> None:
        """Make sure the worker is gone: SIGTERM (it drains), then SIGKILL if it hangs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for pump in self._pumps:
            pump.join(timeout=2)  # so that the worker's last log lines are in self.log


def reply_text(reply: Dict[str, Any]) -> str:
    """The text of a recorded session-webhook reply (text or markdown).

    Example:
        >>> reply_text({"body": {"msgtype": "text", "text": {"content": "2"}}})
        '2'
    """
    body = reply.get("body", reply)
    if isinstance(body, dict):
        text = body.get("text")
        if isinstance(text, dict) and isinstance(text.get("content"), str):
            return str(text["content"])
        markdown = body.get("markdown")
        if isinstance(markdown, dict) and isinstance(markdown.get("text"), str):
            return str(markdown["text"])
    return json.dumps(body, ensure_ascii=False)


def _pump(stream: IO[str], sink: Callable[[Optional[str]], None]) -> threading.Thread:
    def run() -> None:
        for line in stream:
            sink(line)
        sink(None)

    thread = threading.Thread(target=run, daemon=True, name="demo-pipe")
    thread.start()
    return thread


class _Terminated(Exception):
    """The demo itself got SIGTERM."""


def _raise_terminated(_signum: int, _frame: Any) -> None:
    raise _Terminated


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the scripted conversation; return the exit status.

    A SIGTERM or Ctrl-C to the demo stops its worker too (SIGTERM, so that it drains) before
    the demo exits with 143 or 130.
    """
    questions = list(argv) if argv else list(QUESTIONS)
    demo = Demo()
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        with demo:
            print(f"dingworker {demo.app} is running against a local DingTalk emulator")
            print(f"(control API: {demo.base}/_emulator/...)\n", flush=True)
            for question in questions:
                print(f"you> {question}")
                print(f"bot> {demo.ask(question)}", flush=True)
            code = demo.stop()
            if code != 0:
                raise DemoError(f"the worker exited with {code} after SIGTERM, expected 0")
            print("\nworker stopped cleanly (SIGTERM -> drained -> exit 0)")
            return 0
    except (DemoError, requests.RequestException) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        if demo.log:
            print("--- worker log ---", file=sys.stderr)
            print("\n".join(demo.log[-40:]), file=sys.stderr)
        return 1
    except (_Terminated, KeyboardInterrupt) as exc:
        print("demo stopped; its worker is stopped too", file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
