"""The bodies almost every request sends, recognised as valid without pydantic.

`{"by": 5}` on an increment and `{"value": 7}` on a set are checked here with a few type and range
tests; anything else (a float, a string, metadata, a field too many, a value out of range) is left to
pydantic, which validates it and words the refusal. Importing pydantic and building the models costs
about 110 ms of CPU in a fresh CPython 3.13, three times the apsw-only handler's whole cold start
(README, figure 3), so the first request of a process should not pay it for a body this plain.

Each function returns the body's JSON form exactly as the pydantic model dumps it (the idempotency
fingerprint hashes it), or None to hand the body to pydantic. tests/test_plain_bodies.py proves with
hypothesis that every answer here is pydantic's answer.
"""

from __future__ import annotations

from counter_core.records import INT64_MAX, INT64_MIN

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any

_STEP_FIELDS = {"by"}
_SET_FIELDS = {"value", "metadata"}


def plain_step(data: object) -> dict[str, Any] | None:
    """Step's JSON form of `{}` or `{"by": n}`, n an integer from 1 to INT64_MAX; else None."""
    if type(data) is not dict or not data.keys() <= _STEP_FIELDS:
        return None
    by = data.get("by", 1)
    if type(by) is int and 1 <= by <= INT64_MAX:  # type(), not isinstance(): true is not a number
        return {"by": by}
    return None


def plain_set(data: object) -> dict[str, Any] | None:
    """SetCounter's JSON form of `{"value": n}` (or with `"metadata": null`), n a signed 64-bit
    integer; else None (metadata is checked for depth and size by the model)."""
    if type(data) is not dict or "value" not in data or not data.keys() <= _SET_FIELDS:
        return None
    value = data["value"]
    if type(value) is int and INT64_MIN <= value <= INT64_MAX and data.get("metadata") is None:
        return {"value": value, "metadata": None}
    return None
