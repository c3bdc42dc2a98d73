"""``trio-litellm batch --model-limit MODEL=rpm:N,tpm:N,concurrency:N``: parsed into the client's
``model_limits``, repeatable, any subset of the three; a bad one is a usage error."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from trio_litellm import ModelLimits, cli
from trio_litellm.cli import _batch
from trio_litellm.cli._common import EXIT_PROXY, EXIT_USAGE, Exit, consoles


@pytest.fixture
def errors(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    captured = io.StringIO()
    monkeypatch.setattr(consoles, "err", Console(file=captured, width=200))
    return captured


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The options the batch command makes its client config from (it stops there)."""
    seen: dict[str, Any] = {}

    def config(proxy_url: str | None, api_key: str | None, **given: Any) -> Any:
        seen.update(given)
        raise Exit(EXIT_PROXY, "stopped before connecting")

    monkeypatch.setattr(_batch, "client_config", config)
    return seen


def run_batch(tmp_path: Path, *flags: str) -> int:
    (tmp_path / "in.jsonl").write_text("")
    argv = ["batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), *flags]
    return cli.main(argv)


def test_each_model_limit_flag_becomes_that_models_limits(
    tmp_path: Path, options: dict[str, Any], errors: io.StringIO
) -> None:
    code = run_batch(
        tmp_path,
        "--model-limit",
        "gpt-4o=rpm:500,tpm:90000,concurrency:8",
        "--model-limit",
        "openai/o3=concurrency:2",
    )
    assert code == EXIT_PROXY
    assert options["model_limits"] == {
        "gpt-4o": ModelLimits(rpm=500, tpm=90000, max_in_flight=8),
        "openai/o3": ModelLimits(max_in_flight=2),
    }


def test_no_model_limit_flag_sets_no_model_limits(
    tmp_path: Path, options: dict[str, Any], errors: io.StringIO
) -> None:
    assert run_batch(tmp_path) == EXIT_PROXY
    assert options["model_limits"] == {}


@pytest.mark.parametrize(
    ("flag", "named"),
    [
        ("gpt-4o", "MODEL=rpm:N"),
        ("=rpm:5", "MODEL=rpm:N"),
        ("gpt-4o=", "MODEL=rpm:N"),
        ("gpt-4o=rpm", "rpm:N"),
        ("gpt-4o=rpm:five", "rpm"),
        ("gpt-4o=rpm:0", "rpm"),
        ("gpt-4o=speed:3", "speed"),
        ("gpt-4o=rpm:3,rpm:4", "rpm"),
    ],
)
def test_a_bad_model_limit_is_a_usage_error_naming_it(
    tmp_path: Path, options: dict[str, Any], errors: io.StringIO, flag: str, named: str
) -> None:
    assert run_batch(tmp_path, "--model-limit", flag) == EXIT_USAGE
    assert "--model-limit" in errors.getvalue()
    assert named in errors.getvalue()
    assert not options


def test_the_same_model_twice_is_a_usage_error(
    tmp_path: Path, options: dict[str, Any], errors: io.StringIO
) -> None:
    flags = ("--model-limit", "a=rpm:1", "--model-limit", "a=tpm:5")
    assert run_batch(tmp_path, *flags) == EXIT_USAGE
    assert "'a'" in errors.getvalue()
