"""Start the local offline stack: the fake provider and real LiteLLM proxies in front of it.

The integration tests, the demo and the benchmarks all need the same processes on loopback, so
they share this one module. It is deliberately synchronous and stdlib-only: it runs from a sync
pytest fixture (pytest-trio has no session-scoped async fixtures) and from plain scripts, and it
must not depend on the client it exists to test.

By default the stack is one proxy. With ``proxies=N`` (N > 1) it is a fleet: a Redis server, the
fake provider and N proxies started from one config whose ``router_settings`` point at that Redis,
so that they enforce rate limits jointly, as LiteLLM's proxies do in production (see ``_redis``).
The processes themselves are ``_services.Service``: each in its own session, stopped as a group.

``python -m trio_litellm.testing._devstack [--proxies N]`` runs the stack in the foreground until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from ._redis import RedisServer, write_fleet_config
from ._services import LOG_TAIL_LINES, DevStackError, Service, free_port

__all__ = [
    "DevStack",
    "DevStackError",
    "ExternalStack",
    "Stack",
    "find_litellm_binary",
    "find_project_root",
    "free_port",
]

CONFIG_NAME = "litellm_config.yaml"
MASTER_KEY = "sk-test"  # general_settings.master_key in litellm_config.yaml
STARTUP_TIMEOUT = 120.0  # seconds; the proxy alone takes 7-10 s to import on a quiet 2-core box
INSTALL_HINT = "run `bash scripts/bootstrap.sh` in the project root to create .proxy-venv"


def find_project_root(start: Path | None = None) -> Path:
    """Return the nearest directory holding ``litellm_config.yaml``.

    Searches upwards from ``start`` if given, else from this file (a source checkout or an
    editable install) and then from the current directory.
    """
    starts = [start] if start is not None else [Path(__file__).resolve().parent, Path.cwd()]
    for origin in starts:
        origin = origin.resolve()
        for candidate in (origin, *origin.parents):
            if (candidate / CONFIG_NAME).is_file():
                return candidate
    searched = ", ".join(str(s) for s in starts)
    raise DevStackError(f"no {CONFIG_NAME} found in {searched} or any parent directory")


def find_litellm_binary(project_root: Path) -> Path:
    """Locate the ``litellm`` executable.

    In order: the ``LITELLM_BIN`` environment variable, ``.proxy-venv/bin/litellm`` under the
    project root, then ``litellm`` on ``PATH``.
    """
    explicit = os.environ.get("LITELLM_BIN")
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DevStackError(f"LITELLM_BIN={explicit} is not an executable file; {INSTALL_HINT}")
        return path
    venv_bin = project_root / ".proxy-venv" / "bin" / "litellm"
    if venv_bin.is_file() and os.access(venv_bin, os.X_OK):
        return venv_bin
    on_path = shutil.which("litellm")
    if on_path is not None:
        return Path(on_path)
    raise DevStackError(
        f"the LiteLLM proxy is not installed: no LITELLM_BIN, no {venv_bin} and no `litellm` on "
        f"PATH; {INSTALL_HINT}"
    )


class DevStack:
    """The fake provider plus one LiteLLM proxy, or a fleet of them, on loopback.

    ``with DevStack(log_dir=...) as stack:`` starts everything, waits until each proxy's
    ``/health/readiness`` is 200 and stops everything on exit. Use ``stack.proxy_url`` (the first
    proxy) or ``stack.proxy_urls`` (all) with ``stack.api_key``; ``stack.fake_provider_url``
    reaches the provider directly, ``stack.redis_url`` the fleet's Redis (None for one proxy).
    Methods that act on one proxy take its ``index`` in ``proxy_urls`` (default: the first).
    """

    api_key: str = MASTER_KEY

    def __init__(
        self,
        *,
        log_dir: Path | str | None = None,
        project_root: Path | str | None = None,
        proxy_port: int = 0,
        fake_provider_port: int = 0,
        startup_timeout: float = STARTUP_TIMEOUT,
        config_path: Path | str | None = None,
        proxies: int = 1,
        redis_port: int = 0,
    ) -> None:
        """Prepare, without starting anything.

        ``log_dir`` defaults to ``run/devstack-logs`` under the project root (the directory
        holding ``litellm_config.yaml``). A port of 0 picks a free one; ``proxy_port`` is the
        first proxy's, the others always get free ones. ``config_path`` starts the proxies from
        another config than the project's ``litellm_config.yaml`` (tests that need caching or
        other limits); it may use ``os.environ/FAKE_PROVIDER_API_BASE`` too. ``proxies`` > 1
        starts a fleet sharing a Redis server (on ``redis_port``), from a copy of the config
        with Redis in its ``router_settings``, written beside it while the stack runs.
        """
        if proxies < 1:
            raise DevStackError(f"a stack needs at least one proxy, not {proxies}")
        self.project_root = (
            Path(project_root).resolve() if project_root is not None else find_project_root()
        )
        self.config_path = (
            Path(config_path).resolve()
            if config_path is not None
            else self.project_root / CONFIG_NAME
        )
        if not self.config_path.is_file():
            raise DevStackError(f"{self.config_path} does not exist")
        self.log_dir = (
            Path(log_dir).resolve()
            if log_dir is not None
            else self.project_root / "run" / "devstack-logs"
        )
        self.startup_timeout = startup_timeout
        self._fake_port = fake_provider_port or free_port()
        self._proxy_ports = _distinct_free_ports(proxy_port, proxies, taken={self._fake_port})
        self.proxy_urls = tuple(f"http://127.0.0.1:{port}" for port in self._proxy_ports)
        self.proxy_url = self.proxy_urls[0]
        self.fake_provider_url = f"http://127.0.0.1:{self._fake_port}"
        self._fake = Service("fake provider", self.log_dir / "fake-provider.log")
        self._redis: RedisServer | None = None
        self.redis_url: str | None = None
        if proxies == 1:
            self._proxies = [Service("LiteLLM proxy", self.log_dir / "litellm-proxy.log")]
        else:
            self._redis = RedisServer(log_path=self.log_dir / "redis.log", port=redis_port)
            self.redis_url = self._redis.url
            self._proxies = [
                Service(f"LiteLLM proxy {i} of {proxies}", self.log_dir / f"litellm-proxy-{i}.log")
                for i in range(1, proxies + 1)
            ]
        self._fleet_config: Path | None = None

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start Redis (for a fleet), the fake provider, then the proxies; return once all answer.

        The proxies start side by side (each takes seconds to import). Each start begins fresh
        logs; a restart with start_proxy() appends to that proxy's log. On any failure
        (including Ctrl-C) whatever was started is stopped again.
        """
        services = [self._fake, *self._proxies]
        for service in services:
            if not service.is_running():
                service.log_path.unlink(missing_ok=True)
        if self._redis is not None and not self._redis.is_running():
            self._redis.log_path.unlink(missing_ok=True)
        try:
            deadline = time.monotonic() + self.startup_timeout
            if self._redis is not None:
                self._redis.start(self.project_root, deadline)
            self.start_fake_provider()
            self._start_proxies(range(len(self._proxies)))
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the proxies, then the fake provider and Redis. Safe to call twice."""
        try:
            for index in range(len(self._proxies)):
                self.stop_proxy(index)
        finally:
            try:
                self._fake.stop()
            finally:
                if self._redis is not None:
                    self._redis.stop()
                if self._fleet_config is not None:
                    self._fleet_config.unlink(missing_ok=True)
                    self._fleet_config = None

    def start_fake_provider(self) -> None:
        """Start ``python -m trio_litellm.testing.fake_provider`` and wait until it answers HTTP."""
        if self._fake.is_running():
            return
        env = dict(os.environ)
        # Make the package importable even when it is not installed (a plain source checkout).
        package_parent = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p
        )
        argv = [sys.executable, "-m", "trio_litellm.testing.fake_provider"]
        argv += ["--host", "127.0.0.1", "--port", str(self._fake_port)]
        self._fake.start(argv, env, self.project_root)
        # Any HTTP answer, even a 404, shows it is serving.
        self._fake.wait_until(
            f"{self.fake_provider_url}/_stats", None, time.monotonic() + self.startup_timeout
        )

    def start_proxy(self, index: int = 0) -> None:
        """Start a proxy on its port (the same one after a restart) and wait until it is ready."""
        self._start_proxies([index])

    def _start_proxies(self, indexes: range | list[int]) -> None:
        """Spawn the proxies at ``indexes`` that are not running, then wait for each."""
        started = [i for i in indexes if not self._proxies[i].is_running()]
        if not started:
            return
        binary = find_litellm_binary(self.project_root)
        env = dict(os.environ)
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of the cost map from GitHub
        env["LITELLM_OFFLINE_MODE"] = "true"  # no other start-up network calls either
        env["FAKE_PROVIDER_API_BASE"] = f"{self.fake_provider_url}/v1"  # read by the config
        config = self._proxy_config()
        for index in started:
            argv = [str(binary), "--config", str(config)]
            argv += ["--host", "127.0.0.1", "--port", str(self._proxy_ports[index])]
            self._proxies[index].start(argv, env, self.project_root)
        deadline = time.monotonic() + self.startup_timeout
        for index in started:
            self._proxies[index].wait_until(
                f"{self.proxy_urls[index]}/health/readiness", frozenset({200}), deadline
            )

    def _proxy_config(self) -> Path:
        """The config the proxies start from: the given one, or for a fleet its copy with Redis."""
        if self._redis is None:
            return self.config_path
        if self._fleet_config is None or not self._fleet_config.is_file():
            self._fleet_config = write_fleet_config(self.config_path, redis_port=self._redis.port)
        return self._fleet_config

    def stop_proxy(self, index: int = 0) -> None:
        """Stop a proxy gracefully (SIGTERM, SIGKILL after 10 s); the rest of the stack stays up."""
        self._proxies[index].stop(signal.SIGTERM)

    def kill_proxy(self, index: int = 0) -> None:
        """Kill a proxy at once with SIGKILL, as a crash would."""
        self._proxies[index].stop(signal.SIGKILL)

    def proxy_running(self, index: int = 0) -> bool:
        """Whether a proxy's process is alive (not whether it is ready)."""
        return self._proxies[index].is_running()

    def redis_running(self) -> bool:
        """Whether the fleet's Redis server is alive (False for a stack without one)."""
        return self._redis is not None and self._redis.is_running()

    def proxy_log_path(self, index: int = 0) -> Path:
        """A proxy's log file: begun afresh by start(), appended to by start_proxy().

        It holds the proxy's access log, one line per answer (``"POST /v1/chat/completions
        HTTP/1.1" 200 OK``), written before the answer is sent: what a proxy served, seen from
        outside the client.
        """
        return self._proxies[index].log_path

    def proxy_log_tail(self, index: int = 0, *, lines: int = LOG_TAIL_LINES) -> str:
        """The end of a proxy's log since its latest start, for error messages."""
        return self._proxies[index].log_tail(lines)

    def exited(self) -> str | None:
        """If a proxy or the Redis server has exited, which one and the end of its log; else None."""
        for service in self._proxies:
            if not service.is_running():
                return f"{service.name} exited; log {service.log_path}:\n{service.log_tail()}"
        if self._redis is not None and not self._redis.is_running():
            return f"the Redis server exited; log {self._redis.log_path}:\n{self._redis.log_tail()}"
        return None


