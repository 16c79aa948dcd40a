"""Browser tests of the chat window: Playwright driving Debian's Chromium.

They skip with one line when Chromium or Playwright is missing, unless DINGSYNC_REQUIRE_BROWSER
is set (``.ci/run`` sets it), in which case a missing browser is a failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # benchmarks/ and examples/ are not installed packages

from benchmarks.chromium import chromium_path, launch  # noqa: E402

REQUIRED = bool(os.environ.get("DINGSYNC_REQUIRE_BROWSER"))


def _missing() -> str:
    if chromium_path() is None:
        return "no Chromium (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[browser]')"
    return ""


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if REQUIRED:
            pytest.fail(f"DINGSYNC_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(f"browser tests skipped: {missing}")
    with launch() as running:
        yield running


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 860}, accept_downloads=True)
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    errors: list = []
    opened.on("pageerror", lambda error: errors.append(error))
    try:
        yield opened
        assert not errors, f"the page raised: {errors}"
    finally:
        context.close()
