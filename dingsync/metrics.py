"""Send-side metrics: one counter of messages sent, by channel and outcome.

``dingsync_messages_sent_total{channel, outcome}`` counts every send, where ``channel`` is one of
:data:`CHANNELS` and ``outcome`` one of :data:`OUTCOMES`:

* ``ok``: DingTalk accepted the message;
* ``throttled``: refused for rate (DingTalk's throttle codes, or the local 20-a-minute pacing);
* ``refused``: DingTalk (or a local check of its rules) said no: bad request, permission, ...;
* ``failed``: the network failed or timed out (the message may or may not have gone out).

The counter lives in prometheus-client (the ``metrics`` extra: ``pip install
'dingsync[metrics]'``) and is registered in its default registry, so a process that exports
that registry (``prometheus_client.start_http_server``) exports it too; ``dingworker`` appends
:func:`render` to its ``/metrics``. Without prometheus-client, :func:`record` does nothing.

Example:
    >>> record("custom_robot", "ok")
    >>> "dingsync_messages_sent_total" in render() or not ENABLED
    True
"""

from __future__ import annotations

import contextlib
from typing import Any, ContextManager, Iterator, Optional

from .errors import ConfigurationError, DingSyncError, RateLimited, TransportError

__all__ = ["CHANNELS", "OUTCOMES", "ENABLED", "record", "outcome_of", "counting", "render"]

CHANNELS = ("custom_robot", "robot_api", "work_notification", "session_webhook")
OUTCOMES = ("ok", "refused", "throttled", "failed")
METRIC = "dingsync_messages_sent"

_counter: Any = None
_registry: Any = None
prometheus_client: Any
try:
    import prometheus_client
except ImportError:  # the extra is absent: record() stays a no-op
    prometheus_client = None
else:
    # its own registry renders only this counter (for dingworker's hand-written /metrics); the
    # default registry carries it for processes that export prometheus-client's usual way
    _registry = prometheus_client.CollectorRegistry(auto_describe=True)
    _counter = prometheus_client.Counter(
        METRIC,
        "Messages sent, by channel and outcome (ok, refused, throttled, failed).",
        ("channel", "outcome"),
        registry=_registry,
    )
    try:
        prometheus_client.REGISTRY.register(_counter)
    except ValueError:  # a name clash with the application's own metrics: keep ours private
        pass

#: True when prometheus-client is installed and the counter counts.
ENABLED = _counter is not None


def record(channel: str, outcome: str) -> None:
    """Count one send of ``channel`` with ``outcome``.

    Example:
        >>> record("work_notification", "refused")
    """
    if _counter is not None:
        _counter.labels(channel, outcome).inc()


def outcome_of(error: Optional[BaseException]) -> str:
    """The outcome label of a send that raised ``error`` (None: it succeeded).

    Example:
        >>> from dingsync.errors import RequestTimeout
        >>> outcome_of(None), outcome_of(RequestTimeout("slow"))
        ('ok', 'failed')
    """
    if error is None:
        return "ok"
    if isinstance(error, RateLimited):
        return "throttled"
    if isinstance(error, TransportError):
        return "failed"
    if isinstance(error, (DingSyncError, ConfigurationError)):
        return "refused"
    return "failed"


_NOT_COUNTING = contextlib.nullcontext()


def counting(channel: str) -> ContextManager[None]:
    """Count the send made inside the block, with the outcome its exception (if any) implies
    (a shared no-op context without prometheus-client).

    Example:
        >>> with counting("robot_api"):
        ...     pass
    """
    if _counter is None:
        return _NOT_COUNTING
    return _counted(channel)


@contextlib.contextmanager
def _counted(channel: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        record(channel, outcome_of(exc))
        raise
    record(channel, "ok")


def render() -> str:
    """The counter in the Prometheus text format ("" without prometheus-client).

    Example:
        >>> isinstance(render(), str)
        True
    """
    if _registry is None or prometheus_client is None:
        return ""
    return str(prometheus_client.generate_latest(_registry).decode("utf-8"))
