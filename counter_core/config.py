"""The one place that reads the environment (see DESIGN.md, "Environment").

Values are read when called, not at import, so tests and tools can point a process at another root.
"""

from __future__ import annotations

import os

from counter_core.errors import Misconfigured

ENV_ROOT = "COUNTERS_ROOT"
ENV_BUSY_TIMEOUT_MS = "COUNTERS_BUSY_TIMEOUT_MS"
ENV_IDEMPOTENCY_TTL_S = "COUNTERS_IDEMPOTENCY_TTL_S"
ENV_FLEET_QUEUE_URL = "FLEET_QUEUE_URL"
ENV_CONNECTION_CACHE_SIZE = "COUNTERS_CONNECTION_CACHE_SIZE"
ENV_HISTORY_RETENTION_ROWS = "COUNTERS_HISTORY_RETENTION_ROWS"
# Powertools' own switch, honoured by handlers.observability's metric lines too.
ENV_METRICS_DISABLED = "POWERTOOLS_METRICS_DISABLED"
# What Powertools' Logger reads to choose its level (AWS Lambda's advanced logging controls first, then
# Powertools' own, then its legacy name; a sample rate switches to DEBUG at random). Powertools reads
# them itself; handlers.observability looks only to know whether building the Logger can wait.
LOGGER_ENVIRONMENT = (
    "AWS_LAMBDA_LOG_LEVEL",
    "POWERTOOLS_LOG_LEVEL",
    "LOG_LEVEL",
    "POWERTOOLS_LOGGER_SAMPLE_RATE",
    "POWERTOOLS_DEBUG",
)

# Paths are strings on the request path: importing pathlib was 4 ms of a cold start (README, figure 3).
LAMBDA_ROOT = "/mnt/counters"
LOCAL_ROOT = "var/counters"

# API Gateway gives up on a Lambda integration after 30 s; a request that waits longer than a few
# seconds for another writer is better answered 503 + Retry-After so the client backs off. A migration
# holds the lock for milliseconds (tools.bench counts its round trips), so 5 s leaves ample headroom for
# a cold-start stampede on one new counter; waiters are served roughly in order of age meanwhile
# (counter_core.connection.busy_handler).
DEFAULT_BUSY_TIMEOUT_MS = 5000
DEFAULT_IDEMPOTENCY_TTL_S = 86400
# Ten years: far beyond any retry, and its milliseconds stay far inside SQLite's 64-bit integers (a
# larger TTL overflowed when bound, making every request with an Idempotency-Key a 500).
MAX_IDEMPOTENCY_TTL_S = 10 * 365 * 86400
# Each cached connection costs about 190 KiB (SQLite's lookaside, schema and page cache, APSW's
# statement cache), measured with ru_maxrss: 256 of them added 46 MiB to a 40 MiB process.
# A Lambda instance serves one request at a time and API Gateway spreads counters across instances,
# so a hot set of 32 per instance keeps hot counters open for about 6 MiB.
DEFAULT_CONNECTION_CACHE_SIZE = 32
# The newest operations kept in each counter's `counter_history`; 0 keeps every one. Rows, not age: a
# row cap bounds each file whatever its traffic, where an age cap lets a hot counter grow without
# bound. At 1,000 rows (ten pages of the history API) a counter file written 5,000 times peaked at
# 112 KiB, where a million increments of unbounded history weigh about 64 MB.
DEFAULT_HISTORY_RETENTION_ROWS = 1000


def _int_env(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Misconfigured(f"{name}={raw!r} is not an integer - set it to a whole number") from None
    if value < minimum:
        raise Misconfigured(f"{name}={value} is below {minimum} - set it to at least {minimum}")
    if maximum is not None and value > maximum:
        raise Misconfigured(f"{name}={value} is above {maximum} - set it to at most {maximum}")
    return value


def root_setting() -> str | None:
    """COUNTERS_ROOT as set (None if unset): a cheap per-request check that the root has not changed."""
    return os.environ.get(ENV_ROOT)


def counters_root() -> str:
    """Directory holding the counter files: COUNTERS_ROOT, else EFS on Lambda, else ./var/counters."""
    raw = os.environ.get(ENV_ROOT)
    if raw:
        return raw
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return LAMBDA_ROOT
    return LOCAL_ROOT


def busy_timeout_ms() -> int:
    return _int_env(ENV_BUSY_TIMEOUT_MS, DEFAULT_BUSY_TIMEOUT_MS, minimum=0)


def idempotency_ttl_s() -> int:
    return _int_env(
        ENV_IDEMPOTENCY_TTL_S, DEFAULT_IDEMPOTENCY_TTL_S, minimum=1, maximum=MAX_IDEMPOTENCY_TTL_S
    )


def connection_cache_size() -> int:
    return _int_env(ENV_CONNECTION_CACHE_SIZE, DEFAULT_CONNECTION_CACHE_SIZE, minimum=1)


def history_retention_rows() -> int:
    """History rows kept per counter (the newest); 0 keeps all of them."""
    return _int_env(ENV_HISTORY_RETENTION_ROWS, DEFAULT_HISTORY_RETENTION_ROWS, minimum=0)


def problems() -> list[str]:
    """Why each numeric setting cannot be used, if it cannot: what a process checks before it serves,
    so a typo is one line at start-up instead of a 500 on every request. Read-only."""
    found: list[str] = []
    for read in (busy_timeout_ms, idempotency_ttl_s, connection_cache_size, history_retention_rows):
        try:
            read()
        except Misconfigured as exc:
            found.append(str(exc))
    return found


def metrics_disabled() -> bool:
    return os.environ.get(ENV_METRICS_DISABLED, "").strip().lower() in ("1", "true", "yes", "on")


def logger_environment() -> dict[str, str]:
    """The Powertools Logger settings that are set (non-empty), by variable name."""
    return {name: os.environ[name] for name in LOGGER_ENVIRONMENT if os.environ.get(name)}


def fleet_queue_url() -> str | None:
    return os.environ.get(ENV_FLEET_QUEUE_URL) or None
