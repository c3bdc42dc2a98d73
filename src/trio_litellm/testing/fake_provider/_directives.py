"""Fault and pacing directives: parsing and merging, no IO.

A directive is a ``key=value`` pair. Three sources are merged, later wins: the server's defaults,
the request's model name (``status=429,retry_after=1``, after the last ``/``, when it contains
``=``) and ``[fake key=value ...]`` tags in the last user message. Tests reach the fake provider
through the real LiteLLM proxy, so the model name and the message text are the only channels
that survive the trip; that is why the knobs live there and not in headers.

Realtime sessions (``/v1/realtime``) have their own keys (``RealtimeDirectives``), read from the
upstream model name only: the proxy forwards the model name on the upgrade, nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import TypeVar

import msgspec

DEFAULT_STALL = 3600.0
"""Seconds a stall lasts when ``stall_after`` is given without ``stall``."""

_TAG = re.compile(r"\[fake(?:\s+([^\]]*))?\]")
_PAIR_SEPARATORS = re.compile(r"[\s,]+")


class DirectiveError(ValueError):
    """A directive the fake provider does not understand; the request gets a 400 naming it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


class Directives(msgspec.Struct, frozen=True, kw_only=True):
    """The knobs in force for one request, after merging every source."""

    latency: float = 0.0
    """Seconds to wait before sending response headers."""
    tps: float | None = None
    """Stream pacing: content chunks per second."""
    chunks: int | None = None
    """Split streamed content into this many pieces instead of one per word."""
    status: int | None = None
    """Answer with this HTTP error status and an OpenAI error body."""
    retry_after: float | None = None
    """Seconds for a ``Retry-After`` header on the error response."""
    retry_after_ms: float | None = None
    """Milliseconds for a ``retry-after-ms`` header on the error response."""
    fail_first: int | None = None
    """Faults apply only to the first N requests with the same (model, tag text)."""
    drop_after: int | None = None
    """Close the connection abruptly after N content chunks (non-stream: with no response)."""
    error_after: int | None = None
    """Send an SSE error event after N content chunks, then end the body."""
    malformed_after: int | None = None
    """Send an SSE event that is not JSON after N content chunks, then carry on."""
    no_done: bool = False
    """End streams without ``data: [DONE]``."""
    stall_after: int | None = None
    """Pause the stream for ``stall`` seconds after N content chunks."""
    stall: float | None = None
    """Length of the pause; alone on a non-stream request it acts as latency."""
    id: str | None = None
    """Free text that makes a tag unique, so ``fail_first`` gets a fresh counter."""

    @property
    def has_fault(self) -> bool:
        """Whether any fault (not mere pacing) is requested."""
        return (
            self.status is not None
            or self.drop_after is not None
            or self.error_after is not None
            or self.malformed_after is not None
            or self.no_done
            or self.stall_after is not None
            or self.stall is not None
        )

    @property
    def error_status(self) -> int | None:
        """The error status to answer with: ``status``, or 500 for a bare ``fail_first``."""
        if self.status is not None:
            return self.status
        if self.fail_first is not None and not self.has_fault:
            return 500
        return None

    @property
    def stall_seconds(self) -> float:
        """How long a stall lasts."""
        return DEFAULT_STALL if self.stall is None else self.stall

    @property
    def stream_stall_at(self) -> int | None:
        """After how many content chunks a stream stalls (``stall`` alone: straight away)."""
        if self.stall_after is not None:
            return self.stall_after
        return 0 if self.stall is not None else None

    def without_faults(self) -> Directives:
        """The same pacing with every fault removed: what a request past ``fail_first`` gets."""
        return Directives(latency=self.latency, tps=self.tps, chunks=self.chunks, id=self.id)


def _float(key: str, text: str, *, minimum: float, inclusive: bool = True) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DirectiveError(key, f"fake directive {key!r} needs a number, got {text!r}") from None
    if not math.isfinite(value) or value < minimum or (not inclusive and value == minimum):
        bound = ">=" if inclusive else ">"
        raise DirectiveError(key, f"fake directive {key!r} must be {bound} {minimum}, got {text!r}")
    return value


