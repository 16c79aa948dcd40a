"""One message, from its dedupe claim to its ack: the handler path of both transports.

The StreamClient's handler threads and the CallbackApp's request threads run the same steps:
decode the payload, claim the message in the dedupe store (DingTalk redelivers late-acked
messages, to any connection, replica or instance; only a new claim runs the handler), run the
handler with a :class:`~dingsync.Context`, remember the ack, and hand it to the transport.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Tuple

import attrs

from .context import Context, PostJson
from .dedupe import NEW, PROCESSING, Claim, Deduper
from .errors import ProtocolError
from .frames import Ack, Frame
from .routing import AckPolicy, Route, Router

__all__ = ["Jobs", "Job"]

log = logging.getLogger("dingsync.stream")

#: A frame, its route, and where its ack goes (a stream connection, an HTTP answer), which
#: only the transport's ``send_ack`` looks at.
Job = Tuple[Frame, Route, Any]


@attrs.define
class Jobs:
    """Runs jobs: ``run`` is the StreamClient's handler pool's job function, and what the
    CallbackApp calls for each request.

    ``send_ack(target, ack)`` hands an ack to the transport; ``count(name)`` bumps
    ``"redeliveries_skipped"`` or ``"handler_errors"``; ``skip()`` says a hard stop is on, so
    a job that has not started is left for DingTalk to deliver again. ``api`` is what
    handlers get as ``ctx.api``.

    Example:
        >>> jobs = Jobs(router, deduper, client_id="id", api=api, poster=None,  # doctest: +SKIP
        ...     send_ack=send, count=count, skip=lambda: False)
        >>> jobs.run((frame, route, conn))  # doctest: +SKIP
    """

    router: Router
    deduper: Deduper[Tuple[Any, str]]
    client_id: str
    api: Any
    poster: Optional[PostJson]
    send_ack: Callable[[Any, Ack], None]
    count: Callable[[str], None]
    skip: Callable[[], bool]

    def run(self, job: Job) -> None:
        """Handle one frame; never raises."""
        frame, route, conn = job
        if self.skip():
            return  # not run, not acked: DingTalk delivers it again
        try:
            self._process(frame, route, conn)
        except Exception:  # a bug here must cost one message, never a handler thread
            log.exception("internal error while handling message %s", frame.message_id)

    def _process(self, frame: Frame, route: Route, conn: Any) -> None:
        receipt = route.ack == AckPolicy.RECEIPT
        try:
            payload = route.decode(frame)
        except ProtocolError as exc:
            if not receipt:
                self.send_ack(conn, self.router.malformed(frame, exc))
            return
        key = f"{self.client_id}:{route.dedupe_key(frame, payload)}"
        claim = self.deduper.claim(key, (conn, frame.message_id))
        if claim is None:  # running on another thread: acked when that run finishes
            self.count("redeliveries_skipped")
            return
        if claim.state != NEW:
            self._answer_duplicate(frame, route, conn, key, claim)
            return
        if receipt:  # redeliveries during the handler get the receipt ack too
            self.deduper.remember(key, route.receipt_ack(frame.message_id))
        ack = self._run_handler(frame, route, payload, again=claim.attempt > 1)
        if not receipt:
            # Stored before it is sent: a duplicate arriving right after the ack finds it.
            self.deduper.remember(key, ack)
            self.send_ack(conn, ack)
        self._ack_waiters(key, None if receipt else ack)

    def _run_handler(self, frame: Frame, route: Route, payload: Any, *, again: bool) -> Ack:
        try:
            ctx = Context(
                frame=frame, message=payload, api=self.api, redelivered=again, post=self.poster
            )
            ack = self.router.invoke(route, payload, ctx)
        except BaseException as exc:  # KeyboardInterrupt raised by a handler: still one message
            log.error(
                "handler %s raised %s on message %s",
                route.name,
                type(exc).__name__,
                frame.message_id,
            )
            ack = route.error_ack(frame.message_id, exc)
        if ack.code >= 500:
            self.count("handler_errors")
        return ack

    def _answer_duplicate(
        self, frame: Frame, route: Route, conn: Any, key: str, claim: Claim
    ) -> None:
        self.count("redeliveries_skipped")
        if claim.state == PROCESSING:
            # Another replica runs it: its ack answers the gateway, or the next redelivery
            # finds the cached ack.
            log.info("message %s is being handled elsewhere; not run again", frame.message_id)
            self._ack_waiters(key, None)
            return
        ack = claim.ack or route.receipt_ack(frame.message_id)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("message %s was handled already; replaying its ack", frame.message_id)
        if route.ack == AckPolicy.RECEIPT:  # the reader acked it on receipt already
            self._ack_waiters(key, None)
            return
        self.send_ack(conn, attrs.evolve(ack, message_id=frame.message_id))
        self._ack_waiters(key, ack)

    def _ack_waiters(self, key: str, ack: Optional[Ack]) -> None:
        for conn, message_id in self.deduper.finish(key):
            if ack is not None:
                self.send_ack(conn, attrs.evolve(ack, message_id=message_id))
