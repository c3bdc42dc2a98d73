"""The error tree: every error class of trio-litellm, defined in this one module.

The README draws the same tree; a test holds both drawings to the classes' real bases::

    LiteLLMError                      every error the library raises; .status, .message, .call_id
    ├── UsageError                    the cause is on your side, not the proxy's; never retried
    │   ├── ConfigError               a bad option or value (also a ValueError)
    │   ├── InvalidRequestError       a request that cannot be sent, .field names what (also a
    │   │                             ValueError and a TypeError)
    │   ├── ClientClosedError         the client closed (or its caller left) before the end
    │   ├── DumpFileError             not a recorder dump: .path, .line_no (also a ValueError)
    │   ├── BatchInputError           a batch input file that cannot be read or sent (.problems)
    │   ├── OutputCorruptError        a batch output line that is not ours, or a custom_id twice
    │   └── OutputLockedError         another batch run is writing the output file
    └── APIError                      the request was made and failed
        ├── APIConnectionError        no answer came
        │   ├── ProxyConnectionError  cannot reach the proxy, or the connection broke   (retried)
        │   ├── ProxyCertificateError TLS failed on a certificate (theirs untrusted, ours refused)
        │   └── RequestTimeoutError   one of our deadlines, or the proxy's 408           (retried)
        │                             (also named APITimeoutError)
        ├── ResponseDecodeError       an answer that is not the OpenAI wire format
        │   └── ResponseTooLargeError a response head, body or stream event over its cap
        ├── StreamInterruptedError    a stream ended abnormally after content (.partial)
        ├── RealtimeClosedError       a realtime session closed abnormally (.code, .reason, .partial)
        └── APIStatusError            the proxy answered with an error
            ├── SpendUnavailableError     spend needs a proxy database, and it has none
            ├── BadRequestError           400
            │   ├── ModelNotFoundError    "Invalid model name", or a model info lookup found none
            │   ├── ContextWindowExceededError
            │   └── ContentPolicyViolationError
            ├── AuthenticationError       401 (and LiteLLM's key errors, which may come as 400)
            ├── PermissionDeniedError     403 (and LiteLLM's model-access errors)
            ├── NotFoundError             404
            ├── ConflictError             409                                            (retried)
            ├── UnprocessableEntityError  422
            ├── RateLimitError            429, .retry_after in seconds                   (retried)
            │   └── BudgetExceededError   a spent budget: never retried
            ├── InternalServerError       500 and other 5xx                              (retried)
            └── ServiceUnavailableError   502, 503, 504                                  (retried)

Two branches, kept apart as h11 keeps ``LocalProtocolError`` from ``RemoteProtocolError``:
``UsageError`` is what the caller did (a call, an option or a file to fix, a client used while
or after it closed), ``APIError`` what the proxy or the network did. The first is never
retried and never counts against the proxy's health; the second is what the retry policy and
the health gate weigh. ``UsageError`` stays under ``LiteLLMError`` so that one
``except LiteLLMError`` still catches everything the library raises (a batch job's last line of
defence, the CLI's exit codes); ``except APIError`` leaves misuse out, as in the openai SDK.
The misuse classes are also the builtin errors Python raises for such mistakes (``ValueError``,
``TypeError``), so code that catches those keeps working.

``APIError``, ``APIConnectionError``, ``APITimeoutError``, ``APIStatusError`` and the status
classes carry the openai SDK's names, so code ported from it keeps its ``except`` clauses: as
there, a timeout is a kind of connection error (``except APIConnectionError`` catches both),
while ``except ProxyConnectionError`` still means only that the proxy could not be reached.

Which leaf a proxy's error answer becomes is decided in :mod:`._classify`. This module does no
IO and imports nothing of ours at run time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .batch._input import InputProblem

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchInputError",
    "BudgetExceededError",
    "ClientClosedError",
    "ConfigError",
    "ConflictError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "DumpFileError",
    "InternalServerError",
    "InvalidRequestError",
    "LiteLLMError",
    "ModelNotFoundError",
    "NotFoundError",
    "OutputCorruptError",
    "OutputLockedError",
    "PermissionDeniedError",
    "ProxyCertificateError",
    "ProxyConnectionError",
    "RateLimitError",
    "RealtimeClosedError",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseTooLargeError",
    "ServiceUnavailableError",
    "SpendUnavailableError",
    "StreamInterruptedError",
    "UnprocessableEntityError",
    "UsageError",
]


class LiteLLMError(Exception):
    """Root of every error raised by trio-litellm.

    Carries what the proxy said when it said anything: the HTTP ``status``, its ``message``,
    ``type``, ``param`` and ``code`` fields, the ``call_id`` (``x-litellm-call-id``) and the
    ``model`` asked for. ``retryable`` says whether the retry policy may try the request again.
    An error answer's body (text, decoded as UTF-8 with bad bytes replaced, as the debug
    recorder keeps it) and headers are in ``response_body`` and ``response_headers`` (the API key
    masked, should the proxy echo it); None for errors that had no answer.
    """

    retryable: bool = False
    response_body: str | None = None
    response_headers: Mapping[str, str] | None = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        call_id: str | None = None,
        model: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code
        self.call_id = call_id
        self.model = model
        self.retry_after = retry_after

    @property
    def status_code(self) -> int | None:
        """The HTTP status (``status``), under the openai SDK's name; None when there was none."""
        return self.status

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.type:
            parts.append(f"type={self.type}")
        if self.model:
            parts.append(f"model={self.model}")
        if self.call_id:
            parts.append(f"call_id={self.call_id}")
        return " | ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, type={self.type!r})"
        )


