"""Request and response models of the counter API (pydantic): validation and the OpenAPI schemas."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from counter_core.records import INT64_MAX, INT64_MIN, Counter, metadata_json

__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "METADATA_MAX_BYTES",
    "METADATA_MAX_DEPTH",
    "Counter",
    "CounterView",
    "ErrorBody",
    "ErrorDetail",
    "HistoryEntry",
    "HistoryPage",
    "HistoryQuery",
    "SetCounter",
    "Step",
    "metadata_json",
]

METADATA_MAX_BYTES = 4096
# Every integer below 2**53 is a float exactly; from it on, floats skip integers, so a float there
# may be the rounding of another number.
FLOAT_EXACT_MAX = 2**53
# Deep enough for any real metadata, far below the ~1,000 levels at which Python's json and
# pydantic's serializer give up: metadata that is stored can always be rendered again.
METADATA_MAX_DEPTH = 32


def _json_integer(value: object) -> object:
    """JSON Schema's integer: 5 and 5.0 are both integers; "5" and true are not."""
    if isinstance(value, bool | str):
        raise PydanticCustomError("integer_expected", "must be an integer, not a string or a boolean")
    if isinstance(value, float) and value.is_integer():
        # JSON's 9007199254740993.0 reads as the float 9007199254740992.0: past 2**53 a float may
        # already be another number than the one sent, so it is refused rather than rounded.
        if abs(value) >= FLOAT_EXACT_MAX:
            raise PydanticCustomError(
                "integer_not_exact",
                f"must be digits only (no fraction or exponent) from 2**53 = {FLOAT_EXACT_MAX} up,"
                " either side of 0, where a fraction or an exponent can round it",
            )
        return int(value)
    return value


def _nesting_depth_exceeds(value: object, limit: int) -> bool:
    """Whether objects and arrays nest deeper than `limit` levels; iterative, so any depth is safe."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX), BeforeValidator(_json_integer)]


class SetCounter(BaseModel):
    """Body of `PUT /counters/{id}`: the new value and, optionally, new metadata."""

    model_config = ConfigDict(extra="forbid")

    value: Int64
    metadata: dict[str, Any] | None = Field(
        default=None,
        description=f"Replaces the counter's metadata; at most {METADATA_MAX_BYTES} bytes as JSON,"
        f" nested at most {METADATA_MAX_DEPTH} levels deep. Omit to keep it.",
    )

    @field_validator("metadata")
    @classmethod
    def _storable(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        if _nesting_depth_exceeds(value, METADATA_MAX_DEPTH):
            raise PydanticCustomError(
                "metadata_too_deep",
                f"nests deeper than {METADATA_MAX_DEPTH} levels",
            )
        try:
            # allow_nan=False: 1e400 parses as infinity, which has no JSON spelling; refuse it rather
            # than store `Infinity`, which no strict JSON parser reads back.
            size = len(metadata_json(value).encode())
        except ValueError:
            raise PydanticCustomError("metadata_not_json", "holds a number too large for JSON") from None
        if size > METADATA_MAX_BYTES:
            raise PydanticCustomError(
                "metadata_too_large",
                f"is {size} bytes as JSON; the limit is {METADATA_MAX_BYTES}",
            )
        return value


class Step(BaseModel):
    """Body of increment and decrement (optional): how far to move."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[int, Field(ge=1, le=INT64_MAX), BeforeValidator(_json_integer)] = 1


class HistoryQuery(BaseModel):
    """Query string of `GET /counters/{id}/history`."""

    model_config = ConfigDict(extra="ignore")

    limit: Annotated[int, Field(ge=1, le=100)] = 20
    cursor: Annotated[str, Field(min_length=1, max_length=200)] | None = None


class CounterView(BaseModel):
    """A counter as the API returns it; timestamps are RFC 3339, UTC, with milliseconds."""

    id: str
    value: int
    metadata: dict[str, Any]
    created_at: str
    updated_at: str


class HistoryEntry(BaseModel):
    """One operation in a counter's audit log."""

    seq: int
    op: str = Field(description="increment, decrement, set or reset")
    amount: int | None = Field(description="`by` for increment/decrement, the value for set, null for reset")
    value: int = Field(description="the counter's value after the operation")
    at: str
    request_id: str | None


class HistoryPage(BaseModel):
    """Newest first; pass `next_cursor` back as `cursor` for the next page (null: no more)."""

    items: list[HistoryEntry]
    next_cursor: str | None


class ErrorDetail(BaseModel):
    code: str = Field(description="stable snake_case code")
    message: str = Field(description="what went wrong and what to do")
    request_id: str
    details: list[dict[str, Any]] | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail
