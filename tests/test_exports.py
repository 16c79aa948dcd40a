"""The public surface: ``dingsync.__all__`` is pinned, every name resolves, imports stay light."""

from __future__ import annotations

import subprocess
import sys

import dingsync

EXPECTED = {
    "__version__",
    "Router",
    "Context",
    "StreamClient",
    "StreamConfig",
    "ReconnectPolicy",
    "MemoryDedupeStore",
    "RedisDedupeStore",
    "CallbackApp",
    "ChatbotMessage",
    "CardCallback",
    "CardResponse",
    "Event",
    "Frame",
    "Headers",
    "Ack",
    "ApiClient",
    "WebhookRobot",
    "MemoryTokenCache",
    "FileTokenCache",
    "RedisTokenCache",
    "Credentials",
    "Endpoints",
    "DingSyncError",
    "ConfigurationError",
    "AuthError",
    "ApiError",
    "RateLimited",
    "PermissionDenied",
    "TransportError",
    "StreamError",
    "ProtocolError",
    "ReconnectGaveUp",
}


def test_all_is_pinned() -> None:
    """Adding or removing a public name is a deliberate change to this list."""
    assert set(dingsync.__all__) == EXPECTED
    assert len(dingsync.__all__) == len(EXPECTED), "duplicate names in __all__"


def test_every_public_name_resolves() -> None:
    """Each lazily exported name imports, and unknown names raise AttributeError."""
    for name in dingsync.__all__:
        assert getattr(dingsync, name) is not None, name
    try:
        dingsync.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("unknown attribute did not raise")


def test_sending_does_not_import_the_receiving_stack() -> None:
    """A send-only script pays neither for websocket-client, tenacity, click nor the emulator."""
    code = (
        "import sys, dingsync\n"
        "from dingsync import messages\n"
        "dingsync.ApiClient, dingsync.WebhookRobot, dingsync.FileTokenCache\n"
        "heavy = [m for m in ('websocket', 'tenacity', 'click', 'websockets', 'dingsync.testing', "
        "'dingsync.stream') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
