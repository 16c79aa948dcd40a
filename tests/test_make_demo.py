"""`make demo` installs only what the demo needs and says what it is doing (issue 15, item 9).

The Makefile runs here for real, with a stand-in ``python3`` whose venv holds stand-in ``pip``
and ``python`` scripts that log their arguments: the test sees exactly what a fresh clone would
install and run, in a fraction of a second. The full run is timed by hand (the branch report).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make and sh")

# `python3 -m venv [--without-pip] DIR` makes DIR/bin/pip and DIR/bin/python, which log their
# argv; `python3 -m pip` works unless NO_HOST_PIP is set (a python3 without pip).
FAKE_PYTHON = """#!/bin/sh
echo "python3 $*" >> "$CALLS"
if [ "$1" = "-m" ] && [ "$2" = "pip" ] && [ -n "$NO_HOST_PIP" ]; then
    exit 1
fi
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
    for last in "$@"; do :; done
    mkdir -p "$last/bin"
    for tool in pip python; do
        printf '#!/bin/sh\\necho "%s $*" >> "$CALLS"\\n' "$tool" > "$last/bin/$tool"
        chmod +x "$last/bin/$tool"
    done
fi
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture()
def clone(tmp_path: Path) -> Path:
    for name in ("Makefile", "setup.cfg", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    _executable(tmp_path / "fake-python3", FAKE_PYTHON)
    return tmp_path


def make_demo(clone: Path, host_pip: bool = True) -> tuple[str, List[str]]:
    env = dict(os.environ, CALLS=str(clone / "calls.log"))
    env.pop("NO_HOST_PIP", None)
    if not host_pip:
        env["NO_HOST_PIP"] = "1"
    done = subprocess.run(
        ["make", "demo", f"PY={clone / 'fake-python3'}"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    calls = (clone / "calls.log").read_text(encoding="utf-8").splitlines()
    return done.stdout, calls


INSTALL = "install --disable-pip-version-check --no-compile pip -e .[testing]"


def test_fresh_clone_installs_only_the_testing_extra_and_shows_each_step(clone: Path) -> None:
    out, calls = make_demo(clone)
    assert calls == [
        "python3 -m venv --without-pip .venv",
        "python3 -m pip --python .venv/bin/python --version",
        f"python3 -m pip --python .venv/bin/python {INSTALL}",
        "python -m dingworker.demo",
    ]
    steps = [line for line in out.splitlines() if line.startswith("==> ")]
    assert len(steps) == 4 and ".venv/bin/dingworker" in steps[-1]


def test_without_a_host_pip_the_venv_gets_its_own(clone: Path) -> None:
    _, calls = make_demo(clone, host_pip=False)
    assert calls == [
        "python3 -m venv --without-pip .venv",
        "python3 -m pip --python .venv/bin/python --version",
        "python -m ensurepip --default-pip",
        f"pip {INSTALL}",
        "python -m dingworker.demo",
    ]


def test_a_venv_that_make_test_prepared_is_reused(clone: Path) -> None:
    make_demo(clone)
    (clone / "calls.log").unlink()
    (clone / ".venv" / ".demo-installed").unlink()
    (clone / ".venv" / ".installed").touch()  # what `make test` leaves
    _, calls = make_demo(clone)
    assert calls == ["python -m dingworker.demo"]
