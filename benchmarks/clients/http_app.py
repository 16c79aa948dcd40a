"""The Router ``dingworker --http`` serves in the callbacks figure: trivial handlers, so that
the figure measures the transport (verify, decrypt, dispatch, answer), not a handler."""

import dingsync

route = dingsync.Router()


@route.chatbot
def on_message(msg: dingsync.ChatbotMessage) -> None:
    """Nothing to do: the answer is the figure."""


@route.event()
def on_event(event: dingsync.Event) -> None:
    """Nothing to do: the encrypted "success" is the figure."""
