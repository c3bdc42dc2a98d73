"""Start the local offline stack: the fake provider and a real LiteLLM proxy in front of it.

The integration tests, the demo and the benchmarks all need the same two processes on loopback, so
they share this one module. It is deliberately synchronous and stdlib-only: it runs from a sync
pytest fixture (pytest-trio has no session-scoped async fixtures) and from plain scripts, and it
must not depend on the client it exists to test.

Each process starts in its own session, so it is stopped as a group (SIGTERM, then SIGKILL after a
grace period) and a Ctrl-C in the terminal reaches only us, not the children: we stop them in order.

``python -m trio_litellm.testing._devstack`` runs the stack in the foreground until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = [
    "DevStack",
    "DevStackError",
    "ExternalStack",
    "Stack",
    "find_litellm_binary",
    "find_project_root",
]

CONFIG_NAME = "litellm_config.yaml"
MASTER_KEY = "sk-test"  # general_settings.master_key in litellm_config.yaml
STARTUP_TIMEOUT = 120.0  # seconds; the proxy alone takes 7-10 s to import on a quiet 2-core box
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL; the proxy usually needs 2-4 s
POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 40
INSTALL_HINT = "run `bash scripts/bootstrap.sh` in the project root to create .proxy-venv"

# urllib honours http_proxy/HTTPS_PROXY; probes of loopback servers must never go through one.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DevStackError(RuntimeError):
    """The local stack could not be found, started or stopped; the message says why."""


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


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port (free now; another process could take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _http_status(url: str) -> int | None:
    """GET ``url``; return its status, or None when nothing answers yet."""
    try:
        with _OPENER.open(url, timeout=2.0) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):  # URLError, refused, reset, timeout; ValueError: bad status line
        return None


class _Service:
    """One child process in its own session, logging to a file, stopped as a process group."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    def start(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        """Spawn ``argv``; stdout and stderr are appended to the log file."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            log.write(f"=== {stamp} starting: {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )

    def wait_until(self, ready: str, accept: frozenset[int] | None, deadline: float) -> None:
        """Poll ``ready`` until it answers (with a status in ``accept``, if given).

        Raises DevStackError, with the tail of the log, if the process exits or the deadline passes.
        """
        process = self._require_process()
        while True:
            status = _http_status(ready)
            if status is not None and (accept is None or status in accept):
                return
            returncode = process.poll()
            if returncode is not None:
                self.stop()  # reaps whatever is left of its process group
                raise DevStackError(
                    f"{self.name} exited with status {returncode} before {ready} answered; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise DevStackError(
                    f"{self.name} did not answer {ready} in time (last status: {status}); "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(POLL_INTERVAL)

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` to the process group and reap it; SIGKILL if it outlives the grace period."""
        process = self.process
        if process is None:
            return
        self._signal_group(process, sig)
        try:
            process.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            self._signal_group(process, signal.SIGKILL)
            process.wait()
        # A worker may outlive the leader; make sure nothing of the group survives.
        self._signal_group(process, signal.SIGKILL)
        self.process = None

    def is_running(self) -> bool:
        """Whether the process was started and has not exited."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines written to the log since the latest start."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                text = log.read().decode("utf-8", errors="replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def _require_process(self) -> subprocess.Popen[bytes]:
        if self.process is None:
            raise DevStackError(f"{self.name} is not running")
        return self.process

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # start_new_session=True made the child a group leader: its pgid is its pid. A group that
        # is already gone raises ProcessLookupError (PermissionError on macOS, for a zombie leader).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)


class DevStack:
    """The fake provider plus a LiteLLM proxy on loopback, as a context manager.

    ``with DevStack(log_dir=...) as stack:`` starts both, waits until the proxy's
    ``/health/readiness`` is 200 and stops both on exit. Use ``stack.proxy_url`` with
    ``stack.api_key``; ``stack.fake_provider_url`` reaches the provider directly.
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
    ) -> None:
        """Prepare, without starting anything.

        ``log_dir`` defaults to ``run/devstack-logs`` under the project root (the directory
        holding ``litellm_config.yaml``). A port of 0 picks a free one. ``config_path`` starts
        the proxy from another config than the project's ``litellm_config.yaml`` (tests that
        need caching or other limits); it may use ``os.environ/FAKE_PROVIDER_API_BASE`` too.
        """
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
        self._proxy_port = proxy_port or free_port()
        self._fake_port = fake_provider_port or free_port()
        self.proxy_url = f"http://127.0.0.1:{self._proxy_port}"
        self.fake_provider_url = f"http://127.0.0.1:{self._fake_port}"
        self._fake = _Service("fake provider", self.log_dir / "fake-provider.log")
        self._proxy = _Service("LiteLLM proxy", self.log_dir / "litellm-proxy.log")

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
        """Start the fake provider, then the proxy; return once both answer.

        Each start begins fresh logs; a restart with start_proxy() appends to the proxy's log.
        On any failure (including Ctrl-C) whatever was started is stopped again.
        """
        for service in (self._fake, self._proxy):
            if not service.is_running():
                service.log_path.unlink(missing_ok=True)
        try:
            self.start_fake_provider()
            self.start_proxy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the proxy, then the fake provider. Safe to call twice."""
        try:
            self.stop_proxy()
        finally:
            self._fake.stop()

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

    def start_proxy(self) -> None:
        """Start the proxy on its port (the same one after a restart) and wait until ready."""
        if self._proxy.is_running():
            return
        binary = find_litellm_binary(self.project_root)
        env = dict(os.environ)
        env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no fetch of the cost map from GitHub
        env["LITELLM_OFFLINE_MODE"] = "true"  # no other start-up network calls either
        env["FAKE_PROVIDER_API_BASE"] = f"{self.fake_provider_url}/v1"  # read by the config
        argv = [str(binary), "--config", str(self.config_path)]
        argv += ["--host", "127.0.0.1", "--port", str(self._proxy_port)]
        self._proxy.start(argv, env, self.project_root)
        self._proxy.wait_until(
            f"{self.proxy_url}/health/readiness",
            frozenset({200}),
            time.monotonic() + self.startup_timeout,
        )

    def stop_proxy(self) -> None:
        """Stop the proxy gracefully (SIGTERM, SIGKILL after 10 s); the fake provider stays up."""
        self._proxy.stop(signal.SIGTERM)

    def kill_proxy(self) -> None:
        """Kill the proxy at once with SIGKILL, as a crash would."""
        self._proxy.stop(signal.SIGKILL)

    def proxy_running(self) -> bool:
        """Whether the proxy process is alive (not whether it is ready)."""
        return self._proxy.is_running()

    def proxy_log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The end of the proxy's log since its latest start, for error messages."""
        return self._proxy.log_tail(lines)


@dataclass(frozen=True, kw_only=True)
class ExternalStack:
    """A stack that runs elsewhere (e.g. started by `just proxy`): DevStack's endpoints, no control.

    It cannot be stopped or restarted from here; ``fake_provider_url`` is None when unknown.
    """

    proxy_url: str
    fake_provider_url: str | None = None
    api_key: str = MASTER_KEY
    log_dir: Path | None = None


Stack = DevStack | ExternalStack
"""Either kind of running stack: what tests, the demo and benchmarks accept."""


def main(argv: list[str] | None = None) -> int:
    """Run the stack in the foreground until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m trio_litellm.testing._devstack",
        description="Run the fake provider and a LiteLLM proxy on loopback until Ctrl-C.",
    )
    parser.add_argument("--proxy-port", type=int, default=0, help="default: a free port")
    parser.add_argument("--fake-provider-port", type=int, default=0, help="default: a free port")
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
        )
        print(
            f"starting the fake provider and the LiteLLM proxy (logs in {stack.log_dir}) ...",
            flush=True,
        )
        with stack:
            print(f"LiteLLM proxy:  {stack.proxy_url}  (api key {stack.api_key})")
            print(f"fake provider:  {stack.fake_provider_url}")
            print(
                f"ready after {time.monotonic() - started:.1f} s; press Ctrl-C to stop", flush=True
            )
            while stack.proxy_running():
                time.sleep(0.5)
            print(f"the proxy exited unexpectedly:\n{stack.proxy_log_tail()}", file=sys.stderr)
            return 1
    except DevStackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped")
        return 0


if __name__ == "__main__":
    sys.exit(main())
