"""Without Chromium the browser tests skip with one line, unless CI made them mandatory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_without_chromium(**env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "DINGSYNC_REQUIRE_BROWSER"}
    environ.update(env, DINGSYNC_CHROMIUM="/nonexistent/chromium")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:randomly", "-p", "no:cacheprovider"]
        + ["tests/browser/test_chat_browser.py", "-k", "calc_bot"],
        cwd=REPO,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_missing_chromium_skips_with_one_line() -> None:
    """Locally, a machine without Chromium skips the browser tests and says why in one line."""
    result = run_without_chromium()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 skipped" in result.stdout
    assert "browser tests skipped: no Chromium (apt-get install chromium)" in result.stdout


def test_missing_chromium_fails_when_ci_requires_the_browser() -> None:
    """With DINGSYNC_REQUIRE_BROWSER set (as .ci/run does), a missing Chromium is an error."""
    result = run_without_chromium(DINGSYNC_REQUIRE_BROWSER="1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "DINGSYNC_REQUIRE_BROWSER is set but no Chromium" in result.stdout
