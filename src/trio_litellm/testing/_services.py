"""The child processes of the dev stack: each in its own session, logging to a file, stopped as a group.

Shared by ``_devstack`` (the fake provider and the LiteLLM proxies) and ``_redis`` (the Redis
server a fleet of proxies shares). Synchronous and stdlib-only, for the reasons ``_devstack`` gives.

Each process starts in its own session, so it is stopped as a group (SIGTERM, then SIGKILL after a
grace period) and a Ctrl-C in the terminal reaches only us, not the children: we stop them in order.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["DevStackError", "Service", "free_port", "http_status"]

STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL; the proxy usually needs 2-4 s
POLL_INTERVAL = 0.2
LOG_TAIL_LINES = 40

# urllib honours http_proxy/HTTPS_PROXY; probes of loopback servers must never go through one.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class DevStackError(RuntimeError):
    """The local stack could not be found, started or stopped; the message says why."""


def free_port() -> int:
    """Ask the kernel for a free loopback TCP port (free now; another process could take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_status(url: str) -> int | None:
    """GET ``url``; return its status, or None when nothing answers yet."""
    try:
        with _OPENER.open(url, timeout=2.0) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):  # URLError, refused, reset, timeout; ValueError: bad status line
        return None


class Service:
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
        """Poll the URL ``ready`` until it answers (with a status in ``accept``, if given).

        Raises DevStackError, with the tail of the log, if the process exits or the deadline passes.
        """

        def answered() -> str | None:
            status = http_status(ready)
            if status is not None and (accept is None or status in accept):
                return None
            return f"last status: {status}"

        self.wait_for(answered, ready, deadline)

    def wait_for(self, probe: Callable[[], str | None], what: str, deadline: float) -> None:
        """Call ``probe`` until it returns None (ready); otherwise it says what it saw instead.

        Raises DevStackError, with the tail of the log, if the process exits or the deadline passes;
        either way the process is stopped first.
        """
        process = self._require_process()
        while True:
            seen = probe()
            if seen is None:
                return
            returncode = process.poll()
            if returncode is not None:
                self.stop()  # reaps whatever is left of its process group
                raise DevStackError(
                    f"{self.name} exited with status {returncode} before {what} answered; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                self.stop()
                raise DevStackError(
                    f"{self.name} did not answer {what} in time ({seen}); "
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
