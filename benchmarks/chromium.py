"""Debian's Chromium driven by Playwright, for the chat window's browser tests, its screenshot
and its page benchmark; and a bot running against an emulator for them to look at.

Playwright's own browser download cannot reach its host from CI, so the system Chromium
(``apt-get install chromium``) is launched through ``executable_path``. ``DINGSYNC_CHROMIUM``
names another binary.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from typing import Any, Iterator, Optional, Tuple

import dingsync
from dingsync.testing import FakeDingTalk, running_router

__all__ = ["ARGS", "chromium_path", "launch", "running_bot"]

# Headless and quiet: no sandbox (CI runs as root), no GPU, and none of the background traffic
# (component updates, sync, first-run pages) a sealed machine cannot answer.
ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def chromium_path() -> Optional[str]:
    """The Chromium binary to use, or None when there is none."""
    named = os.environ.get("DINGSYNC_CHROMIUM")
    if named:
        return named if os.path.exists(named) else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@contextlib.contextmanager
def launch() -> Iterator[Any]:
    """A Playwright ``Browser`` on the system Chromium.

    Raises:
        RuntimeError: no Chromium, or Playwright is not installed.
    """
    path = chromium_path()
    if path is None:
        raise RuntimeError("no Chromium found: apt-get install chromium (or set DINGSYNC_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise RuntimeError(f"Playwright is missing: pip install -e '.[browser]' ({exc})") from None
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=list(ARGS))
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def running_bot(
    router: dingsync.Router, fake: Optional[FakeDingTalk] = None
) -> Iterator[Tuple[FakeDingTalk, dingsync.StreamClient]]:
    """An emulator (``fake``, or a new one) with ``router`` connected to it by a StreamClient."""
    with contextlib.ExitStack() as stack:
        if fake is None:
            fake = stack.enter_context(FakeDingTalk())
        client = stack.enter_context(running_router(fake, router))
        yield fake, client
