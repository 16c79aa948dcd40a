"""Private state files (token cache, webhook pacing): where they live and how they are opened.

The default directory is per user: ``$DINGSYNC_CACHE_DIR``, else ``$XDG_CACHE_HOME/dingsync`` or
``~/.cache/dingsync``, else (no usable home, as on AWS Lambda) ``<tmp>/dingsync-<uid>``. It is
created with mode 0700. A state file or lock file owned by another user is refused: whoever owns
it could read the tokens, or hold the lock forever and block every send.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from typing import Any, Dict

from .errors import ConfigurationError

__all__ = ["user_cache_dir", "check_owner", "open_private", "read_json", "write_json", "FileLock"]

logger = logging.getLogger("dingsync.files")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _uid() -> int:
    getuid = getattr(os, "getuid", None)
    return int(getuid()) if getuid is not None else -1


def _private_dir(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    uid = _uid()
    if uid >= 0 and info.st_uid != uid:
        raise ConfigurationError(
            f"{path} belongs to uid {info.st_uid}, not to this user (uid {uid}); refusing to keep "
            "tokens there. Set DINGSYNC_CACHE_DIR to a directory of your own"
        )
    if not os.access(path, os.W_OK):
        raise PermissionError(f"{path} is not writable")
    return path


def user_cache_dir() -> str:
    """This user's directory for dingsync's state files (created, mode 0700).

    Example:
        >>> os.path.isdir(user_cache_dir())
        True
    """
    explicit = os.environ.get("DINGSYNC_CACHE_DIR")
    if explicit:
        try:
            return _private_dir(explicit)
        except OSError as exc:
            raise ConfigurationError(f"DINGSYNC_CACHE_DIR={explicit} is not usable: {exc}") from exc
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    if os.path.isabs(base):
        with contextlib.suppress(OSError):
            return _private_dir(os.path.join(base, "dingsync"))
    # no usable home (serverless, a system user): a per-uid directory in the temp dir; tempfile
    # is imported only here because it brings shutil along, 15 ms of a function's cold start
    import tempfile

    fallback = os.path.join(tempfile.gettempdir(), f"dingsync-{max(_uid(), 0)}")
    try:
        return _private_dir(fallback)
    except OSError as exc:
        raise ConfigurationError(
            f"no usable cache directory ({fallback}: {exc}); set DINGSYNC_CACHE_DIR"
        ) from exc


def check_owner(fd: int, path: str) -> None:
    """Refuse ``path`` (open as ``fd``) when another user owns it."""
    uid = _uid()
    owner = os.fstat(fd).st_uid
    if uid >= 0 and owner != uid:
        raise ConfigurationError(
            f"{path} is owned by uid {owner}, not by this user (uid {uid}); refusing to use it: "
            "its owner could read your tokens or block your sends. Remove it, or use another "
            "path (DINGSYNC_CACHE_DIR)"
        )


def open_private(path: str, flags: int) -> int:
    """``os.open`` with mode 0600, no symlinks, and an owner check; clear errors, not raw ones."""
    try:
        fd = os.open(path, flags | _NOFOLLOW, 0o600)
    except PermissionError as exc:
        raise ConfigurationError(
            f"cannot open {path}: permission denied (is it another user's?); use a path of your "
            "own (DINGSYNC_CACHE_DIR)"
        ) from exc
    try:
        check_owner(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_json(path: str) -> Dict[str, Any]:
    """The JSON object in ``path``; ``{}`` when missing or unreadable (logged: it is rewritten)."""
    try:
        fd = open_private(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    try:
        with os.fdopen(fd, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        logger.warning(
            "ignoring unreadable %s (%s); it will be rewritten", path, type(exc).__name__
        )
        return {}
    if not isinstance(data, dict):
        logger.warning("ignoring malformed %s; it will be rewritten", path)
        return {}
    return data


def write_json(path: str, data: Dict[str, Any]) -> None:
    """Write ``data`` to a 0600 temporary file and rename it over ``path`` (readers never see
    half a file)."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.urandom(16).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class FileLock:
    """An exclusive ``flock`` on ``path`` across processes, re-entrant within this object.

    Example:
        >>> lock = FileLock(os.path.join(user_cache_dir(), "doctest.lock"))
        >>> with lock:
        ...     pass
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0  # flock on a second descriptor of the same file would deadlock us

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._depth:
            self._depth += 1
            return
        try:
            directory = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
            try:
                _flock(fd, exclusive=True)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            self._thread_lock.release()
            raise
        self._fd = fd
        self._depth = 1

    def __exit__(self, *exc: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0:
                try:
                    _flock(self._fd, exclusive=False)
                finally:
                    os.close(self._fd)
        finally:
            self._thread_lock.release()


def _flock(fd: int, *, exclusive: bool) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: the in-process lock still applies
        return
    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_UN)
