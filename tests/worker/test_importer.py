"""dingsync.importer.import_from_string: every failure says what to fix."""

from __future__ import annotations

import os
import sys
from typing import Iterator

import pytest

from dingsync.errors import ConfigurationError, ImportFromStringError
from dingsync.importer import import_from_string

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


@pytest.fixture(autouse=True)
def fixtures_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(FIXTURES)
    yield
    sys.modules.pop("dw_raises_import_error", None)


def test_resolves_module_and_attribute() -> None:
    """``module:attr`` returns the attribute."""
    import json

    assert import_from_string("json:dumps") is json.dumps


def test_resolves_dotted_attribute() -> None:
    """The attribute part may be a dotted path."""
    import os.path

    assert import_from_string("os:path.join") is os.path.join


@pytest.mark.parametrize("spec", ["json", "json:", ":dumps", "", "   "])
def test_malformed_string(spec: str) -> None:
    """A string without both halves names the expected shape."""
    with pytest.raises(ImportFromStringError, match='must look like "module:attribute"'):
        import_from_string(spec)


def test_not_a_string() -> None:
    """A non-string is refused with its type."""
    with pytest.raises(ImportFromStringError, match="got int"):
        import_from_string(42)  # type: ignore[arg-type]


def test_missing_module() -> None:
    """A missing module points at the spelling and --app-dir."""
    with pytest.raises(ImportFromStringError, match="no module named 'no_such_mod_xyz'.*--app-dir"):
        import_from_string("no_such_mod_xyz:route")


def test_missing_submodule() -> None:
    """A missing submodule of an existing package is a missing module too."""
    with pytest.raises(ImportFromStringError, match="could not import module 'json.nope'"):
        import_from_string("json.nope:x")


def test_missing_dependency_of_the_module() -> None:
    """A dependency the module imports is named, with the chained cause kept."""
    with pytest.raises(ImportFromStringError) as info:
        import_from_string("dw_raises_import_error:route")
    assert "dingsync_no_such_dependency" in str(info.value)
    assert "install it" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_missing_attribute() -> None:
    """A missing attribute names the module and the attribute."""
    with pytest.raises(ImportFromStringError, match="'dw_ok_app' has no attribute 'nope'"):
        import_from_string("dw_ok_app:nope")


def test_is_a_configuration_error() -> None:
    """Callers that catch ConfigurationError also catch import failures."""
    with pytest.raises(ConfigurationError):
        import_from_string("json:nope")


def test_other_errors_in_the_module_propagate(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the module (not an import problem) keeps its own exception and traceback."""
    import pathlib

    directory = pathlib.Path(str(tmp_path))
    (directory / "dw_buggy_module.py").write_text("1 / 0\n")
    monkeypatch.syspath_prepend(str(directory))
    with pytest.raises(ZeroDivisionError):
        import_from_string("dw_buggy_module:route")
