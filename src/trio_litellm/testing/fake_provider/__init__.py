"""A fake OpenAI-compatible provider: the local upstream the LiteLLM proxy forwards to in tests.

Deterministic answers (chat echoes the last user message, embeddings hash their input) and
faults on demand through directives in the model name or a ``[fake ...]`` message tag; see
``_directives`` for the keys. The same port serves the OpenAI Realtime API as a WebSocket at
``/v1/realtime?model=NAME`` (GA events, text or audio echo, faults by ``RealtimeDirectives``). Run it with ``python -m trio_litellm.testing.fake_provider`` or
in-process with ``url = await nursery.start(serve_fake_provider, FakeProviderConfig(port=0))``.
"""

from ._config import FakeProviderConfig
from ._server import serve_fake_provider

__all__ = ["FakeProviderConfig", "serve_fake_provider"]
