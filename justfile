# Developer tasks. The first-ever step is `bash scripts/bootstrap.sh` (just itself lives in .venv).

export PATH := justfile_directory() / ".venv/bin" + ":" + env_var("PATH")

# List the recipes.
default:
    @just --list

# Create or update .venv and .proxy-venv (idempotent).
bootstrap:
    bash scripts/bootstrap.sh

# Run the demo against a local fake provider and LiteLLM proxy.
demo:
    bash scripts/demo.sh

# Run the tests; arguments go to pytest (e.g. `just test tests/unit -x`).
test *args:
    bash scripts/test.sh {{args}}

# Lint, check formatting and type-check (no changes made).
lint:
    ruff check
    ruff format --check
    mypy

# Apply ruff's fixes and formatting.
fmt:
    ruff check --fix
    ruff format

# Run the fake provider (port 8090) and the LiteLLM proxy (port 4000, key sk-test) until Ctrl-C.
proxy *args:
    python -m trio_litellm.testing._devstack --proxy-port 4000 --fake-provider-port 8090 {{args}}

# Run a Redis server, the fake provider and N LiteLLM proxies sharing it (key sk-test) until Ctrl-C (e.g. `just fleet 2`).
fleet n *args:
    python -m trio_litellm.testing._devstack --proxies {{n}} {{args}}

# Benchmark run_batch, open_jobs and complete() against the fake provider (e.g. `just bench-batch --rounds 5`).
bench-batch *args:
    python bench/batch_throughput.py {{args}}

# The demo's batch through one LiteLLM proxy and through two sharing Redis: req/s and client CPU (e.g. `just bench-fleet --rounds 5`).
bench-fleet *args:
    python bench/fleet.py {{args}}

# Compare trio-litellm with the aiohttp + msgspec floor and the openai SDK on a local nginx (e.g. `just bench --concurrency 64`).
bench *args:
    python bench/clients.py {{args}}

# One realtime session receiving a 10,000-delta answer: events/s and client CPU per event, ours against the openai SDK (e.g. `just bench-realtime --via proxy`).
bench-realtime *args:
    python bench/realtime.py {{args}}

# Soak trio-litellm's memory over 200k requests (e.g. `just bench-soak --api jobs`).
bench-soak *args:
    python bench/soak.py {{args}}

# What the actors cost over the bare transport, CPU per request (e.g. `just bench-overhead --rounds 7`).
bench-overhead *args:
    python bench/overhead.py {{args}}

# What the parts that do no IO cost: SSE parser, usage ledger, batch summary, input scan (e.g. `just bench-pure --parts sse`).
bench-pure *args:
    python bench/pure.py {{args}}

# Profile the client's chat, stream or embedding path under cProfile (e.g. `just bench-profile --kind stream`).
bench-profile *args:
    python bench/profile.py {{args}}
