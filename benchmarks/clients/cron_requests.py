"""The hand-written baseline of the cron figure: one POST with requests and a known token.

No token fetch (``BENCH_TOKEN`` is a valid token handed over by the harness), no retries, no
models: the least a script can do. Environment as for ``cron_dingsync.py`` plus ``BENCH_TOKEN``.
"""

import json
import os

import requests

response = requests.post(
    os.environ["DINGTALK_OPENAPI_ENDPOINT"] + "/v1.0/robot/groupMessages/send",
    headers={"x-acs-dingtalk-access-token": os.environ["BENCH_TOKEN"]},
    json={
        "msgKey": "sampleText",
        "msgParam": json.dumps({"content": "nightly build ok"}),
        "openConversationId": os.environ["BENCH_CID"],
        "robotCode": os.environ["DINGTALK_CLIENT_ID"],
    },
    timeout=10,
)
response.raise_for_status()
