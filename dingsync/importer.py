"""Resolve ``"module:attribute"`` strings, as ``dingworker APP`` does.

Example:
    >>> from dingsync.importer import import_from_string
    >>> import_from_string("os.path:join").__name__
    'join'

Every failure is an :class:`~dingsync.errors.ImportFromStringError` whose message says what to fix,
so a command line can print it as one line instead of a traceback. Exceptions raised by the
imported module's own code (other than a missing dependency) are not translated: their traceback
points at the bug.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import ImportFromStringError

__all__ = ["import_from_string"]


def import_from_string(import_str: str) -> Any:
    """Import ``module:attribute`` (the attribute may be dotted: ``pkg.mod:obj.attr``).

    Args:
        import_str: the module's dotted import path, a colon, and the attribute path.

    Returns:
        The object the string names.

    Raises:
        ImportFromStringError: the string is malformed, the module cannot be found, one of the
            module's own imports is missing, or the attribute does not exist.

    Example:
        >>> import_from_string("json:dumps")([1])
        '[1]'
        >>> import_from_string("json")
        Traceback (most recent call last):
        ...
        dingsync.errors.ImportFromStringError: 'json' must look like "module:attribute", e.g. "myapp.handlers:route"
    """
    if not isinstance(import_str, str):
        raise ImportFromStringError(
            f"expected a string like 'module:attribute', got {type(import_str).__name__}"
        )
    module_str, sep, attrs_str = import_str.strip().partition(":")
    if not sep or not module_str or not attrs_str:
        raise ImportFromStringError(
            f'{import_str!r} must look like "module:attribute", e.g. "myapp.handlers:route"'
        )

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        # The requested module itself (or one of its parent packages) is missing: a typo or a
        # wrong --app-dir. Anything else is a dependency that the module imports.
        if exc.name is not None and (
            module_str == exc.name or module_str.startswith(exc.name + ".")
        ):
            raise ImportFromStringError(
                f"could not import module {module_str!r}: no module named {exc.name!r} "
                "(check the spelling and --app-dir, the directory it is imported from)"
            ) from None
        raise ImportFromStringError(
            f"module {module_str!r} failed to import {exc.name!r}: install it or fix that import"
        ) from exc
    except ImportError as exc:
        raise ImportFromStringError(
            f"module {module_str!r} raised ImportError while importing: {exc}"
        ) from exc

    instance: Any = module
    walked = module_str
    for attr in attrs_str.split("."):
        try:
            instance = getattr(instance, attr)
        except AttributeError:
            raise ImportFromStringError(
                f"{walked!r} has no attribute {attr!r} (is the name after ':' right?)"
            ) from None
        walked = f"{walked}:{attr}" if walked == module_str else f"{walked}.{attr}"
    return instance
