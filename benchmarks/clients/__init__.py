"""One small script per client kind; each runs in its own process (``python -m benchmarks.clients.X``).

Every client reads ``DINGTALK_CLIENT_ID``/``DINGTALK_CLIENT_SECRET``/``DINGTALK_OPENAPI_ENDPOINT``
from the environment (the harness points them at the emulator), connects once, handles chatbot
frames, and stops by itself when its parent dies or ``--max-seconds`` pass.
"""
