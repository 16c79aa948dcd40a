"""The official dingtalk-stream SDK (0.24.3), unchanged, as a tiny echo bot.

Run as a subprocess by test_official_sdk.py with DINGTALK_OPENAPI_ENDPOINT pointing at the
emulator; the SDK reads that variable at import time, so it must be in the environment first.
"""

from __future__ import annotations

import os

import dingtalk_stream
from dingtalk_stream import AckMessage, ChatbotMessage


class Echo(dingtalk_stream.ChatbotHandler):
    async def process(self, callback):  # type: ignore[no-untyped-def]
        incoming = ChatbotMessage.from_dict(callback.data)
        self.reply_text("echo: " + incoming.text.content.strip(), incoming)
        return AckMessage.STATUS_OK, "OK"


class Events(dingtalk_stream.EventHandler):
    async def process(self, event):  # type: ignore[no-untyped-def]
        return AckMessage.STATUS_OK, "OK"


def main() -> None:
    credential = dingtalk_stream.Credential(
        os.environ["DINGTALK_CLIENT_ID"], os.environ["DINGTALK_CLIENT_SECRET"]
    )
    client = dingtalk_stream.DingTalkStreamClient(credential)
    client.register_all_event_handler(Events())
    client.register_callback_handler(ChatbotMessage.TOPIC, Echo())
    client.start_forever()


if __name__ == "__main__":
    main()
