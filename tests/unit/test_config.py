"""ClientConfig: defaults, the environment, URL normalisation, every bad value, and secrets."""

from __future__ import annotations

import math
from typing import Any

import pytest

import trio_litellm
from trio_litellm import ConfigError
from trio_litellm._config import DEFAULT_PROXY_URL, ClientConfig, resolve_config

SECRET = "sk-Zq7-very-secret-key-9f3b"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own proxy settings."""
    monkeypatch.delenv("LITELLM_PROXY_URL", raising=False)
    monkeypatch.delenv("LITELLM_API_KEY", raising=False)


# --- defaults ---------------------------------------------------------------------------------


def test_defaults_are_the_documented_ones() -> None:
    config = ClientConfig()
    assert config.proxy_url == "http://localhost:4000"
    assert config.api_key is None
    assert config.connect_timeout == 5.0
    assert config.read_timeout == 600.0
    assert config.write_timeout == 30.0
    assert config.pool_timeout is None
    assert config.total_timeout == 900.0
    assert config.first_token_timeout is None
    assert config.stream_idle_timeout == 120.0
    assert config.max_retries == 2
    assert (config.backoff_initial, config.backoff_max, config.backoff_jitter) == (0.5, 8.0, 0.5)
    assert config.max_retry_after == 120.0
    assert config.headers == {}
    assert config.max_connections == 100
    assert config.max_keepalive_connections is None
    assert config.keepalive_expiry == 4.0


def test_default_url_is_used_when_neither_argument_nor_environment_sets_one() -> None:
    assert ClientConfig().base_url == DEFAULT_PROXY_URL == "http://localhost:4000"


def test_config_is_frozen() -> None:
    config = ClientConfig()
    with pytest.raises(AttributeError):
        config.max_retries = 5  # type: ignore[misc]


def test_headers_are_copied_so_later_changes_to_the_caller_dict_do_not_leak_in() -> None:
    headers = {"x-litellm-tags": "batch"}
    config = ClientConfig(headers=headers)
    headers["x-litellm-tags"] = "changed"
    assert config.headers == {"x-litellm-tags": "batch"}


# --- the environment --------------------------------------------------------------------------


def test_environment_url_is_used_when_proxy_url_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_PROXY_URL", "https://proxy.example.com")
    assert ClientConfig().proxy_url == "https://proxy.example.com"


def test_explicit_proxy_url_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_PROXY_URL", "https://proxy.example.com")
    assert ClientConfig(proxy_url="http://127.0.0.1:4001").proxy_url == "http://127.0.0.1:4001"


def test_environment_key_is_used_when_api_key_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", SECRET)
    assert ClientConfig().api_key == SECRET


def test_explicit_api_key_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", SECRET)
    assert ClientConfig(api_key="sk-explicit").api_key == "sk-explicit"


def test_environment_url_is_normalised_and_validated_like_an_explicit_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LITELLM_PROXY_URL", "http://proxy:4000/v1/")
    assert ClientConfig().proxy_url == "http://proxy:4000"
    monkeypatch.setenv("LITELLM_PROXY_URL", "proxy:4000")
    with pytest.raises(ConfigError) as info:
        ClientConfig()
    assert info.value.field == "proxy_url"


# --- URL normalisation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://localhost:4000/", "http://localhost:4000"),
        ("http://localhost:4000/v1", "http://localhost:4000"),
        ("http://localhost:4000/v1/", "http://localhost:4000"),
        ("https://gw.example.com/litellm", "https://gw.example.com/litellm"),
        ("https://gw.example.com/litellm/", "https://gw.example.com/litellm"),
        ("https://gw.example.com/litellm/v1", "https://gw.example.com/litellm"),
        ("https://gw.example.com/apiv1", "https://gw.example.com/apiv1"),
        ("  http://localhost:4000  ", "http://localhost:4000"),
    ],
)
def test_trailing_slash_and_v1_are_dropped_but_a_path_prefix_is_kept(
    given: str, expected: str
) -> None:
    assert ClientConfig(proxy_url=given).proxy_url == expected


# --- bad values -------------------------------------------------------------------------------


def config_error(**options: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ClientConfig(**options)
    return info.value


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("localhost:4000", "must start with http:// or https://"),
        ("//localhost:4000", "must start with http:// or https://"),
        ("ftp://localhost:4000", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://:4000", "has no host"),
        ("http://localhost:port", "has a bad port"),
        ("http://localhost:99999", "has a bad port"),
        ("http://localhost:4000?team=a", "must not have a query"),
        ("http://localhost:4000/#top", "must not have a query or fragment"),
    ],
)
def test_bad_proxy_url_is_rejected_saying_what_is_wrong(url: str, problem: str) -> None:
    error = config_error(proxy_url=url)
    assert error.field == "proxy_url"
    assert problem in str(error)


def test_non_string_proxy_url_is_rejected() -> None:
    error = config_error(proxy_url=4000)
    assert error.field == "proxy_url"
    assert "must be a URL or a list of URLs, not int" in str(error)


TIMEOUTS = [
    "connect_timeout",
    "read_timeout",
    "write_timeout",
    "keepalive_expiry",
    "pool_timeout",
    "total_timeout",
    "first_token_timeout",
    "stream_idle_timeout",
]


@pytest.mark.parametrize("field", TIMEOUTS)
@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-1.0, "got -1.0"),
        (0, "must be > 0, got 0"),
        (0.0, "must be > 0, got 0.0"),
        (math.nan, "must be a finite number"),
        (math.inf, "must be a finite number"),
        (True, "must be a number, not bool"),
        ("5", "must be a number, not str"),
    ],
    ids=["negative", "zero", "zero-float", "nan", "inf", "bool", "string"],
)
def test_bad_timeout_is_rejected_naming_the_field(field: str, value: Any, problem: str) -> None:
    error = config_error(**{field: value})
    assert error.field == field
    assert problem in str(error)


@pytest.mark.parametrize(
    "field", ["pool_timeout", "total_timeout", "first_token_timeout", "stream_idle_timeout"]
)
def test_optional_timeouts_accept_none(field: str) -> None:
    options: dict[str, Any] = {field: None}
    assert getattr(ClientConfig(**options), field) is None


@pytest.mark.parametrize(
    "field", ["backoff_initial", "backoff_jitter", "max_retry_after", "backoff_max"]
)
def test_backoff_settings_may_be_zero_but_not_negative(field: str) -> None:
    options: dict[str, Any] = {field: 0.0, "backoff_initial": 0.0}
    assert getattr(ClientConfig(**options), field) == 0.0
    error = config_error(**{field: -0.5})
    assert error.field == field
    assert "must be a finite number >= 0.0, got -0.5" in str(error)


@pytest.mark.parametrize(
    ("value", "problem"),
    [(-1, "must be >= 0, got -1"), (1.5, "must be an integer, not float")],
)
def test_bad_max_retries_is_rejected(value: Any, problem: str) -> None:
    error = config_error(max_retries=value)
    assert error.field == "max_retries"
    assert problem in str(error)


def test_zero_max_retries_disables_retries_and_is_allowed() -> None:
    assert ClientConfig(max_retries=0).max_retries == 0


def test_backoff_max_below_backoff_initial_is_rejected() -> None:
    error = config_error(backoff_initial=2.0, backoff_max=1.0)
    assert error.field == "backoff_max"
    assert "must not be less than backoff_initial" in str(error)


def test_zero_max_connections_is_rejected() -> None:
    error = config_error(max_connections=0)
    assert error.field == "max_connections"
    assert "must be >= 1, got 0" in str(error)


def test_negative_max_keepalive_connections_is_rejected() -> None:
    error = config_error(max_keepalive_connections=-1)
    assert error.field == "max_keepalive_connections"
    assert "must be >= 0" in str(error)


def test_headers_with_a_non_string_value_are_rejected() -> None:
    error = config_error(headers={"x-litellm-timeout": 30})
    assert error.field == "headers"
    assert "must be strings" in str(error)
    assert "x-litellm-timeout" in str(error)


def test_headers_that_are_not_a_mapping_are_rejected() -> None:
    error = config_error(headers=[("x-litellm-tags", "a")])
    assert error.field == "headers"
    assert "must be a mapping of str to str, not list" in str(error)


@pytest.mark.parametrize("value", ["a\r\nx-injected: 1", "a\nb", "a\rb"])
def test_headers_with_a_line_break_are_rejected(value: str) -> None:
    error = config_error(headers={"x-litellm-tags": value})
    assert error.field == "headers"
    assert "contains a line break" in str(error)


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {SECRET}\n"},
        {"x-upstream-key": f"{SECRET}\r\nx-injected: 1"},
    ],
)
def test_header_error_never_shows_the_header_value(headers: dict[str, str]) -> None:
    error = config_error(headers=headers)
    assert error.field == "headers"
    assert SECRET not in str(error)
    assert SECRET not in repr(error)


@pytest.mark.parametrize(
    "key", ["sk-with space", "sk-with\nnewline", "sk-with\ttab", "", "sk-\x00nul"]
)
def test_bad_api_key_is_rejected_without_echoing_it(key: str) -> None:
    error = config_error(api_key=key)
    assert error.field == "api_key"
    assert "must be non-empty, without spaces or control characters" in str(error)
    if key:
        assert key not in str(error)


def test_bad_api_key_from_the_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", f"{SECRET} ")
    error = config_error()
    assert error.field == "api_key"
    assert SECRET not in str(error)


def test_non_string_api_key_is_rejected() -> None:
    error = config_error(api_key=b"sk-bytes")
    assert error.field == "api_key"
    assert "must be a string, not bytes" in str(error)


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
    assert isinstance(config_error(max_connections=0), ValueError)


# --- resolve_config ---------------------------------------------------------------------------


def test_resolve_config_without_a_base_builds_from_options() -> None:
    config = resolve_config(None, {"max_retries": 5})
    assert config == ClientConfig(max_retries=5)


def test_resolve_config_with_nothing_gives_the_defaults() -> None:
    assert resolve_config() == ClientConfig()


def test_unknown_option_is_rejected_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(None, {"temprature": 1})
    assert info.value.field == "temprature"
    assert "unknown option" in str(info.value)
    assert "temprature" in str(info.value)


def test_resolve_config_options_override_the_base() -> None:
    base = ClientConfig(proxy_url="http://proxy:4000", api_key=SECRET, max_retries=1)
    config = resolve_config(base, {"max_retries": 4, "read_timeout": 60.0})
    assert (config.max_retries, config.read_timeout) == (4, 60.0)
    assert (config.proxy_url, config.api_key) == ("http://proxy:4000", SECRET)
    assert base.max_retries == 1


def test_resolve_config_revalidates_overridden_values() -> None:
    base = ClientConfig(backoff_initial=1.0, backoff_max=4.0)
    with pytest.raises(ConfigError) as info:
        resolve_config(base, {"backoff_max": 0.5})
    assert info.value.field == "backoff_max"


def test_resolve_config_normalises_an_overriding_url() -> None:
    base = ClientConfig(proxy_url="http://proxy:4000")
    assert resolve_config(base, {"proxy_url": "http://other:4000/v1"}).proxy_url == (
        "http://other:4000"
    )


def test_resolve_config_without_options_returns_the_base_itself() -> None:
    base = ClientConfig(max_retries=3)
    assert resolve_config(base, {}) is base


@pytest.mark.parametrize("config", ["http://localhost:4000", {"max_retries": 1}])
def test_resolve_config_rejects_a_config_that_is_not_a_client_config(config: Any) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_config(config)
    assert info.value.field == "config"
    assert f"must be a ClientConfig, not {type(config).__name__}" in str(info.value)


async def test_open_client_with_an_unknown_option_raises_config_error_on_entering() -> None:
    with pytest.raises(ConfigError) as info:
        async with trio_litellm.open_client(temprature=1):
            pytest.fail("the block must not run")
    assert info.value.field == "temprature"


# --- secrets ----------------------------------------------------------------------------------


def test_repr_and_str_never_show_the_api_key() -> None:
    config = ClientConfig(api_key=SECRET)
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert "api_key='***'" in repr(config)


def test_repr_never_shows_an_api_key_taken_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", SECRET)
    config = ClientConfig()
    assert config.api_key == SECRET
    assert SECRET not in repr(config)
    assert SECRET not in str(config)


def test_repr_shows_the_other_settings_and_no_key_when_there_is_none() -> None:
    text = repr(ClientConfig(proxy_url="http://proxy:4000", max_retries=7))
    assert text.startswith("ClientConfig(proxy_url='http://proxy:4000', ")
    assert "max_retries=7" in text
    assert text.endswith("api_key=None)")


def test_repr_of_a_resolved_config_never_shows_the_api_key() -> None:
    config = resolve_config(ClientConfig(api_key=SECRET), {"max_retries": 0})
    assert SECRET not in repr(config)


def test_an_empty_environment_key_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", "")
    assert ClientConfig().api_key is None


def test_repr_never_shows_credentials_in_the_proxy_url() -> None:
    config = ClientConfig(proxy_url=f"http://user:{SECRET}@proxy.example:4000")
    assert SECRET not in repr(config)
    assert "proxy_url='http://proxy.example:4000'" in repr(config)
    assert config.base_url == f"http://user:{SECRET}@proxy.example:4000"


# --- TLS and outbound proxies -------------------------------------------------------------------


def test_tls_and_proxy_defaults() -> None:
    config = ClientConfig()
    assert (config.verify, config.ssl_context, config.cert) == (True, None, None)
    assert (config.proxy, config.trust_env) == (None, True)


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("verify", "/nonexistent/ca.pem", "no such CA file or directory"),
        ("verify", 3, "must be a bool or a path"),
        ("ssl_context", "ctx", "must be an ssl.SSLContext"),
        ("cert", "/nonexistent/client.pem", "cannot load"),
        ("cert", ("a", "b", "c", "d"), "must be a path or"),
        ("trust_env", "yes", "must be a bool"),
        ("proxy", "ftp://proxy:21", "must start with"),
        ("proxy", "http://", "has no host"),
        ("proxy", 8080, "must be a string"),
    ],
)
def test_bad_tls_and_proxy_values_name_their_field(field: str, value: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        ClientConfig(**{field: value})
    assert caught.value.field == field


def test_a_ca_file_that_is_not_pem_is_a_config_error(tmp_path: Any) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="verify") as caught:
        ClientConfig(verify=str(bad))
    assert caught.value.field == "verify"


def test_ssl_context_excludes_verify_and_cert() -> None:
    import ssl

    context = ssl.create_default_context()
    assert ClientConfig(ssl_context=context).ssl_context is context
    with pytest.raises(ConfigError) as caught:
        ClientConfig(ssl_context=context, verify=False)
    assert caught.value.field == "ssl_context"
    with pytest.raises(ConfigError) as caught:
        ClientConfig(ssl_context=context, cert="/some/cert.pem")
    assert caught.value.field == "ssl_context"


def test_proxy_credentials_and_the_key_password_never_show_in_repr(tmp_path: Any) -> None:
    import trustme

    issued = trustme.CA().issue_cert("client.test")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    issued.cert_chain_pems[0].write_to_path(str(certfile))
    issued.private_key_pem.write_to_path(str(keyfile))
    config = ClientConfig(
        proxy="http://user:pr0xy-Pa55@proxy.corp:3128",
        cert=(str(certfile), str(keyfile), "key-pa55word"),
    )
    assert "pr0xy-Pa55" not in repr(config)
    assert "key-pa55word" not in repr(config)
    assert "proxy.corp:3128" in repr(config)
    assert config.proxy == "http://user:pr0xy-Pa55@proxy.corp:3128"
