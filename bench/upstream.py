"""The benchmarks' upstream: nginx serving fixed bodies, or our fake provider, on loopback.

nginx is the default because it is far cheaper per request than any Python client, so the
clients, not the upstream, set the pace. It answers every POST with a fixed file from
``bench/bodies/`` (nginx cannot read JSON bodies, so the route picks the file):

    POST /v1/chat/completions          chat_completion.json   application/json
    POST /stream/v1/chat/completions   chat_stream.sse        text/event-stream
    POST /v1/embeddings                embedding.json         application/json

Clients send streams to :attr:`Upstream.stream_base_url` (the ``/stream`` prefix), everything else
to :attr:`Upstream.base_url`. nginx's static module refuses POST with a 405; ``error_page 405
=200 $uri`` turns that into an internal GET of the same file, answered 200. Each location is
checked at start (status, Content-Type, body, two POSTs on one kept-alive connection), so a
config that does not work fails here rather than as a benchmark full of errors.

``--upstream fake`` runs ``python -m trio_litellm.testing.fake_provider`` instead (64 content
chunks per stream, 1536-float embeddings), which is much slower per request than nginx.

Either way the upstream is a subprocess stopped when the ``with`` block ends, so its CPU is not
counted as the client's; :meth:`Upstream.cpu_seconds` reads its CPU from ``/proc``.

Both benchmarks also take from here what they send and how they check what comes back (the
answers are the bodies above, so every request can be verified), and the few measurements they
share: this process's RSS and the machine's description.
"""

from __future__ import annotations

import contextlib
import grp
import http.client
import importlib.metadata
import os
import platform
import pwd
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

BODIES = Path(__file__).resolve().parent / "bodies"
CHAT_BODY = "chat_completion.json"
STREAM_BODY = "chat_stream.sse"
EMBEDDING_BODY = "embedding.json"

STREAM_CONTENT_CHUNKS = 64
"""Chunks with text in every stream, both upstreams (the SSE file and ``--chunks 64``)."""
EMBEDDING_DIMENSIONS = 1536
"""Floats in every embedding, both upstreams."""

API_KEY = "bench"
MESSAGES: list[ChatCompletionMessageParam] = [
    {
        "role": "system",
        "content": "You are a careful assistant for an accounts team. Answer in one sentence.",
    },
    {
        "role": "user",
        "content": (
            "Invoice 2024-0317 lists two licences at 240 EUR each and one support plan at "
            "180 EUR. What is the total before VAT, and what does it consist of?"
        ),
    },
]
"""Every chat request's messages (the fake provider echoes the last: over 64 characters)."""
MAX_TOKENS = 256
EMBEDDING_INPUT = "Invoice 2024-0317: two licences and one support plan, 660 EUR before VAT."

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

UpstreamKind = Literal["nginx", "fake"]
Log = Callable[[str], None]


class UpstreamError(Exception):
    """The upstream cannot be installed, started or trusted."""


class WrongAnswer(Exception):
    """A request succeeded but its answer is not what the upstream serves."""


def check_completion(content: object, total_tokens: int | None) -> None:
    """A completion has text and usage."""
    if not isinstance(content, str) or not content or not total_tokens:
        raise WrongAnswer(f"completion without content or usage: {content!r}, {total_tokens!r}")


def check_stream(content_chunks: int, usage_seen: bool) -> None:
    """A stream had its 64 chunks of text and a usage chunk (and ended: the caller saw it end)."""
    if content_chunks != STREAM_CONTENT_CHUNKS or not usage_seen:
        raise WrongAnswer(
            f"stream with {content_chunks} content chunks (expected {STREAM_CONTENT_CHUNKS}) "
            f"and {'a' if usage_seen else 'no'} usage chunk"
        )


def check_embedding(dimensions: int) -> None:
    """An embedding has its 1536 floats."""
    if dimensions != EMBEDDING_DIMENSIONS:
        raise WrongAnswer(f"embedding of {dimensions} floats, expected {EMBEDDING_DIMENSIONS}")


@dataclass(frozen=True)
class Upstream:
    """A running upstream: where to send requests, which models to name, how to read its CPU."""

    kind: UpstreamKind
    base_url: str
    """For completions and embeddings (no ``/v1``: add it for the openai SDK)."""
    stream_base_url: str
    """For streamed completions: the same server, with a path prefix under nginx."""
    chat_model: str
    embedding_model: str
    pid: int
    version: str

    def cpu_seconds(self) -> float:
        """User+sys CPU of the upstream and its children (nginx's workers) so far."""
        return sum(_process_cpu(pid) for pid in _process_tree(self.pid))


RATELIMIT_HEADERS = """\
            add_header x-ratelimit-limit-requests 10000;
            add_header x-ratelimit-remaining-requests 9999;
            add_header x-ratelimit-limit-tokens 2000000;
            add_header x-ratelimit-remaining-tokens 1999000;
"""
"""What a LiteLLM proxy copies from an upstream provider onto most answers (OpenAI sends them on
every one); each such answer makes the client's throttle adjust."""


