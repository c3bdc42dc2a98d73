"""A fleet's config: the given LiteLLM config with its router state in the fleet's Redis."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from trio_litellm.testing._redis import fleet_config_text, write_fleet_config
from trio_litellm.testing._services import DevStackError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def router_settings(text: str) -> dict[str, str]:
    """The router_settings block's keys and raw values (enough for these flat configs)."""
    lines = text.splitlines()
    start = lines.index("router_settings:") + 1
    settings: dict[str, str] = {}
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(":")
            settings[key] = value.partition("#")[0].strip()
    return settings


def test_redis_is_added_to_the_existing_router_settings() -> None:
    config = textwrap.dedent("""\
        model_list: []
        router_settings:
          num_retries: 0   # fast errors
          timeout: 30

        general_settings:
          master_key: sk-test
        """)

    derived = fleet_config_text(config, redis_port=6390)

    assert router_settings(derived) == {
        "redis_host": "127.0.0.1",
        "redis_port": "6390",
        "optional_pre_call_checks": '["enforce_model_rate_limits"]',
        "num_retries": "0",
        "timeout": "30",
    }
    assert "  num_retries: 0   # fast errors\n  timeout: 30\n\ngeneral_settings:" in derived


def test_other_pre_call_checks_are_kept_beside_the_rate_limit_check() -> None:
    config = textwrap.dedent("""\
        router_settings:
            redis_host: redis.example
            redis_password: secret
            optional_pre_call_checks:
              - prompt_caching   # a comment
              - "router_budget_lookup"
            timeout: 30
        """)

    settings = router_settings(fleet_config_text(config, redis_port=7000))

    assert json.loads(settings["optional_pre_call_checks"]) == [
        "prompt_caching",
        "router_budget_lookup",
        "enforce_model_rate_limits",
    ]
    assert settings["redis_host"] == "127.0.0.1"
    assert "redis_password" not in settings
    assert settings["timeout"] == "30"


def test_a_listed_rate_limit_check_is_not_repeated() -> None:
    config = 'router_settings:\n  optional_pre_call_checks: ["enforce_model_rate_limits"]\n'

    settings = router_settings(fleet_config_text(config, redis_port=7000))

    assert json.loads(settings["optional_pre_call_checks"]) == ["enforce_model_rate_limits"]


def test_a_config_without_router_settings_gets_them() -> None:
    derived = fleet_config_text("model_list: []\n", redis_port=7000)

    assert derived.splitlines()[1] == "model_list: []"
    assert router_settings(derived)["redis_port"] == "7000"


def test_router_settings_in_flow_style_are_refused() -> None:
    with pytest.raises(DevStackError, match="block mapping"):
        fleet_config_text("router_settings: {timeout: 30}\n", redis_port=7000)


def test_the_projects_config_keeps_every_model(tmp_path: Path) -> None:
    config = tmp_path / "litellm_config.yaml"
    config.write_text((PROJECT_ROOT / "litellm_config.yaml").read_text())

    derived = write_fleet_config(config, redis_port=6390)

    assert derived == tmp_path / ".litellm_config.fleet-6390.yaml"
    original = config.read_text()
    text = derived.read_text()
    assert text.count("- model_name:") == original.count("- model_name:")
    assert router_settings(text)["redis_port"] == "6390"
    assert router_settings(text)["num_retries"] == "0"