def _int(key: str, text: str, *, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise DirectiveError(
            key, f"fake directive {key!r} needs an integer, got {text!r}"
        ) from None
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise DirectiveError(
            key, f"fake directive {key!r} must be >= {minimum}{upper}, got {text!r}"
        )
    return value


def _bool(key: str, text: str) -> bool:
    lowered = text.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise DirectiveError(key, f"fake directive {key!r} needs 1 or 0, got {text!r}")


_CONVERTERS: dict[str, Callable[[str, str], object]] = {
    "latency": lambda k, v: _float(k, v, minimum=0),
    "tps": lambda k, v: _float(k, v, minimum=0, inclusive=False),
    "chunks": lambda k, v: _int(k, v, minimum=1),
    "status": lambda k, v: _int(k, v, minimum=400, maximum=599),
    "retry_after": lambda k, v: _float(k, v, minimum=0),
    "retry_after_ms": lambda k, v: _float(k, v, minimum=0),
    "fail_first": lambda k, v: _int(k, v, minimum=0),
    "drop_after": lambda k, v: _int(k, v, minimum=0),
    "error_after": lambda k, v: _int(k, v, minimum=0),
    "malformed_after": lambda k, v: _int(k, v, minimum=0),
    "no_done": _bool,
    "stall_after": lambda k, v: _int(k, v, minimum=0),
    "stall": lambda k, v: _float(k, v, minimum=0),
    "id": lambda _k, v: v,
}

KNOWN_KEYS = frozenset(_CONVERTERS)
"""Every directive key the fake provider understands."""


def parse_pairs(text: str) -> dict[str, str]:
    """Split ``a=1 b=2`` or ``a=1,b=2`` into raw pairs; a later duplicate wins."""
    pairs: dict[str, str] = {}
    for item in _PAIR_SEPARATORS.split(text.strip()):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DirectiveError(item, f"fake directive {item!r} is not key=value")
        pairs[key] = value
    return pairs


def model_pairs(model: str) -> dict[str, str]:
    """The directives carried by a model name: ``openai/status=500`` → ``{"status": "500"}``."""
    if "=" not in model:
        return {}
    return parse_pairs(model.rpartition("/")[2])


def split_tags(text: str) -> tuple[str, str]:
    """Remove every ``[fake ...]`` tag from ``text``.

    Returns the remaining text with whitespace normalised, and the tags' inner text joined by
    spaces (empty when there is no tag), which is both the directive source and, with the model,
    the ``fail_first`` counter key.
    """
    if "[fake" not in text:
        return " ".join(text.split()), ""
    inner = [match.group(1) or "" for match in _TAG.finditer(text)]
    cleaned = _TAG.sub(" ", text)
    return " ".join(cleaned.split()), " ".join(" ".join(part.split()) for part in inner).strip()


_S = TypeVar("_S", bound=msgspec.Struct)


def apply_pairs(
    base: _S,
    pairs: Mapping[str, str],
    converters: Mapping[str, Callable[[str, str], object]] = _CONVERTERS,
) -> _S:
    """Override ``base`` with validated ``pairs``; unknown keys and bad values raise."""
    if not pairs:
        return base
    changes: dict[str, object] = {}
    for key, text in pairs.items():
        convert = converters.get(key)
        if convert is None:
            known = ", ".join(sorted(converters))
            raise DirectiveError(key, f"unknown fake directive {key!r}; known: {known}")
        changes[key] = convert(key, text)
    return msgspec.structs.replace(base, **changes)


def resolve(base: Directives, model: str, tag_text: str) -> Directives:
    """Merge the server defaults, the model name's directives and the message tags' directives."""
    return apply_pairs(apply_pairs(base, model_pairs(model)), parse_pairs(tag_text))


# --- realtime ------------------------------------------------------------------------------


class RealtimeDirectives(msgspec.Struct, frozen=True, kw_only=True):
    """The knobs of one realtime session, from its upstream model name.

    A delta count ``N`` in ``drop_after`` and ``close_after`` counts text (or transcript)
    deltas of the response in progress: ``close_after=2`` closes after ``response.created`` and
    two deltas, before ``response.done``.
    """

    audio: bool = False
    """Answer in audio (``response.output_audio.delta`` plus a transcript) unless asked for text."""
    deltas: int | None = None
    """Send the answer in exactly this many text deltas (the echo repeated until long enough)."""
    tps: float | None = None
    """Pacing: deltas per second; None sends them as fast as possible."""
    status: int | None = None
    """Refuse the WebSocket upgrade with this HTTP status."""
    error_first: bool = False
    """Send an ``error`` event instead of ``session.created``, then close (1008 by default)."""
    silent: bool = False
    """Never send ``session.created``; answer client events as usual."""
    drop_after: int | None = None
    """Drop the TCP connection (no close frame) after N deltas of a response."""
    close_after: int | None = None
    """Close the WebSocket (1011 by default) after N deltas of a response."""
    close_code: int | None = None
    """The close code for ``close_after`` and ``error_first``."""
    big_audio: int | None = None
    """Send the audio of an answer as one delta of this many PCM bytes (implies ``audio``)."""
    id: str | None = None
    """Free text, ignored: makes otherwise identical model names distinct."""


_REALTIME_CONVERTERS: dict[str, Callable[[str, str], object]] = {
    "audio": _bool,
    "deltas": lambda k, v: _int(k, v, minimum=1, maximum=10_000_000),
    "tps": lambda k, v: _float(k, v, minimum=0, inclusive=False),
    "status": lambda k, v: _int(k, v, minimum=400, maximum=599),
    "error_first": _bool,
    "silent": _bool,
    "drop_after": lambda k, v: _int(k, v, minimum=0),
    "close_after": lambda k, v: _int(k, v, minimum=0),
    "close_code": lambda k, v: _int(k, v, minimum=1000, maximum=4999),
    "big_audio": lambda k, v: _int(k, v, minimum=1, maximum=256 * 1024 * 1024),
    "id": lambda _k, v: v,
}

REALTIME_KEYS = frozenset(_REALTIME_CONVERTERS)
"""Every realtime directive key the fake provider understands."""


def resolve_realtime(model: str) -> RealtimeDirectives:
    """The realtime directives of an upstream model name.

    ``close_after=2,close_code=4000`` carries directives; a plain name carries none, except that
    a name containing ``audio`` (``fake-realtime-audio``) asks for audio answers.
    """
    pairs = model_pairs(model)
    if not pairs:
        return RealtimeDirectives(audio="audio" in model.rpartition("/")[2])
    return apply_pairs(RealtimeDirectives(), pairs, _REALTIME_CONVERTERS)