@contextmanager
def open_upstream(
    kind: UpstreamKind, log: Log, *, ratelimit_headers: bool = False
) -> Iterator[Upstream]:
    """Start the upstream on a free loopback port; stop it however the block ends.

    ``ratelimit_headers`` (nginx only): answer completions and embeddings with the
    ``x-ratelimit-*`` headers a real provider sends through the proxy."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as tmp:
        if kind == "nginx":
            with _nginx(Path(tmp), log, ratelimit_headers) as upstream:
                yield upstream
        else:
            with _fake_provider(Path(tmp), log) as upstream:
                yield upstream


# --- nginx ----------------------------------------------------------------------------------------

_NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    open_file_cache max=16;
    etag off;
    types {{ }}

    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # The static module answers POST with 405: serve the file anyway, as a 200.
        error_page 405 =200 $uri;

        location = /v1/chat/completions {{
            default_type application/json;
{ratelimit}            alias {www}/{chat};
        }}
        location = /stream/v1/chat/completions {{
            default_type text/event-stream;
            add_header Cache-Control no-cache;
            alias {www}/{stream};
        }}
        location = /v1/embeddings {{
            default_type application/json;
{ratelimit}            alias {www}/{embedding};
        }}
        location / {{
            default_type application/json;
            return 404 '{{"error": {{"message": "no such route", "type": "not_found_error"}}}}';
        }}
    }}
}}
"""


@contextmanager
def _nginx(workdir: Path, log: Log, ratelimit_headers: bool = False) -> Iterator[Upstream]:
    binary = _find_nginx() or _install_nginx(log)
    version = _nginx_version(binary)
    # nginx's workers may run as another user: give them a readable copy of the bodies.
    workdir.chmod(0o755)
    www = workdir / "www"
    www.mkdir(mode=0o755)
    for name in (CHAT_BODY, STREAM_BODY, EMBEDDING_BODY):
        shutil.copyfile(BODIES / name, www / name)
        (www / name).chmod(0o644)
    port = _free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(
            prefix=workdir,
            port=port,
            www=www,
            chat=CHAT_BODY,
            stream=STREAM_BODY,
            embedding=EMBEDDING_BODY,
            user=_worker_user(),
            ratelimit=RATELIMIT_HEADERS if ratelimit_headers else "",
        )
    )
    error_log = workdir / "error.log"
    argv = [binary, "-p", str(workdir), "-e", str(error_log), "-c", str(conf)]
    log(f"starting {version} on 127.0.0.1:{port} (config {conf})")
    with (workdir / "stderr.log").open("wb") as stderr:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own group: a stuck stop can kill master and workers
        )
    try:
        _wait_for_port(port, process, [error_log, workdir / "stderr.log"])
        base_url = f"http://127.0.0.1:{port}"
        _check_nginx(port)
        yield Upstream(
            kind="nginx",
            base_url=base_url,
            stream_base_url=f"{base_url}/stream",
            chat_model="gpt-4o-mini",
            embedding_model="text-embedding-3-small",
            pid=process.pid,
            version=version,
        )
    finally:
        _stop(process, group=True)


def _worker_user() -> str:
    """As root, nginx's workers run as ``nobody`` (its group varies: nogroup on Debian)."""
    if os.geteuid() != 0:
        return ""  # the workers run as we do
    try:
        entry = pwd.getpwnam("nobody")
        group = grp.getgrgid(entry.pw_gid).gr_name
    except KeyError:
        return "user root;"  # no unprivileged user to switch to
    return f"user nobody {group};"


def _find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _install_nginx(log: Log) -> str:
    """Install Debian's nginx package with apt-get, saying so; fail clearly where we cannot."""
    how = "install it (Debian/Ubuntu: apt-get install nginx) or pass --upstream fake"
    if shutil.which("apt-get") is None:
        raise UpstreamError(f"nginx is not installed and apt-get is not available: {how}")
    if os.geteuid() != 0:
        raise UpstreamError(f"nginx is not installed and installing it needs root: {how}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "nginx"],
    ):
        log(f"nginx is not installed: running {' '.join(argv)}")
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise UpstreamError(
                f"{' '.join(argv)} failed (status {done.returncode}); {how}. Its output:\n{tail}"
            )
    binary = _find_nginx()
    if binary is None:
        raise UpstreamError(f"apt-get installed nginx but no nginx binary was found: {how}")
    log(f"installed {binary}")
    return binary


def _nginx_version(binary: str) -> str:
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    text = (done.stderr or done.stdout).strip()
    return text.removeprefix("nginx version: ") or "nginx"


