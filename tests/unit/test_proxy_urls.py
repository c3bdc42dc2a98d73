"""Several proxy URLs: a list, a comma-separated string, the environment, the CLI's repeated
``--proxy-url``; and the mistakes in them."""

from __future__ import annotations

import io
import socket

import pytest
from rich.console import Console

from trio_litellm import ClientConfig, ConfigError, cli
from trio_litellm.cli import _common


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_a_list_of_urls_is_a_fleet() -> None:
    config = ClientConfig(proxy_url=["http://a.test:4000/v1", "http://b.test:4001/"])
    assert config.proxy_urls == ("http://a.test:4000", "http://b.test:4001")
    assert config.base_url == "http://a.test:4000"
    assert config.display_url == "http://a.test:4000, http://b.test:4001"


def test_a_comma_separated_string_is_the_same_fleet() -> None:
    config = ClientConfig(proxy_url=" http://a.test:4000 , http://b.test:4001")
    assert config.proxy_urls == ("http://a.test:4000", "http://b.test:4001")


def test_the_environment_may_hold_several(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_PROXY_URL", "http://a.test:4000,http://b.test:4001")
    assert ClientConfig().proxy_urls == ("http://a.test:4000", "http://b.test:4001")


def test_one_url_is_as_before() -> None:
    config = ClientConfig(proxy_url="http://a.test:4000/v1")
    assert config.proxy_url == "http://a.test:4000"
    assert config.proxy_urls == ("http://a.test:4000",)


def test_each_proxy_gets_a_config_of_its_own() -> None:
    config = ClientConfig(proxy_url=["http://a.test:4000", "http://b.test:4001"], max_retries=5)
    second = config.for_proxy(config.proxy_urls[1])
    assert second.proxy_urls == ("http://b.test:4001",)
    assert second.max_retries == 5


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ([], "at least one URL"),
        (["http://a.test", "http://a.test/"], "twice"),
        ("http://a.test,", "must start with http://"),
        (["http://a.test", "ftp://b.test"], "must start with http://"),
        (["http://a.test", 4000], "must be a string, not int"),
        (b"http://a.test", "a URL or a list of URLs, not bytes"),
    ],
)
def test_a_bad_list_is_a_config_error_naming_the_field(given: object, said: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ClientConfig(proxy_url=given)  # type: ignore[arg-type]
    assert caught.value.field == "proxy_url"
    assert said in str(caught.value)


def test_credentials_in_any_url_stay_out_of_the_repr() -> None:
    config = ClientConfig(proxy_url=["http://a.test", "http://user:hunter2@b.test"])
    assert "hunter2" not in repr(config)
    assert "hunter2" not in config.display_url
    assert "b.test" in repr(config)


def test_the_cli_takes_proxy_url_more_than_once_or_comma_separated() -> None:
    assert _common.proxy_urls(None) is None
    assert _common.proxy_urls(["http://a", "http://b,http://c"]) == [
        "http://a",
        "http://b",
        "http://c",
    ]


@pytest.mark.parametrize("joined", [False, True])
def test_a_cli_command_over_dead_proxies_fails_with_exit_3(
    monkeypatch: pytest.MonkeyPatch, joined: bool
) -> None:
    err = io.StringIO()
    monkeypatch.setattr(_common.consoles, "err", Console(file=err, width=300))
    urls = [f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"]
    flags = (
        ["--proxy-url", ",".join(urls)]
        if joined
        else ["--proxy-url", urls[0], "--proxy-url", urls[1]]
    )
    code = cli.main(["models", *flags, "--api-key", "sk-cli-0"])
    assert code == 3
    assert "cannot connect" in err.getvalue()
    assert "sk-cli-0" not in err.getvalue()
