"""Request and response models of the counter API (pydantic): validation and the OpenAPI schemas."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
METADATA_MAX_BYTES = 4096


def _json_integer(value: object) -> object:
    """JSON Schema's integer: 5 and 5.0 are both integers; "5" and true are not."""
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX), BeforeValidator(_json_integer)]


class SetCounter(BaseModel):
    """Body of `PUT /counters/{id}`: the new value and, optionally, new metadata."""

    model_config = ConfigDict(extra="forbid")

    value: Int64
    metadata: dict[str, Any] | None = Field(
        default=None, description="Replaces the counter's metadata; at most 4 KiB as JSON. Omit to keep it."
    )

    @field_validator("metadata")
    @classmethod
    def _small(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
            if size > METADATA_MAX_BYTES:
                raise ValueError(f"metadata is {size} bytes as JSON; the limit is {METADATA_MAX_BYTES}")
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
