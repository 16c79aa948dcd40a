"""A CliRunner that keeps stderr apart from stdout on every supported click version."""

from __future__ import annotations

from click.testing import CliRunner


def cli_runner() -> CliRunner:
    """click 8.1 (the newest on Python 3.9) mixes stderr into stdout unless told not to;
    click 8.2 always keeps them apart and has no such option."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()
