"""Several bots in one dingworker: which APP gets which credentials, and the stream clients that
run them side by side.

``dingworker myapp.handlers:route`` runs one app on ``DINGTALK_CLIENT_ID`` and
``DINGTALK_CLIENT_SECRET``. Several apps are named: ``dingworker sales=sales.bot:route
support=support.bot:route`` reads ``DINGTALK_SALES_CLIENT_ID``/``DINGTALK_SALES_CLIENT_SECRET``
and ``DINGTALK_SUPPORT_CLIENT_ID``/``..._SECRET`` (the name upper-cased, other characters as
``_``). Each app has its own client, connection and handler threads; one app whose credentials
are refused is logged and left out, and the others run on. Log lines from an app's threads,
its handlers' included, carry ``app=<name>`` (:class:`AppTagger`).

Example:
    >>> [(a.name, a.target) for a in parse_apps(["sales=sales.bot:route", "hr=hr.bot:route"])]
    [('sales', 'sales.bot:route'), ('hr', 'hr.bot:route')]
    >>> env_names("sales-cn")
    ('DINGTALK_SALES_CN_CLIENT_ID', 'DINGTALK_SALES_CN_CLIENT_SECRET')
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import attrs

import dingsync

__all__ = ["AppSpec", "AppTagger", "Fleet", "parse_apps", "env_names", "credentials_for"]

log = logging.getLogger("dingworker")

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,39}$")

#: An app's threads: its StreamClient's, ``dingsync-NAME-<role>`` (dingsync/stream/client.py),
#: and the one that stops it, ``dingworker-stop-NAME`` (:meth:`Fleet.stop`).
_APP_THREAD = re.compile(
    r"dingsync-(?P<app>.+)-(?:reader(?:-retiring)?|handler-\d+|writer-\d+|keepalive)"
    r"|dingworker-stop-(?P<stopped>.+)"
)


@attrs.frozen
class AppSpec:
    """One APP argument: ``module:attr``, or ``name=module:attr`` (needed with several)."""

    name: Optional[str]
    target: str


def parse_apps(args: Sequence[str]) -> List[AppSpec]:
    """The APP arguments, checked.

    Raises:
        ValueError: several apps without names, a bad or repeated name (the message says
            which and why).
    """
    specs = []
    for arg in args:
        name, sep, target = arg.partition("=")
        if not sep:
            specs.append(AppSpec(None, arg))
            continue
        if not _NAME.match(name):
            raise ValueError(
                f"app name {name!r} in {arg!r}: use a letter, then letters, digits, _ or -"
            )
        specs.append(AppSpec(name, target))
    if len(specs) > 1:
        unnamed = [s.target for s in specs if s.name is None]
        if unnamed:
            raise ValueError(
                f"with several apps each needs a name, for its credentials: write "
                f"NAME={unnamed[0]} (then DINGTALK_<NAME>_CLIENT_ID and _CLIENT_SECRET are read)"
            )
        names = [s.name.lower() for s in specs if s.name]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"app name {repeated[0]!r} is given twice")
    return specs


def env_names(name: str) -> Tuple[str, str]:
    """The environment variables holding app ``name``'s client id and secret."""
    stem = re.sub(r"[^A-Z0-9]", "_", name.upper())
    return f"DINGTALK_{stem}_CLIENT_ID", f"DINGTALK_{stem}_CLIENT_SECRET"


def credentials_for(spec: AppSpec, environ: Mapping[str, str]) -> dingsync.Credentials:
    """A named app's credentials from its environment variables.

    Raises:
        dingsync.ConfigurationError: a variable is missing (named in the message).
    """
    assert spec.name is not None
    id_name, secret_name = env_names(spec.name)
    missing = [n for n in (id_name, secret_name) if not environ.get(n)]
    if missing:
        raise dingsync.ConfigurationError(
            f"app {spec.name!r}: set {' and '.join(missing)} (its client id and secret)"
        )
    return dingsync.Credentials(client_id=environ[id_name], client_secret=environ[secret_name])


