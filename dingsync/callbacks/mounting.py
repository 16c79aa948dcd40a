"""Mount a CallbackApp under a path of another WSGI application (Flask, Django, ...).

Example:
    >>> def site(environ, start_response):
    ...     start_response("200 OK", [])
    ...     return [b"site"]
    >>> def dingtalk(environ, start_response):
    ...     start_response("200 OK", [])
    ...     return [environ["SCRIPT_NAME"].encode()]
    >>> both = mount(site, "/dingtalk", dingtalk)
    >>> b"".join(both({"PATH_INFO": "/dingtalk/", "SCRIPT_NAME": ""}, lambda s, h: None))
    b'/dingtalk'
    >>> b"".join(both({"PATH_INFO": "/about", "SCRIPT_NAME": ""}, lambda s, h: None))
    b'site'
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable

from ..errors import ConfigurationError

__all__ = ["mount", "WsgiApp"]

#: A WSGI application (PEP 3333).
WsgiApp = Callable[[Dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def mount(app: WsgiApp, prefix: str, callbacks: WsgiApp) -> WsgiApp:
    """A WSGI application that sends ``prefix`` and everything under it to ``callbacks`` (with
    ``SCRIPT_NAME``/``PATH_INFO`` moved as a mount does) and every other path to ``app``.

    One line per framework::

        flask_app.wsgi_app = mount(flask_app.wsgi_app, "/dingtalk", callbacks)   # Flask
        application = mount(get_wsgi_application(), "/dingtalk", callbacks)     # Django wsgi.py

    Raises:
        ConfigurationError: ``prefix`` does not start with ``/`` or ends with one.
    """
    if not prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigurationError(f"mount prefix must look like '/dingtalk', got {prefix!r}")

    def dispatch(environ: Dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ = dict(environ)
            environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "") + prefix
            environ["PATH_INFO"] = path[len(prefix) :]
            return callbacks(environ, start_response)
        return app(environ, start_response)

    return dispatch
