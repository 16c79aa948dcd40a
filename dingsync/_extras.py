"""How to add one of dingsync's extras (``testing``, ``redis``, ...) to this installation.

dingsync is not on the package index, so ``pip install 'dingsync[testing]'`` would fail (or,
worse, fetch someone else's package). The hint names the place this copy was installed from: a
checkout, a wheel file or a git URL, as pip recorded it (``direct_url.json``, PEP 610).

Example:
    >>> hint = install_hint("testing")
    >>> hint.startswith("pip install ") and "[testing]" in hint
    True
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional
from urllib.parse import unquote, urlsplit

__all__ = ["install_hint", "missing_extra"]

_DIST = "dingsync"


def _direct_url() -> Optional[Dict[str, Any]]:
    # imported here, not above: importlib.metadata costs an interpreter start 30-40 ms, and
    # dingworker imports this module at every start to word an error it rarely prints
    from importlib import metadata

    try:
        text = metadata.distribution(_DIST).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    try:
        found = json.loads(text)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _checkout() -> Optional[str]:
    # An editable install made without PEP 660 records no direct_url.json; the package then
    # lives in the checkout itself, next to setup.cfg.
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return root if os.path.exists(os.path.join(root, "setup.cfg")) else None


def _without_credentials(url: str) -> str:
    # A git URL may carry a token (https://user:token@host/...): a hint is printed and logged.
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{host}{port}").geturl()


def install_hint(extra: str) -> str:
    """The pip command that adds ``extra`` to dingsync, from where this copy came.

    Example:
        >>> "dingsync" in install_hint("redis") or "[redis]" in install_hint("redis")
        True
    """
    found = _direct_url()
    if found is not None and isinstance(found.get("url"), str):
        url = _without_credentials(found["url"])
        vcs = found.get("vcs_info")
        if isinstance(vcs, dict):
            revision = vcs.get("requested_revision") or vcs.get("commit_id")
            at = f"@{revision}" if revision else ""
            return f"pip install '{_DIST}[{extra}] @ {vcs.get('vcs', 'git')}+{url}{at}'"
        dir_info = found.get("dir_info")
        if isinstance(dir_info, dict) and urlsplit(url).scheme == "file":
            path = unquote(urlsplit(url).path)
            editable = "-e " if dir_info.get("editable") else ""
            return f"pip install {editable}'{path}[{extra}]'"
        return f"pip install '{_DIST}[{extra}] @ {url}'"
    checkout = _checkout()
    if checkout is not None:
        return f"pip install -e '{checkout}[{extra}]'"
    return f"pip install '{_DIST}[{extra}]' from where you installed dingsync (see its README)"


def missing_extra(what: str, extra: str, exc: ImportError) -> str:
    """One sentence for an ImportError of an optional dependency: what needs it, and the fix.

    Example:
        >>> text = missing_extra("the emulator", "testing", ModuleNotFoundError(name="websockets"))
        >>> text.partition(": pip install")[0]
        "the emulator needs dingsync's 'testing' extra (No module named 'websockets')"
    """
    missing = f"No module named {exc.name!r}" if exc.name else str(exc)
    return f"{what} needs dingsync's {extra!r} extra ({missing}): {install_hint(extra)}"
