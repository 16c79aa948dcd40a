"""Load the APP of ``dingworker APP``: a :class:`dingsync.Router` named by ``module:attr``.

Every mistake becomes an :class:`~dingsync.errors.ImportFromStringError` with one line saying
what to fix, including a syntax error or an exception in the user's module (with the file and
line it happened at; the traceback goes to the DEBUG log).

Example:
    >>> load_router("json:loads")
    Traceback (most recent call last):
    ...
    dingsync.errors.ImportFromStringError: APP 'json:loads' is a function, not a dingsync.Router
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import traceback
from typing import Any, Callable, Optional

import dingsync
from dingsync.errors import ImportFromStringError
from dingsync.importer import import_from_string

__all__ = ["load_router"]

log = logging.getLogger("dingworker")


def load_router(app: str, *, factory: bool = False, app_dir: Optional[str] = ".") -> Any:
    """Resolve ``app`` to a :class:`dingsync.Router`, calling it first when ``factory`` is set.

    A syntax error or an exception in the module (or in the factory) is reported as one line
    with the file and line it happened at: the traceback is logged at DEBUG.

    Raises:
        ImportFromStringError: with a message saying what to fix.

    Example:
        >>> load_router("json:loads")
        Traceback (most recent call last):
        ...
        dingsync.errors.ImportFromStringError: APP 'json:loads' is a function, not a dingsync.Router
    """
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if path not in sys.path:
            sys.path.insert(0, path)
    obj = _run_user_code(app, "importing it", import_from_string, app)
    if factory:
        if not callable(obj):
            raise ImportFromStringError(
                f"APP {app!r} is a {_kind(obj)}, not callable; drop --factory to use it as is"
            )
        required = _required_parameters(obj)
        if required:
            raise ImportFromStringError(
                f"APP {app!r} takes arguments ({', '.join(required)}), so it is not a factory; "
                "a factory takes none and returns the Router"
                + (f"; {_HANDLER_HINT}" if len(required) == 2 else "")
            )
        obj = _run_user_code(app, "calling the factory", obj)
        if not isinstance(obj, dingsync.Router):
            raise ImportFromStringError(
                f"the factory {app!r} returned a {_kind(obj)}, not a dingsync.Router"
            )
        return obj
    if isinstance(obj, dingsync.Router):
        return obj
    if isinstance(obj, type) and issubclass(obj, dingsync.Router):
        raise ImportFromStringError(
            f"APP {app!r} is the Router class itself; name an instance (route = dingsync.Router())"
        )
    hint = ""
    if callable(obj) and not isinstance(obj, type):
        required = _required_parameters(obj)
        if not required:
            hint = "; did you mean --factory?"
        elif len(required) == 2:
            hint = f"; {_HANDLER_HINT}"
    raise ImportFromStringError(f"APP {app!r} is a {_kind(obj)}, not a dingsync.Router{hint}")


_HANDLER_HINT = (
    "it looks like a handler: register it on a Router (route = dingsync.Router(), then "
    "@route.chatbot above it) and name the router, e.g. module:route"
)


def _required_parameters(func: Any) -> list[str]:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return []
    return [
        p.name
        for p in parameters
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]


def _run_user_code(app: str, doing: str, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)``, with a mistake in the user's code turned into one line saying where."""
    try:
        return func(*args)
    except ImportFromStringError:
        raise
    except SyntaxError as exc:
        where = f"{exc.filename}, line {exc.lineno}" if exc.filename else "?"
        log.debug("APP %r: syntax error", app, exc_info=True)
        raise ImportFromStringError(
            f"APP {app!r} has a syntax error ({where}): {exc.msg}"
        ) from None
    except Exception as exc:
        log.debug("APP %r: %s raised", app, doing, exc_info=True)
        frames = [
            f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")
        ]
        where = f" at {frames[-1].filename}, line {frames[-1].lineno}" if frames else ""
        raise ImportFromStringError(
            f"APP {app!r}: {doing} raised {type(exc).__name__}{where}: {exc} "
            "(--log-level debug shows the traceback)"
        ) from None


def _kind(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class ({obj.__name__})"
    if callable(obj) and hasattr(obj, "__code__"):
        return "function"
    return type(obj).__name__
