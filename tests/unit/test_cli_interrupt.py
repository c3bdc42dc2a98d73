"""Ctrl-C in any command: the "interrupted" line and exit code 130, however the interrupt
leaves the command (bare, or inside an exception group)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from trio_litellm import cli
from trio_litellm.cli import _reports
from trio_litellm.cli._common import consoles


@pytest.fixture
def err(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    captured = io.StringIO()
    monkeypatch.setattr(consoles, "err", Console(file=captured, width=200))
    monkeypatch.setattr(consoles, "out", Console(file=io.StringIO(), width=200))
    return captured


def interrupt(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt


def interrupt_in_a_group(*args: object, **kwargs: object) -> None:
    raise BaseExceptionGroup("nursery", [KeyboardInterrupt()])


@pytest.mark.parametrize("raiser", [interrupt, interrupt_in_a_group], ids=["bare", "in-a-group"])
def test_an_interrupted_command_says_so_and_exits_130(
    tmp_path: Path,
    err: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
    raiser: object,
) -> None:
    monkeypatch.setattr(_reports, "read_output_usage", raiser)
    output = tmp_path / "out.jsonl"
    output.write_bytes(b"")
    assert cli.main(["usage", str(output)]) == 130
    assert "interrupted: stopped" in err.getvalue()
    assert "resume" not in err.getvalue()  # only a batch run resumes
