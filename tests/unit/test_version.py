"""One version, from the installed distribution's metadata: what the package says, what the
command line prints and what every request's ``User-Agent`` carries."""

from __future__ import annotations

import importlib
import importlib.metadata

import httpx2
import pytest

import trio_litellm
from trio_litellm import ClientConfig, _version, cli, open_client

INSTALLED = importlib.metadata.version("trio-litellm")


def test_the_package_reports_the_installed_distributions_version() -> None:
    assert trio_litellm.__version__ == INSTALLED


def test_a_source_tree_without_metadata_still_imports_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    try:
        assert importlib.reload(_version).__version__ == "0+unknown"
    finally:
        monkeypatch.undo()
        importlib.reload(_version)
    assert _version.__version__ == INSTALLED


def test_the_command_line_prints_the_version(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["--version"])
    assert capsys.readouterr().out.strip() == INSTALLED


async def test_every_request_names_the_version_in_its_user_agent() -> None:
    agents: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        agents.append(request.headers["user-agent"])
        return httpx2.Response(200, json={"object": "list", "data": []})

    config = ClientConfig(
        proxy_url="http://proxy.test", health_check_interval=None, price_lookup=False
    )
    async with open_client(config, transport=httpx2.MockTransport(handler)) as client:
        await client.list_models()
    assert agents == [f"trio-litellm/{INSTALLED}"]
