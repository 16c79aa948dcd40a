"""dingsync's StreamClient with a chatbot handler, default settings unless told otherwise.

The handler receives the typed message and returns (``--handler sleep``: blocks in
``time.sleep`` first, a stand-in for a ``requests`` call). On SIGTERM it stops gracefully and
prints the client's ``stats`` as one JSON line, for the harness's log.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any, Dict

from ._common import parse_args, start_watchdog


def as_dict(stats: Any) -> Dict[str, Any]:
    """Best effort: the client's stats object as a dict (attrs, dataclass or plain object)."""
    for attempt in (
        lambda s: __import__("attrs").asdict(s),
        lambda s: __import__("dataclasses").asdict(s),
        lambda s: dict(s),
        lambda s: dict(vars(s)),
    ):
        try:
            return attempt(stats)
        except Exception:
            continue
    return {"repr": repr(stats)}


def main() -> None:
    args = parse_args(__doc__ or "")
    start_watchdog(args.max_seconds)
    import dingsync
    from dingsync.config import Endpoints

    route = dingsync.Router()
    pause = args.sleep if args.handler == "sleep" else 0.0

    @route.chatbot
    def on_message(msg: Any, ctx: Any) -> None:
        if pause:
            time.sleep(pause)

    options: Dict[str, Any] = {}
    if args.dead_after is not None:
        options["dead_after"] = args.dead_after
    if args.concurrency is not None:
        options["concurrency"] = args.concurrency
    client = dingsync.StreamClient(
        dingsync.Credentials.from_env(),
        route,
        endpoints=Endpoints.from_env(),
        config=dingsync.StreamConfig(**options),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    client.start()
    stop.wait()  # a signal interrupts the wait; no polling (the idle figure counts wake-ups)
    client.stop(timeout=5)
    print(json.dumps({"stats": as_dict(getattr(client, "stats", None))}, default=str), flush=True)


if __name__ == "__main__":
    main()
