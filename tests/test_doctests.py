"""Every example in a public docstring runs and shows what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import dingsync

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(dingsync.__path__, "dingsync.")
    if not info.name.startswith("dingsync.testing.routes")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    """The module's doctests pass (modules without examples pass trivially)."""
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"
