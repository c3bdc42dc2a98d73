"""What every command shares: exit codes, the consoles, the proxy options, leaving with a code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from cyclopts import Parameter
from rich.console import Console

from .._config import ClientConfig
from .._errors import ConfigError

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PROXY",
    "EXIT_USAGE",
    "ApiKey",
    "Consoles",
    "Exit",
    "ProxyUrl",
    "client_config",
    "consoles",
    "proxy_urls",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PROXY, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Consoles:
    """Where the commands print: answers and tables on ``out`` (stdout); errors, progress and a
    run's summary on ``err`` (stderr). One shared object, read when a command prints, so a test
    swaps both in one place."""

    def __init__(self) -> None:
        self.out = Console()
        self.err = Console(stderr=True)


consoles = Consoles()

ProxyUrl = Annotated[
    list[str] | None,
    Parameter(
        help="LiteLLM proxy URL (default: $LITELLM_PROXY_URL or http://localhost:4000). "
        "Several proxies sharing one Redis: give it more than once, or comma-separated.",
        negative=(),
    ),
]
ApiKey = Annotated[
    str | None,
    Parameter(help="Proxy key (default: $LITELLM_API_KEY). Never printed.", show_default=False),
]


def proxy_urls(given: Sequence[str] | None) -> list[str] | None:
    """The URLs of every ``--proxy-url`` given, each split at its commas; None if none was."""
    if not given:
        return None
    return [url for value in given for url in value.split(",")]


class Exit(Exception):
    """Leave a command with an exit code after printing a message (``main`` prints it)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def client_config(
    proxy_url: Sequence[str] | None, api_key: str | None, **options: object
) -> ClientConfig:
    """The client configuration of a command; a bad one leaves with exit code 3.

    ``proxy_url``: each ``--proxy-url`` given (each may hold several, comma-separated)."""
    try:
        return ClientConfig(proxy_url=proxy_urls(proxy_url), api_key=api_key, **options)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise Exit(EXIT_PROXY, f"bad configuration: {exc}") from None
