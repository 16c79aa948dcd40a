"""The official ``dingtalk-stream`` SDK (0.24.3) with a chatbot handler, as its README writes one.

The handler parses the message (``ChatbotMessage.from_dict``, as every official example does, the
counterpart of the typed message dingsync hands its handlers) and returns OK; with
``--handler sleep`` it also blocks in ``time.sleep`` (a stand-in for a ``requests`` call, which is
what the SDK's own ``reply_text`` does inside the event loop). The gateway URL comes from
``DINGTALK_OPENAPI_ENDPOINT``, read by the SDK at import time.
"""

from __future__ import annotations

import os
import time
from typing import Any, Tuple

from ._common import parse_args, start_watchdog


def main() -> None:
    args = parse_args(__doc__ or "")
    start_watchdog(args.max_seconds)
    import dingtalk_stream

    pause = args.sleep if args.handler == "sleep" else 0.0

    class Handler(dingtalk_stream.ChatbotHandler):  # type: ignore[misc]
        async def process(self, callback: Any) -> Tuple[int, str]:
            dingtalk_stream.ChatbotMessage.from_dict(callback.data)
            if pause:
                time.sleep(pause)
            return dingtalk_stream.AckMessage.STATUS_OK, "OK"

    client = dingtalk_stream.DingTalkStreamClient(
        dingtalk_stream.Credential(
            os.environ["DINGTALK_CLIENT_ID"], os.environ["DINGTALK_CLIENT_SECRET"]
        )
    )
    # The SDK finds its "local IP" by connecting a UDP socket to 8.8.8.8; keep the run on loopback.
    client.get_host_ip = lambda: "127.0.0.1"
    client.register_callback_handler(dingtalk_stream.ChatbotMessage.TOPIC, Handler())
    client.start_forever()  # runs until SIGTERM (default action) or the watchdog


if __name__ == "__main__":
    main()
