"""A Function Compute cold start, as the platform does it: a fresh interpreter imports
``examples.serverless_fc`` and hands its ``handler`` one encrypted event (a WSGI environ).

Run as a script (``python benchmarks/clients/fc_cold.py``). The event is encrypted with the
values in ``DINGTALK_EVENT_TOKEN``/``DINGTALK_EVENT_AES_KEY``; exit 0 only when the answer is
HTTP 200 with the encrypted "success".
"""

import io
import json
import os
import sys

sys.path.insert(0, os.getcwd())

from dingsync.callbacks import EventCrypto  # noqa: E402
from examples.serverless_fc import handler  # noqa: E402

crypto = EventCrypto(
    os.environ["DINGTALK_EVENT_TOKEN"],
    os.environ["DINGTALK_EVENT_AES_KEY"],
    os.environ["DINGTALK_CLIENT_ID"],
)
encrypt = crypto.encrypt('{"EventType":"user_add_org","userId":["u1"]}')
body = json.dumps({"encrypt": encrypt}).encode()
query = f"msg_signature={crypto.signature('1', 'n0nce', encrypt)}&timestamp=1&nonce=n0nce"
environ = {
    "REQUEST_METHOD": "POST",
    "QUERY_STRING": query,
    "CONTENT_TYPE": "application/json",
    "CONTENT_LENGTH": str(len(body)),
    "wsgi.input": io.BytesIO(body),
}
statuses = []
answer = b"".join(handler(environ, lambda status, headers: statuses.append(status)))
ok = statuses == ["200 OK"] and crypto.decrypt(json.loads(answer)["encrypt"]) == "success"
sys.exit(0 if ok else 1)
