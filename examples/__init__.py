"""Runnable example bots; each is exercised by ``tests/examples``.

Run one from the repository root with ``dingworker examples.<name>:route`` (add ``--emulator`` to
try it without a DingTalk app).
"""
