"""The fake provider's application: routing, the rpm limit, directives and faults.

Parsing lives in ``_directives``, bodies in ``_responses``, HTTP in ``_http``; this module only
decides, per request, what to send and when, which is where the faults happen. Every response
carries ``x-request-id: req_fake_<n>``; ``n`` also numbers completion and tool-call ids, never
resets, and so keeps ids unique for the life of the server.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable

import msgspec
import trio

from . import _responses as r
from . import _wire as w
from ._config import MAX_EMBEDDING_DIM, FakeProviderConfig
from ._directives import DirectiveError, Directives, resolve, split_tags
from ._http import Exchange, Header
from ._state import FailFirst, RequestWindow, Stats


class BadRequest(Exception):
    """The request cannot be served; answered with a 400 OpenAI error body."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class FakeProvider:
    """Answers one exchange at a time (many concurrently); owns the counters and the rpm window."""

    def __init__(self, config: FakeProviderConfig) -> None:
        self.config = config
        self.stats = Stats()
        self.fail_first = FailFirst()
        self.window = None if config.rpm is None else RequestWindow(config.rpm)
        self.defaults = Directives(latency=config.latency, tps=config.tps, chunks=config.chunks)
        self._ids = itertools.count(1)
        self._routes: dict[
            tuple[str, str], Callable[[Exchange, list[Header], int], Awaitable[None]]
        ]
        self._routes = {
            ("POST", "/v1/chat/completions"): self._chat,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("GET", "/v1/models"): self._models,
        }
        self._paths = frozenset(path for _, path in self._routes)

    def reset(self) -> None:
        """Zero the counters, the ``fail_first`` tallies and the rpm window."""
        self.stats.reset()
        self.fail_first.reset()
        if self.window is not None:
            self.window.reset()

    async def handle(self, exchange: Exchange) -> None:
        """Answer one request; a client that disconnects surfaces as an exception to ``_http``.

        ``/_stats`` and ``/_reset`` bypass the counters and the rpm limit, so tests can look
        without changing what they look at.
        """
        counter = next(self._ids)
        headers: list[Header] = [("x-request-id", f"req_fake_{counter}")]
        request = exchange.request
        if request.path in {"/_stats", "/_reset"}:
            await self._admin(exchange, headers)
            return
        path = request.path.rstrip("/") or "/"
        if not path.startswith("/v1/"):
            path = "/v1" + path
        self.stats.requests += 1
        self.stats.by_path[path if path in self._paths else request.path] += 1
        self.stats.in_flight += 1
        try:
            if self.window is not None:
                decision = self.window.admit(trio.current_time())
                headers += decision.headers()
                if not decision.admitted:
                    self.stats.faults["rate_limited"] += 1
                    headers.append(("retry-after", str(decision.retry_after)))
                    message = f"fake rate limit: {decision.limit} requests per minute"
                    await exchange.respond(429, headers, r.error_body(429, message))
                    return
            route = self._routes.get((request.method, path))
            if route is None:
                await self._no_route(exchange, headers, path)
                return
            try:
                await route(exchange, headers, counter)
            except (BadRequest, DirectiveError, msgspec.DecodeError) as exc:
                param = exc.param if isinstance(exc, BadRequest) else None
                await exchange.respond(400, headers, r.error_body(400, str(exc), param=param))
        finally:
            self.stats.in_flight -= 1

    async def _admin(self, exchange: Exchange, headers: list[Header]) -> None:
        method, path = exchange.request.method, exchange.request.path
        if path == "/_stats" and method == "GET":
            await exchange.respond(200, headers, w.encoder.encode(self.stats.snapshot()))
        elif path == "/_reset" and method == "POST":
            self.reset()
            await exchange.respond(200, headers, b'{"reset":true}')
        else:
            allow = "GET" if path == "/_stats" else "POST"
            body = r.error_body(405, f"{method} not allowed on {path}; use {allow}")
            await exchange.respond(405, [*headers, ("allow", allow)], body)

    async def _no_route(self, exchange: Exchange, headers: list[Header], path: str) -> None:
        methods = sorted(m for m, p in self._routes if p == path)
        if methods:
            message = f"{exchange.request.method} not allowed on {path}"
            headers = [*headers, ("allow", ", ".join(methods))]
            await exchange.respond(405, headers, r.error_body(405, message))
        else:
            message = f"Unknown request URL: {exchange.request.method} {exchange.request.path}"
            await exchange.respond(404, headers, r.error_body(404, message, code="unknown_url"))

    async def _prelude(
        self, exchange: Exchange, headers: list[Header], directives: Directives, *, stream: bool
    ) -> bool:
        """Apply the delay and the faults that replace a response; True if the caller answers."""
        delay = directives.latency
        if not stream and (directives.stall is not None or directives.stall_after is not None):
            self.stats.faults["stall"] += 1
            delay += directives.stall_seconds
        if delay > 0:
            await trio.sleep(delay)
        status = directives.error_status
        if status is not None:
            self.stats.faults[f"status_{status}"] += 1
            if directives.retry_after is not None:
                headers.append(("retry-after", _number(directives.retry_after)))
            if directives.retry_after_ms is not None:
                headers.append(("retry-after-ms", _number(directives.retry_after_ms)))
            body = r.error_body(status, f"fake upstream error {status}")
            await exchange.respond(status, headers, body)
            return False
        if not stream and directives.drop_after is not None:
            self.stats.faults["drop"] += 1
            exchange.drop()
            return False
        return True

    def _directives(self, model: str, tag_text: str) -> Directives:
        directives = resolve(self.defaults, model, tag_text)
        if directives.fail_first is not None and not self.fail_first.should_fail(
            (model, tag_text), directives.fail_first
        ):
            self.stats.faults["fail_first_passed"] += 1
            return directives.without_faults()
        return directives

    async def _chat(self, exchange: Exchange, headers: list[Header], counter: int) -> None:
        request = w.chat_request_decoder.decode(exchange.request.body)
        self.stats.by_model[request.model] += 1
        if request.n is not None and not 1 <= request.n <= 128:
            raise BadRequest("'n' must be between 1 and 128", param="n")
        user_text, tag_text = split_tags(r.last_user_text(request.messages))
        directives = self._directives(request.model, tag_text)
        stream = bool(request.stream)
        if not await self._prelude(exchange, headers, directives, stream=stream):
            return
        plan = r.plan_chat(request, user_text, counter)
        if not stream:
            await exchange.respond(200, headers, r.completion_body(plan))
            return
        options = request.stream_options
        include_usage = bool(options is not None and options.include_usage)
        await self._stream(exchange, headers, directives, plan, include_usage=include_usage)

    async def _stream(
        self,
        exchange: Exchange,
        headers: list[Header],
        d: Directives,
        plan: r.ChatPlan,
        *,
        include_usage: bool,
    ) -> None:
        """Send ``plan`` as SSE, with the mid-stream faults at their chunk counts.

        Events are buffered and flushed only before a pause, a fault, or the end, so an
        unpaced stream costs a few writes rather than one per word.
        """
        sse_headers = [
            *headers,
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
        ]
        await exchange.start(200, sse_headers)
        pieces = r.stream_pieces(plan, d.chunks)
        stall_at = d.stream_stall_at
        buffer: list[bytes] = []

        async def flush() -> None:
            await exchange.send(b"".join(buffer))
            buffer.clear()

        for sent in range(len(pieces) + 1):
            if stall_at == sent:
                self.stats.faults["stall"] += 1
                await flush()
                await trio.sleep(d.stall_seconds)
            if d.drop_after == sent:
                self.stats.faults["drop"] += 1
                await flush()
                exchange.drop()
                return
            if d.error_after == sent:
                self.stats.faults["error_after"] += 1
                buffer.append(r.MIDSTREAM_ERROR_EVENT)
                await flush()
                await exchange.finish()
                return
            if d.malformed_after == sent:
                self.stats.faults["malformed"] += 1
                buffer.append(r.MALFORMED_EVENT)
            if sent == 0:
                buffer.append(r.opening_events(plan))
            if sent < len(pieces):
                if sent > 0 and d.tps is not None:
                    await flush()
                    await trio.sleep(1 / d.tps)
                buffer.append(r.piece_events(plan, pieces[sent]))
        if d.no_done:
            self.stats.faults["no_done"] += 1
        buffer.append(r.closing_events(plan, include_usage=include_usage, done=not d.no_done))
        await flush()
        await exchange.finish()

    async def _embeddings(self, exchange: Exchange, headers: list[Header], _counter: int) -> None:
        request = w.embedding_request_decoder.decode(exchange.request.body)
        self.stats.by_model[request.model] += 1
        try:
            items = r.embedding_inputs(request.input)
        except ValueError as exc:
            raise BadRequest(str(exc), param="input") from None
        dim = self.config.embedding_dim if request.dimensions is None else request.dimensions
        if not 1 <= dim <= MAX_EMBEDDING_DIM:
            raise BadRequest(f"'dimensions' must be in 1..{MAX_EMBEDDING_DIM}", param="dimensions")
        if request.encoding_format not in {None, "float", "base64"}:
            raise BadRequest("'encoding_format' must be 'float' or 'base64'", "encoding_format")
        directives = self._directives(request.model, "")
        if not await self._prelude(exchange, headers, directives, stream=False):
            return
        as_base64 = request.encoding_format == "base64"
        body = r.embeddings_body(request.model, items, dim, as_base64=as_base64)
        await exchange.respond(200, headers, body)

    async def _models(self, exchange: Exchange, headers: list[Header], _counter: int) -> None:
        await exchange.respond(200, headers, r.MODELS_BODY)


def _number(value: float) -> str:
    """``1.0`` → ``"1"``, ``0.5`` → ``"0.5"``: header values as a person would write them."""
    return str(int(value)) if value.is_integer() else repr(value)