class UsageError(LiteLLMError):
    """The cause is on the caller's side: a call, an option or a file to fix, or a client used
    while or after it closed. Nothing was asked of the proxy, or what it did is not at fault;
    retrying the same cannot help, so none of these is retried."""


class ConfigError(UsageError, ValueError):
    """A configuration option is unknown or has a bad value; ``field`` names it."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class InvalidRequestError(UsageError, ValueError, TypeError):
    """You misused the API: a request that cannot be sent, refused before anything is sent.

    A misspelt or missing keyword, no model, no or empty messages, a message that is neither a
    dict nor a :class:`Message`, a bad per-call option, a job that is not a :class:`Job`...
    ``field`` (also ``param``, as the proxy names a bad parameter) names what is wrong. It is
    also a ValueError and a TypeError: Python raises those for such mistakes, and code that
    catches them keeps working.
    """

    def __init__(self, message: str, *, field: str | None = None, **fields: Any) -> None:
        super().__init__(message, param=field, **fields)
        self.field = field


class ClientClosedError(UsageError):
    """The request was cancelled before it finished: the client closed, or its caller left.

    Also what every method of a closed client raises.
    """


class DumpFileError(UsageError, ValueError):
    """A line of a recorder dump is not a recorded exchange; ``path`` and ``line_no`` say where."""

    def __init__(self, path: str, line_no: int, problem: str) -> None:
        super().__init__(f"{path}:{line_no}: {problem}")
        self.path = path
        self.line_no = line_no


class BatchInputError(UsageError):
    """A batch input file cannot be read, or has lines that cannot be sent.

    ``problems`` lists them (maybe only the first ``MAX_KEPT_PROBLEMS`` of
    :mod:`trio_litellm.batch`); ``total`` counts them all.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        problems: Sequence[InputProblem],
        *,
        total: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.problems = list(problems)
        self.total = len(self.problems) if total is None else total
        shown = self.problems[:20]
        noun = "problem" if self.total == 1 else "problems"
        lines = [f"{self.path}: {self.total} {noun} in the batch input file"]
        for problem in shown:
            where = f"{self.path}:{problem.line_no}" if problem.line_no else self.path
            lines.append(f"  {where}: {problem.message}")
        if self.total > len(shown):
            lines.append(f"  ... and {self.total - len(shown)} more")
        super().__init__("\n".join(lines))


class OutputCorruptError(UsageError):
    """A complete line of a batch output file is not one of our records, or repeats a
    ``custom_id``. ``path`` and ``line_no`` (1-based) say where."""

    def __init__(self, path: str, line_no: int, problem: str) -> None:
        super().__init__(f"{path}:{line_no}: {problem}")
        self.path = path
        self.line_no = line_no


class OutputLockedError(UsageError):
    """Another run holds the batch output file's lock; ``pid`` is that run's process (None if
    unknown).

    Two runs on one output would each send the requests the other is sending, and write them
    twice; the second run stops before it reads anything.
    """

    def __init__(self, path: str, lock_path: str, pid: int | None) -> None:
        holder = f"PID {pid}" if pid is not None else "PID unknown"
        super().__init__(
            f"{path} is being written by another run ({holder}, holding {lock_path}); "
            "wait for it to end or stop it, then run again"
        )
        self.path = path
        self.lock_path = lock_path
        self.pid = pid


class APIError(LiteLLMError):
    """The request was made and failed: no answer came, the answer was broken, or the proxy
    answered with an error. A :class:`UsageError` is not an API error, as misuse is not in the
    openai SDK."""


class APIConnectionError(APIError):
    """No answer came: the proxy could not be reached, the connection broke, or a deadline
    passed. As in the openai SDK, timeouts are connection errors too."""


