"""The fake provider's server-wide settings.

Per-request knobs (latency, tps, chunks) set here are only defaults: a request's model name or a
``[fake ...]`` tag in its last user message overrides them (see ``_directives``).
"""

from __future__ import annotations

import math

import msgspec


class FakeProviderConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the fake provider listens and behaves when a request asks for nothing special."""

    host: str = "127.0.0.1"
    """Interface to bind; ``127.0.0.1`` keeps the server off the network."""

    port: int = 8090
    """TCP port to bind; 0 lets the OS pick a free one (the bound URL reports it)."""

    latency: float = 0.0
    """Default seconds to wait before sending response headers."""

    tps: float | None = None
    """Default stream pacing in content chunks per second; None streams as fast as possible."""

    chunks: int | None = None
    """Default number of content pieces per stream; None sends one piece per word."""

    rpm: int | None = None
    """Server-wide requests-per-minute limit over a rolling 60 s window; None means unlimited."""

    embedding_dim: int = 8
    """Embedding length when a request does not ask for ``dimensions``."""

    def __post_init__(self) -> None:
        """Reject settings that could only fail later, inside a request."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if not (math.isfinite(self.latency) and self.latency >= 0):
            raise ValueError(f"latency must be a finite number >= 0, got {self.latency}")
        if self.tps is not None and not (math.isfinite(self.tps) and self.tps > 0):
            raise ValueError(f"tps must be a finite number > 0, got {self.tps}")
        if self.chunks is not None and self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks}")
        if self.rpm is not None and self.rpm < 1:
            raise ValueError(f"rpm must be >= 1, got {self.rpm}")
        if not 1 <= self.embedding_dim <= MAX_EMBEDDING_DIM:
            raise ValueError(
                f"embedding_dim must be in 1..{MAX_EMBEDDING_DIM}, got {self.embedding_dim}"
            )


MAX_EMBEDDING_DIM = 65536
"""Largest embedding a request may ask for; bounds the work one request can cause."""
