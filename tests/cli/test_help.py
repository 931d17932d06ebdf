"""Every command's ``--help``: no argparse internals leak (``OPT_OPSET`` placeholders from a ``dest``, a default
printed twice, a flag for an option declared not to be one) and each names an example."""

from __future__ import annotations

import re

import pytest

from perfkit.cli import build_parser, main


def _commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


@pytest.mark.parametrize("command", _commands())
def test_help_shows_no_internals(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    flat = " ".join(text.split())  # argparse wraps lines; a doubled default may straddle one
    assert not re.search(r"\b(OPT|SCN)_[A-Z_]+", text), "a placeholder made from an internal dest"
    assert not re.search(r"\(default: [^)]*\)\s*\(default:", flat), "a default printed twice"
    assert "--calibration " not in text  # declared cli=False: set through --calib, --calib-samples, --calib-method
    assert "usage: perfkit " + command in text


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(c in text for c in _commands())
