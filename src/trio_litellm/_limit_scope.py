"""Whose limit a 429 hit: the model group's the request went to, or everyone's.

LiteLLM answers 429 for limits of two scopes, and the message says which (checked against
litellm 1.110.2, its source and a running proxy):

- **One model group.** The router's deployment ``rpm``/``tpm`` ("Model rate limit exceeded. RPM
  limit=20, current usage=21"), an upstream provider's 429 ("litellm.RateLimitError:
  RateLimitError: OpenAIException - ..."), both followed by "LiteLLM: model group 'NAME' failed
  ..."; deployments in cooldown ("No deployments available for selected model, Try again in 5
  seconds. ... Passed model=NAME"); the dynamic limiters' share of a model ("Model capacity
  reached for NAME", "Priority-based rate limit exceeded. Model: NAME", "Key=... over available
  RPM=3. Model RPM=..."); and the proxy's per-model key, team, organization and project limits
  ("Rate limit exceeded for model_per_key: ...").
- **Everyone using the key.** LiteLLM's own limiter (``parallel_request_limiter_v3``) for the
  key's, user's, team's, end user's or organization's rpm, tpm and ``max_parallel_requests``
  ("Rate limit exceeded for api_key: <hash>. Limit type: requests. Current limit: 4, ..."), and
  the legacy limiter's ("Max parallel request limit reached ... Hit limit for key" or "Hit Global
  Limit: Limit=..." for ``global_max_parallel_requests``).

A 429 whose message says neither is taken as everyone's: pausing every model is what a client
that cannot tell must do, and it is what this client did before it could tell. A spent budget
(``budget_exceeded``) is no rate limit here: it is never retried, so it pauses nothing.

Pure: no IO, no trio.
"""

from __future__ import annotations

import re

from ._meta import MODEL_LIMITER_SCOPES

__all__ = ["PER_MODEL_LIMITS", "rate_limit_model"]

PER_MODEL_LIMITS = MODEL_LIMITER_SCOPES
"""The proxy limiter's descriptors that limit one model for a key, team, organization, project
or priority (the same scopes its headers report); every other descriptor limits everyone."""

# The router's and the providers' 429s, all for the model group the request was routed to.
_MODEL_GROUP = re.compile(
    r"model group '"
    r"|Model rate limit exceeded"
    r"|No deployments available"
    r"|No healthy deployment"
    r"|Passed model="
    r"|Model capacity reached for "
    r"|Priority-based rate limit exceeded"
    r"|over available [RT]PM=.*Model [RT]PM=",
    re.S,
)
# parallel_request_limiter_v3: "Rate limit exceeded for <descriptor>: <value>. Limit type: ..."
_DESCRIPTOR = re.compile(r"Rate limit exceeded for (\w+): ")
# The legacy parallel_request_limiter: "Max parallel request limit reached ... Hit limit for <type>."
_LEGACY = re.compile(r"Hit limit for (\w+)")


def rate_limit_model(message: str, model: str | None) -> str | None:
    """The model group a 429 with ``message`` limits (``model``, the one the request asked for),
    or None when its limit is everyone's: the key's, user's, team's or the whole proxy's.

    None too when ``model`` is empty or None: a request for no model can pause only everyone.
    """
    if not model:
        return None
    if _MODEL_GROUP.search(message):
        return model
    match = _DESCRIPTOR.search(message) or _LEGACY.search(message)
    if match is not None and match.group(1) in PER_MODEL_LIMITS:
        return model
    return None
