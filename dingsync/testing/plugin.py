"""pytest plugin (entry point ``pytest11: dingsync``): the ``dingtalk`` fixture.

The emulator is imported inside the fixture, so merely having dingsync installed never makes
pytest import websockets or start anything: without the ``testing`` extra, every other test
runs, and a test that asks for ``dingtalk`` fails with the command that installs the extra.

Example::

    def test_bot_replies(dingtalk):
        mid = dingtalk.push_chatbot("ping")
        ...
        assert dingtalk.wait_for_reply().text == "pong"

Arguments for :class:`~dingsync.testing.FakeDingTalk` can be given by indirect parametrisation::

    @pytest.mark.parametrize("dingtalk", [{"seed": 7}], indirect=True)
    def test_spread(dingtalk): ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, Iterator

import pytest

if TYPE_CHECKING:
    from ._fake import FakeDingTalk

__all__ = ["dingtalk"]


@pytest.fixture
def dingtalk(request: pytest.FixtureRequest) -> Iterator[FakeDingTalk]:
    """A started :class:`~dingsync.testing.FakeDingTalk`, stopped after the test."""
    try:
        from ._fake import FakeDingTalk
    except ImportError as exc:
        from .._extras import missing_extra

        pytest.fail(missing_extra("the dingtalk fixture", "testing", exc), pytrace=False)
    kwargs: Dict[str, Any] = dict(getattr(request, "param", None) or {})
    fake = FakeDingTalk(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
