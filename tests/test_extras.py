"""Install hints for a missing extra name the place dingsync came from (issue 15, item 2)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import pytest

from dingsync import _extras


def hint_for(monkeypatch: pytest.MonkeyPatch, direct_url: Optional[Dict[str, Any]]) -> str:
    monkeypatch.setattr(_extras, "_direct_url", lambda: direct_url)
    return _extras.install_hint("testing")


def test_wheel_file(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "file:///srv/wheels/dingsync-0.1.0-py3-none-any.whl"
    found = hint_for(monkeypatch, {"url": url, "archive_info": {}})
    assert found == f"pip install 'dingsync[testing] @ {url}'"


def test_checkout_plain_and_editable(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = {"url": "file:///home/li/dingsync", "dir_info": {}}
    assert hint_for(monkeypatch, plain) == "pip install '/home/li/dingsync[testing]'"
    editable = {"url": "file:///home/li/dingsync", "dir_info": {"editable": True}}
    assert hint_for(monkeypatch, editable) == "pip install -e '/home/li/dingsync[testing]'"


def test_git_url_keeps_the_revision_and_drops_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    found = hint_for(
        monkeypatch,
        {
            "url": "https://bot:s3cr3t-token@git.example.com/team/dingsync.git",
            "vcs_info": {"vcs": "git", "commit_id": "abc123", "requested_revision": "v0.1"},
        },
    )
    assert found == (
        "pip install 'dingsync[testing] @ git+https://git.example.com/team/dingsync.git@v0.1'"
    )
    assert "s3cr3t" not in found


def test_unknown_origin_never_sends_to_the_index_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_extras, "_checkout", lambda: None)
    found = hint_for(monkeypatch, None)
    assert "from where you installed dingsync" in found


def test_this_checkout_is_named_when_pip_recorded_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_extras, "_checkout", lambda: "/work/dingsync")
    assert hint_for(monkeypatch, None) == "pip install -e '/work/dingsync[testing]'"


def test_missing_extra_names_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_extras, "_direct_url", lambda: None)
    text = _extras.missing_extra("--emulator", "testing", ModuleNotFoundError(name="websockets"))
    assert text.startswith(
        "--emulator needs dingsync's 'testing' extra (No module named 'websockets')"
    )
    assert "\n" not in text
