"""A cron job with dingsync: send one group message from a fresh process.

Run as a script (``python benchmarks/clients/cron_dingsync.py``), so that nothing but the
interpreter and dingsync is imported. With a warm ``FileTokenCache`` it makes exactly one HTTP
request (the send). Environment: ``DINGTALK_*`` (from the emulator), ``BENCH_CID`` (the
openConversationId) and ``BENCH_TOKEN_CACHE`` (the cache file).
"""

import os

import dingsync
from dingsync import messages

api = dingsync.ApiClient(
    dingsync.Credentials.from_env(),
    token_cache=dingsync.FileTokenCache(os.environ["BENCH_TOKEN_CACHE"]),
)
api.robot.send_to_group(os.environ["BENCH_CID"], messages.Text("nightly build ok"))