def _check_nginx(port: int) -> None:
    """Each route answers a POST with its file and type, twice on one kept-alive connection."""
    routes = (
        ("/v1/chat/completions", CHAT_BODY, "application/json"),
        ("/stream/v1/chat/completions", STREAM_BODY, "text/event-stream"),
        ("/v1/embeddings", EMBEDDING_BODY, "application/json"),
    )
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=STARTUP_TIMEOUT)
    try:
        for path, name, content_type in routes:
            expected = (BODIES / name).read_bytes()
            for _ in range(2):
                body = b'{"model": "check", "messages": [{"role": "user", "content": "hi"}]}'
                connection.request(
                    "POST", path, body=body, headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                got = response.read()
                problem = None
                if response.status != 200:
                    problem = f"status {response.status}"
                elif response.getheader("Content-Type") != content_type:
                    problem = f"Content-Type {response.getheader('Content-Type')!r}"
                elif got != expected:
                    problem = f"a body of {len(got)} bytes that is not {name}"
                elif response.will_close:
                    problem = "a closed connection (no keep-alive)"
                if problem is not None:
                    raise UpstreamError(f"nginx answered POST {path} with {problem}")
    except OSError as exc:
        raise UpstreamError(f"cannot check nginx on port {port}: {exc}") from exc
    finally:
        connection.close()


# --- the fake provider ----------------------------------------------------------------------------


@contextmanager
def _fake_provider(workdir: Path, log: Log) -> Iterator[Upstream]:
    log_path = workdir / "fake_provider.log"
    argv = [
        sys.executable,
        "-m",
        "trio_litellm.testing.fake_provider",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--chunks",
        str(STREAM_CONTENT_CHUNKS),
        "--embedding-dim",
        str(EMBEDDING_DIMENSIONS),
    ]
    with log_path.open("wb") as stderr:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    try:
        url = _read_fake_url(process, log_path)
        log(f"fake provider at {url}")
        yield Upstream(
            kind="fake",
            base_url=url,
            stream_base_url=url,
            chat_model="echo",
            embedding_model="text-embedding-3-small",
            pid=process.pid,
            version="trio_litellm.testing.fake_provider",
        )
    finally:
        _stop(process, group=False)


def _read_fake_url(process: subprocess.Popen[str], log_path: Path) -> str:
    """Read the provider's ``fake provider listening on URL`` line, within STARTUP_TIMEOUT."""
    assert process.stdout is not None
    prefix = "fake provider listening on "
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(STARTUP_TIMEOUT)
    line = process.stdout.readline() if ready else ""
    if not line.startswith(prefix):
        reason = "did not start in time" if not ready else f"printed {line.strip()!r}"
        if process.poll() is not None:
            reason = f"exited with status {process.returncode}"
        raise UpstreamError(f"the fake provider {reason}; {_tail([log_path])}")
    return line[len(prefix) :].strip()


# --- processes ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], logs: list[Path]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise UpstreamError(
                f"nginx exited with status {process.returncode} at start; {_tail(logs)}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise UpstreamError(f"nginx did not listen on port {port} in {STARTUP_TIMEOUT:.0f} s")


def _tail(paths: list[Path], lines: int = 20) -> str:
    parts = []
    for path in paths:
        if path.exists() and path.stat().st_size:
            text = "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            parts.append(f"{path}:\n{text}")
    return "\n".join(parts) or "it logged nothing"


def _stop(process: subprocess.Popen[str] | subprocess.Popen[bytes], *, group: bool) -> None:
    """SIGTERM, then SIGKILL after a grace period (the whole group when it has its own)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc/PID/task/*/children``."""
    found = [pid]
    for parent in found:
        try:
            tasks = list(Path(f"/proc/{parent}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                found.extend(int(child) for child in (task / "children").read_text().split())
            except (OSError, ValueError):
                continue
    return found


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _process_cpu(pid: int) -> float:
    """CPU seconds of one process so far (0 if it is gone).

    The scheduler's nanosecond count of each thread (``/proc/PID/task/TID/schedstat``) where the
    kernel keeps it, else utime+stime from ``/proc/PID/stat``, in clock ticks (10 ms).
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return sum(int((task / "schedstat").read_text().split()[0]) for task in tasks) / 1e9
    except (OSError, ValueError, IndexError):
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


# --- shared by the benchmarks ---------------------------------------------------------------------

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_mib() -> float:
    """This process's resident set now, in MiB (``/proc/self/statm``; Linux only)."""
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE / 2**20


def machine() -> dict[str, Any]:
    """Cores, CPU model, Python and the versions of the libraries measured."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    versions = {}
    for package in (
        "trio-litellm",
        "openai",
        "aiohttp",
        "httpx2",
        "httpcore2",
        "httptools",
        "trio",
        "anyio",
        "msgspec",
    ):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "-"
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "source": source_version(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "versions": versions,
    }


def source_version() -> str:
    """The commit of the trio-litellm source measured, and whether ``src/`` differs from it."""
    repo = BODIES.parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit} with uncommitted changes in src/" if changes else commit


def describe_machine(host: dict[str, Any]) -> str:
    """Two lines for the top of a report: the machine and libraries, the source measured."""
    versions = ", ".join(f"{name} {version}" for name, version in host["versions"].items())
    return (
        f"machine: {host['cpu_count']} cores ({host['cpu_model'] or 'unknown CPU'}), "
        f"{host['implementation']} {host['python']}; {versions}\n"
        f"source: trio-litellm {host['source']}"
    )
