"""What tests, demos and offline load tests run the client against, instead of a paid provider.

- :mod:`trio_litellm.testing.fake_provider`: an OpenAI-compatible upstream for the LiteLLM proxy
  (``python -m trio_litellm.testing.fake_provider``), deterministic, with latency, token rates,
  faults and rate limits on demand.
- ``trio_litellm.testing._devstack``: this project's own stack for its integration tests, demo
  and benchmarks (the fake provider and a LiteLLM proxy from ``litellm_config.yaml`` on loopback;
  ``python -m trio_litellm.testing._devstack`` runs it in the foreground; ``--proxies N`` makes
  it a fleet of N proxies sharing a Redis server).

Nothing here is imported by ``trio_litellm`` itself.
"""
