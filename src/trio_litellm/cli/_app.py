"""The ``trio-litellm`` application: its commands, and ``main``, which maps every way a command
can end to an exit code (the codes are listed in :mod:`trio_litellm.cli`)."""

from __future__ import annotations

import logging
import sys

import cyclopts

from .._errors import (
    AuthenticationError,
    BatchInputError,
    ConfigError,
    InvalidRequestError,
    LiteLLMError,
    OutputCorruptError,
    OutputLockedError,
    ProxyCertificateError,
    ProxyConnectionError,
)
from .._nursery import single_leaf
from .._version import __version__
from ..testing.fake_provider.__main__ import app as fake_provider_app
from ._batch import batch
from ._common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_PROXY, EXIT_USAGE, Exit, consoles
from ._proxy import chat, health, model_info, models
from ._realtime import realtime
from ._reports import recorded, status, usage

__all__ = ["app", "main"]

app = cyclopts.App(
    name="trio-litellm",
    help="A trio-native client for the LiteLLM proxy.\n\nExit codes: 0 done, 1 a request failed "
    "(some batch requests, or the proxy answered an error), 2 bad usage or invalid input, "
    "3 proxy unreachable, key refused or bad configuration, 130 interrupted.",
    version=__version__,
    backend="trio",
    # Not cyclopts' sys.exit(130): main() prints the "interrupted" line, which a bare
    # KeyboardInterrupt leaving a command would otherwise never reach.
    suppress_keyboard_interrupt=False,
)
app.command(fake_provider_app, name="fake-provider")
app.command(batch)
app.command(usage)
app.command(status)
app.command(recorded)
app.command(chat)
app.command(realtime)
app.command(models)
app.command(model_info, name="model-info")
app.command(health)


def _fail(label: str, message: str, code: int) -> int:
    """Print ``label: message`` on stderr, the message verbatim (no markup, no wrapping)."""
    consoles.err.print(f"[red]{label}:[/] ", end="")
    consoles.err.print(message, markup=False, highlight=False, soft_wrap=True)
    return code


def _run(argv: list[str] | None) -> object:
    """Run the command; an exception group from trio comes out as its one exception, and any
    group holding a KeyboardInterrupt as a KeyboardInterrupt."""
    try:
        return app(argv, result_action="return_value", exit_on_error=False, print_error=True)
    except BaseExceptionGroup as group:
        if group.subgroup(KeyboardInterrupt) is not None:
            raise KeyboardInterrupt from None
        leaf = single_leaf(group)
        if leaf is None:
            raise
        raise leaf from None


_UNUSABLE = (ConfigError, AuthenticationError, ProxyConnectionError, ProxyCertificateError)
"""Errors that mean the proxy cannot be used at all (exit code 3): a bad configuration, a
refused key, a proxy that cannot be reached. Any other error is one request's (exit code 1)."""


def _exit_code(exc: LiteLLMError) -> int:
    """3 when the proxy cannot be used at all, 1 when it answered one request with an error."""
    return EXIT_PROXY if isinstance(exc, _UNUSABLE) else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trio-litellm`` script: run a command, map failures to exit codes."""
    # Retries are counted in the summary; stamina's own per-retry warnings would only be noise.
    logging.getLogger("stamina").setLevel(logging.ERROR)
    try:
        code = _run(argv)
    except Exit as exc:
        return _fail("error", str(exc), exc.code)
    except BatchInputError as exc:
        return _fail("invalid input", str(exc), EXIT_USAGE)
    except OutputCorruptError as exc:
        return _fail("cannot resume", str(exc), EXIT_USAGE)
    except OutputLockedError as exc:
        return _fail("cannot run", str(exc), EXIT_USAGE)
    except InvalidRequestError as exc:
        return _fail("invalid request", str(exc), EXIT_USAGE)
    except LiteLLMError as exc:  # an AuthenticationError says that the proxy refused the key
        return _fail("error", str(exc), _exit_code(exc))
    except cyclopts.CycloptsError:
        return EXIT_USAGE
    except KeyboardInterrupt:
        words = sys.argv[1:] if argv is None else argv
        command = next((word for word in words if not word.startswith("-")), None)
        said = (
            "what finished is saved; run the same command again to resume"
            if command == "batch"
            else "stopped"
        )
        code = _fail("interrupted", said, EXIT_INTERRUPTED)
        sys.stderr.flush()
        return code
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    return EXIT_OK
