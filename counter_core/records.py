"""What the store reads and writes, free of pydantic: imported on every cold start.

The pydantic models (counter_core.models) validate request bodies and describe the API; they are
imported by the first request that needs one, not at cold start (tools.bench, figure 3).
"""

from __future__ import annotations

import functools
import json
import time

from counter_core.values import Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


@functools.lru_cache(maxsize=256)
def rfc3339(ms: int) -> str:
    """Milliseconds since the epoch as RFC 3339 UTC with milliseconds ("2026-11-26T14:47:06.389Z").

    Integer arithmetic and a small cache (a hot counter's created_at repeats on every request): 0.1 to
    2 us where datetime.fromtimestamp(ms / 1000).isoformat() took 4.8 us, twice per request
    (tools.bench, figure 2); and exact, where the float division drifted a millisecond by year 9000.
    """
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(ms // 1000))}.{ms % 1000:03d}Z"


def metadata_json(metadata: dict[str, Any]) -> str:
    """The stored form of metadata: compact strict JSON (ValueError for a non-finite number)."""
    return json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Counter(Value):
    """A counter as stored. `metadata_json` is the text validated on its way in, so rendering a
    counter is string assembly that cannot fail, and a success is never followed by an error."""

    __slots__ = ("created_at", "id", "metadata_json", "updated_at", "value")

    def __init__(self, id: str, value: int, metadata_json: str, created_at: str, updated_at: str) -> None:
        self.id = id
        self.value = value
        self.metadata_json = metadata_json
        self.created_at = created_at
        self.updated_at = updated_at

    def to_json(self) -> str:
        """The API's JSON for this counter (the shape of CounterView)."""
        return (
            f'{{"id":{json.dumps(self.id, ensure_ascii=False)},"value":{self.value},'
            f'"metadata":{_strict(self.metadata_json)},'
            f'"created_at":"{self.created_at}","updated_at":"{self.updated_at}"}}'
        )


def _strict(stored: str) -> str:
    # Before metadata was checked on the way in, NaN and Infinity were stored as Python writes
    # them, which is not JSON; only such text takes the slow path. Such a value renders as null.
    if "NaN" not in stored and "Infinity" not in stored:
        return stored
    try:
        return json.dumps(json.loads(stored, parse_constant=lambda _: None), ensure_ascii=False)
    except (ValueError, RecursionError):
        return "{}"
