"""trio-litellm: a trio-native client for the LiteLLM proxy.

::

    async with open_client(proxy_url="http://127.0.0.1:4000", api_key="sk-...") as client:
        reply = await client.complete(model="fake-gpt", messages=[{"role": "user", "content": "hi"}])
"""

from ._client import Client, ClientStatistics, open_client
from ._config import ClientConfig
from ._dispatcher import DispatcherStatistics
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    ClientClosedError,
    ConfigError,
    ConflictError,
    ContentPolicyViolationError,
    ContextWindowExceededError,
    InternalServerError,
    LiteLLMError,
    ModelNotFoundError,
    NotFoundError,
    PermissionDeniedError,
    ProxyCertificateError,
    ProxyConnectionError,
    RateLimitError,
    RequestTimeoutError,
    ResponseDecodeError,
    ServiceUnavailableError,
    SpendUnavailableError,
    StreamInterruptedError,
    UnprocessableEntityError,
)
from ._events import (
    Event,
    FirstToken,
    HealthChanged,
    RequestFinished,
    RequestSent,
    RetryScheduled,
    ThrottlePaused,
)
from ._health import DeploymentHealth, DeploymentStatus, ProxyHealth
from ._jobs import InvalidRequestError, Job, JobResult
from ._meta import RateLimitInfo, ResponseMeta
from ._monitor import HealthTransition, MonitorStatistics
from ._prometheus import prometheus_text
from ._reader import ChatStream
from ._recorder import DebugRecorder, DumpFileError, RecordedExchange, RecorderStatistics, read_dump
from ._throttle import ThrottleStatistics
from ._usage import RequestRecord, UsageStats
from ._wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingRequest,
    EmbeddingResponse,
    FunctionCall,
    FunctionCallDelta,
    Message,
    Model,
    ModelInfo,
    RoutingHints,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "ChatStream",
    "Choice",
    "ChunkChoice",
    "Client",
    "ClientClosedError",
    "ClientConfig",
    "ClientStatistics",
    "ConfigError",
    "ConflictError",
    "ContentPolicyViolationError",
    "ContextWindowExceededError",
    "DebugRecorder",
    "Delta",
    "DeploymentHealth",
    "DeploymentStatus",
    "DispatcherStatistics",
    "DumpFileError",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "Event",
    "FirstToken",
    "FunctionCall",
    "FunctionCallDelta",
    "HealthChanged",
    "HealthTransition",
    "InternalServerError",
    "InvalidRequestError",
    "Job",
    "JobResult",
    "LiteLLMError",
    "Message",
    "Model",
    "ModelInfo",
    "ModelNotFoundError",
    "MonitorStatistics",
    "NotFoundError",
    "PermissionDeniedError",
    "ProxyCertificateError",
    "ProxyConnectionError",
    "ProxyHealth",
    "RateLimitError",
    "RateLimitInfo",
    "RecordedExchange",
    "RecorderStatistics",
    "RequestFinished",
    "RequestRecord",
    "RequestSent",
    "RequestTimeoutError",
    "ResponseDecodeError",
    "ResponseMeta",
    "RetryScheduled",
    "RoutingHints",
    "ServiceUnavailableError",
    "SpendUnavailableError",
    "StreamInterruptedError",
    "ThrottlePaused",
    "ThrottleStatistics",
    "ToolCall",
    "ToolCallDelta",
    "UnprocessableEntityError",
    "Usage",
    "UsageStats",
    "__version__",
    "open_client",
    "prometheus_text",
    "read_dump",
]