class ProxyConnectionError(APIConnectionError):
    """The proxy could not be reached, or the connection broke before a complete answer.

    ``never_sent`` is True when the request never left (the connection could not be opened):
    sending it again, to this proxy or another, cannot make it run twice.
    """

    retryable = True
    never_sent = False


class ProxyCertificateError(APIConnectionError):
    """The TLS handshake with the proxy failed on a certificate: we do not trust the proxy's
    (``verify``, ``ssl_context``, ``$SSL_CERT_FILE``), or it refused or wanted ours (``cert``).

    Retrying cannot fix it, so it is never retried; the proxy answered, so it is not counted as
    the proxy being down either.
    """


class RequestTimeoutError(APIConnectionError):
    """A deadline passed: one of ours (connect, read, total, first token, stream idle) or the
    proxy's own (HTTP 408). Also named ``APITimeoutError``, as in the openai SDK."""

    retryable = True


APITimeoutError = RequestTimeoutError
"""The openai SDK's name for :class:`RequestTimeoutError`."""


class ResponseDecodeError(APIError):
    """The proxy answered, but the body is not what the OpenAI wire format says it should be."""


class ResponseTooLargeError(ResponseDecodeError):
    """A part of the answer grew past its cap: ``size`` bytes (at least) of the ``what`` (the
    response head, the body, a stream event) against a ``limit`` set by the option ``option``
    (None for a fixed cap). The connection is closed; retrying would read the same again."""

    def __init__(
        self,
        message: str,
        *,
        what: str,
        size: int,
        limit: int,
        option: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message, **fields)
        self.what = what
        self.size = size
        self.limit = limit
        self.option = option


class StreamInterruptedError(APIError):
    """A stream ended abnormally after content had reached the caller.

    ``partial`` is the completion aggregated from the chunks received so far; ``__cause__`` is
    the typed error the proxy sent in-band, when it sent one. Such a stream is never retried.
    """

    def __init__(self, message: str, *, partial: Any = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.partial = partial


class RealtimeClosedError(APIError):
    """A realtime session's websocket closed other than cleanly (close code 1000), or before
    the session started: ``code`` and ``reason`` are the close frame's (1006 when the connection
    dropped without one). Raised by ``recv()``, ``async for`` and ``ask()``, whose ``partial``
    is the turn received so far; at ``async with`` when the session never started.

    The proxy cuts close reasons at 123 bytes; the error event it sent before the close, if
    any, is in the message whole.
    """

    code: int  # type: ignore[assignment]  # the close code here, not an error JSON's code

    def __init__(
        self,
        message: str,
        *,
        code: int,
        reason: str | None = None,
        partial: Any = None,
        **fields: Any,
    ) -> None:
        super().__init__(message, **fields)
        self.code = code
        self.reason = reason
        self.partial = partial


class APIStatusError(APIError):
    """The proxy answered with an error: an HTTP error status, or an error event in a stream."""


class SpendUnavailableError(APIStatusError):
    """The proxy keeps spend only in its database, and it runs without one."""


class BadRequestError(APIStatusError):
    """400: the request is invalid."""


class ModelNotFoundError(BadRequestError):
    """The proxy serves no model of that name."""


class ContextWindowExceededError(BadRequestError):
    """The prompt (plus ``max_tokens``) does not fit the model's context window."""


class ContentPolicyViolationError(BadRequestError):
    """The provider refused the content."""


class AuthenticationError(APIStatusError):
    """401, or LiteLLM's key errors: the API key is missing, malformed, unknown or expired.

    The message says so first, then gives the proxy's words, which alone can mislead: a proxy
    without a database answers any key but its master key with "No connected db.".
    """


class PermissionDeniedError(APIStatusError):
    """403, or the key, team or user may not use this model."""


class NotFoundError(APIStatusError):
    """404: no such route or object."""


class ConflictError(APIStatusError):
    """409: a conflicting concurrent change; worth retrying."""

    retryable = True


class UnprocessableEntityError(APIStatusError):
    """422: the request is well-formed but cannot be processed."""


class RateLimitError(APIStatusError):
    """429: a rate limit; ``retry_after`` is how long the proxy asked us to wait, if it said."""

    retryable = True


class BudgetExceededError(RateLimitError):
    """The key, team or user spent its budget: permanent until the budget resets."""

    retryable = False


class InternalServerError(APIStatusError):
    """500 or another 5xx not named below."""

    retryable = True


class ServiceUnavailableError(APIStatusError):
    """502, 503 or 504: the proxy or its upstream is down or overloaded."""

    retryable = True