class AppTagger(logging.Filter):
    """Sets ``record.app`` on the records that a named app's client threads log (its handlers'
    lines included), so that a worker running several bots says which one a line is about.

    Example:
        >>> record = logging.LogRecord("dingsync.stream", logging.INFO, "f", 1, "hi", None, None)
        >>> record.threadName = "dingsync-sales-handler-3"
        >>> AppTagger(["sales", "hr"]).filter(record), record.app
        (True, 'sales')
    """

    def __init__(self, names: Iterable[str]) -> None:
        super().__init__()
        self._names = frozenset(names)

    def filter(self, record: logging.LogRecord) -> bool:
        match = _APP_THREAD.fullmatch(record.threadName or "")
        app = (match["app"] or match["stopped"]) if match is not None else None
        if app in self._names:
            record.app = app
        return True


class Fleet:
    """The stream clients of one worker, by app name (None: the one unnamed app).

    Example:
        >>> fleet = Fleet([(None, client)])  # doctest: +SKIP
        >>> fleet.start()  # doctest: +SKIP
        True
    """

    def __init__(self, clients: Sequence[Tuple[Optional[str], dingsync.StreamClient]]) -> None:
        self.clients = list(clients)
        self.failed: Dict[Optional[str], str] = {}

    def _say(self, name: Optional[str], text: str) -> None:
        log.error("%sstream client stopped: %s", f"app {name}: " if name else "", text)

    def start(self) -> bool:
        """Start every client; one refused at its first attempt is logged and left out.
        Returns whether any runs."""
        for name, client in self.clients:
            try:
                client.start()
            except dingsync.AuthError as exc:  # refused at the first attempt: a typo
                self.failed[name] = str(exc)
                self._say(name, str(exc))
        return len(self.failed) < len(self.clients)

    def failure(self) -> Optional[str]:
        """Note clients that failed for good since the last look (logging each); a
        description once no client runs any more, else None."""
        for name, client in self.clients:
            error = client.error
            if error is not None and name not in self.failed:
                self.failed[name] = f"{type(error).__name__}: {error}"
                if len(self.clients) > 1:
                    self._say(name, self.failed[name])
        if len(self.failed) == len(self.clients):
            return "; ".join(self.failed.values())
        return None

    def running(self) -> List[dingsync.StreamClient]:
        """The clients that have not failed."""
        return [c for n, c in self.clients if n not in self.failed]

    def stop(self, timeout: float, *, drain: bool) -> List[BaseException]:
        """Stop every client at once (each within ``timeout``); returns what stop() raised."""
        errors: List[BaseException] = []

        def stop(client: dingsync.StreamClient) -> None:
            try:
                client.stop(timeout=timeout, drain=drain)
            except Exception as exc:  # reported by the caller, which owns the exit code
                errors.append(exc)

        threads = [
            threading.Thread(target=stop, args=(c,), name=f"dingworker-stop-{name}")
            for name, c in self.clients
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return errors

    @property
    def in_flight(self) -> int:
        """Handlers running in all clients."""
        return sum(client.stats.in_flight for _, client in self.clients)

    def health(self) -> Tuple[bool, Dict[str, Any]]:
        """One app: its client's health. Several: healthy when every app is, with each
        app's details under ``apps``. Times are Unix times, as probes and Prometheus want."""
        offset = time.time() - time.monotonic()
        verdicts: Dict[str, Tuple[bool, Dict[str, Any]]] = {}
        for name, client in self.clients:
            healthy, details = client.health()
            details = dict(details)
            for key in ("last_frame_at", "last_alive_at"):
                if isinstance(details.get(key), (int, float)):
                    details[key] = round(details[key] + offset, 3)
            if name in self.failed:
                healthy, details["failed"] = False, self.failed[name]
            verdicts[name or ""] = (bool(healthy), details)
        if len(verdicts) == 1:
            return next(iter(verdicts.values()))
        apps = {name: {"healthy": ok, **details} for name, (ok, details) in verdicts.items()}
        return all(ok for ok, _ in verdicts.values()), {"apps": apps}
