"""Session webhooks: the ``sessionWebhook`` URL every pushed chatbot message carries.

A session is created when a chatbot frame is prepared (``_pushes.py``) and expires
``session_webhook_ttl`` seconds after the message's ``createAt`` (emulator clock). The route
(``routes/session.py``) checks a session with ``_session_state`` and records what the client
posted with ``_record_reply``; tests read ``fake.replies`` or call :meth:`wait_for_reply`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

import attrs

from ._records import Reply

__all__ = ["SessionWebhookMixin"]


@attrs.define(eq=False)
class _Session:
    token: str = attrs.field(repr=False)
    message_id: str
    msg_id: str
    conversation_id: str
    expires_at_ms: int


class SessionWebhookMixin:
    """Session webhooks of chatbot pushes and the replies posted to them (part of GatewayMixin)."""

    if TYPE_CHECKING:
        _gw_lock: threading.RLock
        _gw_cond: threading.Condition

        def now(self) -> float: ...

        def now_ms(self) -> int: ...

        def wait_until(
            self,
            predicate: Callable[[], bool],
            timeout: float = 5.0,
            message: Optional[str] = None,
        ) -> None: ...

    def _init_sessions(self) -> None:
        """Called by ``GatewayMixin._init_state``."""
        self.replies: List[Reply] = []
        self._sessions: Dict[str, _Session] = {}
        self._session_by_mid: Dict[str, _Session] = {}

    def _add_session(self, session: _Session) -> None:
        with self._gw_lock:
            self._sessions[session.token] = session
            self._session_by_mid[session.message_id] = session

    def _session_state(self, token: Optional[str]) -> Tuple[str, Optional[_Session]]:
        with self._gw_lock:
            session = self._sessions.get(token or "")
            if session is None:
                return "unknown", None
            if self.now_ms() > session.expires_at_ms:
                return "expired", session
            return "ok", session

    def _record_reply(self, session: _Session, body: Mapping[str, Any]) -> Reply:
        reply = Reply(
            session=session.token,
            message_id=session.message_id,
            msg_id=session.msg_id,
            conversation_id=session.conversation_id,
            msgtype=str(body.get("msgtype")),
            body=dict(body),
            at=self.now(),
        )
        with self._gw_lock:
            self.replies.append(reply)
            self._gw_cond.notify_all()
        return reply

    def expire_session(self, session_or_message_id: str) -> None:
        """Expire a session webhook now, by its ``session`` token, messageId or ``msgId``.

        Example:
            >>> fake.expire_session(mid)                            # doctest: +SKIP
        """
        with self._gw_lock:
            session = self._sessions.get(session_or_message_id) or self._session_by_mid.get(
                session_or_message_id
            )
            if session is None:
                session = next(
                    (s for s in self._sessions.values() if s.msg_id == session_or_message_id), None
                )
            if session is None:
                raise KeyError(f"no session webhook for {session_or_message_id!r}")
            session.expires_at_ms = self.now_ms() - 1

    def wait_for_reply(
        self, timeout: float = 5.0, predicate: Optional[Callable[[Reply], bool]] = None
    ) -> Reply:
        """The first recorded session-webhook reply matching ``predicate`` (default: any).

        Example:
            >>> r = fake.wait_for_reply(predicate=lambda r: r.message_id == mid)  # doctest: +SKIP
            >>> r.text                                                             # doctest: +SKIP
        """

        def match() -> Optional[Reply]:
            return next((r for r in self.replies if predicate is None or predicate(r)), None)

        self.wait_until(
            lambda: match() is not None,
            timeout,
            f"no matching session-webhook reply within {timeout}s",
        )
        found = match()
        assert found is not None
        return found
