"""The README's "Install" section, followed on a clean environment: a wheel built from this
checkout, installed without extras into a fresh venv (issue 15, items 1 and 2).

Slow (a wheel build and two installs, about 15 s with a warm pip cache), so it is marked
``install``; it runs in every ``make test`` and ``.ci/run``. pip's own cache keeps the
downloads (setuptools for the build, requests, pytest, websockets ...) between runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple

import pytest

import dingsync

pytestmark = pytest.mark.install

CHECKOUT = Path(__file__).resolve().parents[1]
README = (CHECKOUT / "README.md").read_text(encoding="utf-8")

UNRELATED_TEST = """
def test_arithmetic():
    assert 1 + 1 == 2
"""
FIXTURE_TEST = """
def test_uses_the_emulator(dingtalk):
    assert dingtalk.api_base.startswith("http://127.0.0.1:")
"""


def _install_section() -> str:
    match = re.search(r"^## Install\n(.*?)^## ", README, flags=re.DOTALL | re.MULTILINE)
    assert match, "README has no '## Install' section"
    return match.group(1)


def _readme_command(start: str) -> List[str]:
    """The README's shell line that starts with ``start``, without its comment, as argv."""
    for block in re.findall(r"```sh\n(.*?)```", _install_section(), flags=re.DOTALL):
        for line in block.splitlines():
            if line.startswith(start):
                return shlex.split(line, comments=True)
    raise AssertionError(f"the Install section has no command starting with {start!r}")


def _env() -> Dict[str, str]:
    # Nothing of this checkout's environment may leak into the fresh one.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(argv: List[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def _ok(argv: List[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = _run(argv, cwd)
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout}\n{done.stderr}"
    return done


class Fresh(NamedTuple):
    root: Path
    python: Path
    bin: Path
    wheel: Path

    def pip(self, *args: str) -> List[str]:
        # The outer pip installs into the venv (pip --python): no pip bootstrap per run.
        return [sys.executable, "-m", "pip", "--python", str(self.python), *args]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    """The wheel built as the README says, installed as the README says, plus pytest."""
    root = tmp_path_factory.mktemp("fresh-install")
    build = _readme_command("pip wheel")
    build = [sys.executable, "-m", *[str(CHECKOUT) if a == "./dingsync" else a for a in build]]
    _ok(build, root)
    wheels = list((root / "dist").glob("dingsync-*.whl"))
    assert len(wheels) == 1, wheels
    wheel = wheels[0]
    _ok([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], root)
    bindir = root / "venv" / ("Scripts" if os.name == "nt" else "bin")
    env = Fresh(root, bindir / "python", bindir, wheel)
    install = _readme_command("pip install dist/")
    assert install[-1] == f"dist/{wheel.name}", "the README names another wheel than the build"
    _ok(env.pip(*install[1:]), root)
    _ok(env.pip("install", "-q", "pytest"), root)
    yield env


def test_readme_wheel_name_is_this_version() -> None:
    assert f"dingsync-{dingsync.__version__}-py3-none-any.whl" in _install_section()


def test_plain_install_leaves_pytest_working_then_the_hint_adds_the_extra(fresh: Fresh) -> None:
    """One story, in order, because the last step changes the venv: an unrelated project's
    tests pass; a test using ``dingtalk`` fails with the command for the testing extra; that
    command works, and the same test then passes."""
    probe = _run([str(fresh.python), "-c", "import websockets"], fresh.root)
    assert probe.returncode != 0, "the fresh venv must not have the testing extra yet"
    unrelated = fresh.root / "unrelated"
    unrelated.mkdir()
    (unrelated / "test_unrelated.py").write_text(UNRELATED_TEST, encoding="utf-8")
    done = _run([str(fresh.python), "-m", "pytest", "-q", "test_unrelated.py"], unrelated)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "1 passed" in output and "Error while loading plugin" not in output

    bot = fresh.root / "bot"
    bot.mkdir()
    (bot / "test_bot.py").write_text(FIXTURE_TEST, encoding="utf-8")
    done = _run([str(fresh.python), "-m", "pytest", "-q", "test_bot.py"], bot)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output  # a failed test, not a broken pytest (exit 3 or 4)
    hint = re.search(r"pip install '([^']*)'", output)
    assert hint, output
    # It names the wheel this copy came from, with the extra: not a package the index lacks.
    assert hint.group(1) == f"dingsync[testing] @ {fresh.wheel.as_uri()}"

    _ok(fresh.pip("install", hint.group(1)), fresh.root)
    done = _run([str(fresh.python), "-m", "pytest", "-q", "test_bot.py"], bot)
    assert done.returncode == 0, done.stdout + done.stderr


def test_console_scripts_are_in_the_venv_bin(fresh: Fresh) -> None:
    for name in ("dingworker", "dingsync"):
        done = _run([str(fresh.bin / name), "--help"], fresh.root)
        assert done.returncode == 0, done.stderr
        assert "Usage:" in done.stdout