def _distinct_free_ports(first: int, count: int, *, taken: set[int]) -> list[int]:
    """``count`` ports: ``first`` (or a free one when 0), then free ones, none in ``taken``."""
    ports = [first] if first else []
    seen = taken | set(ports)
    while len(ports) < count:
        port = free_port()
        if port not in seen:
            ports.append(port)
            seen.add(port)
    return ports


@dataclass(frozen=True, kw_only=True)
class ExternalStack:
    """A stack that runs elsewhere (e.g. started by `just proxy`): DevStack's endpoints, no control.

    It cannot be stopped or restarted from here; ``fake_provider_url`` and ``redis_url`` are None
    when unknown. ``proxy_urls`` defaults to ``(proxy_url,)``; when given it starts with it.
    """

    proxy_url: str
    proxy_urls: tuple[str, ...] = field(default=())
    fake_provider_url: str | None = None
    redis_url: str | None = None
    api_key: str = MASTER_KEY
    log_dir: Path | None = None

    def __post_init__(self) -> None:
        if not self.proxy_urls:
            object.__setattr__(self, "proxy_urls", (self.proxy_url,))
        elif self.proxy_urls[0] != self.proxy_url:
            raise ValueError("proxy_urls must start with proxy_url")


Stack = DevStack | ExternalStack
"""Either kind of running stack: what tests, the demo and benchmarks accept."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    """Run the stack in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_litellm.testing._devstack",
        description=(
            "Run the fake provider and a LiteLLM proxy on loopback until Ctrl-C; with --proxies N "
            "(N > 1), N proxies sharing their rate limits through a Redis server started too."
        ),
    )
    parser.add_argument("--proxies", type=_positive, default=1, help="default: 1 (no Redis)")
    parser.add_argument(
        "--proxy-port", type=int, default=0, help="the first proxy's; default: a free port"
    )
    parser.add_argument("--fake-provider-port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--redis-port", type=int, default=0, help="with --proxies N > 1; default: a free port"
    )
    parser.add_argument("--log-dir", type=Path, default=None, help="default: run/devstack-logs")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # stop as on Ctrl-C: unwind through DevStack.__exit__

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    try:
        stack = DevStack(
            log_dir=args.log_dir,
            proxy_port=args.proxy_port,
            fake_provider_port=args.fake_provider_port,
            proxies=args.proxies,
            redis_port=args.redis_port,
        )
        what = (
            "the fake provider and the LiteLLM proxy"
            if args.proxies == 1
            else f"a Redis server, the fake provider and {args.proxies} LiteLLM proxies sharing it"
        )
        print(f"starting {what} (logs in {stack.log_dir}) ...", flush=True)
        with stack:
            for number, url in enumerate(stack.proxy_urls, start=1):
                label = (
                    "LiteLLM proxy:" if len(stack.proxy_urls) == 1 else f"LiteLLM proxy {number}:"
                )
                key = f"  (api key {stack.api_key})" if number == 1 else ""
                print(f"{label:<18}{url}{key}")
            if stack.redis_url is not None:
                print(f"{'Redis:':<18}{stack.redis_url}")
            print(f"{'fake provider:':<18}{stack.fake_provider_url}")
            print(
                f"ready after {time.monotonic() - started:.1f} s; press Ctrl-C to stop", flush=True
            )
            while (exited := stack.exited()) is None:
                time.sleep(0.5)
            print(f"stopping: {exited}", file=sys.stderr)
            return 1
    except DevStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped")
        return 0


if __name__ == "__main__":
    sys.exit(main())
