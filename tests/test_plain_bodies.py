"""handlers.plain_bodies settles the common bodies without pydantic: every answer it gives must be
the one pydantic gives (the same JSON form, the same types), and it must give one for the bodies
nearly every client sends, or the cold start pays for pydantic again (tests/test_cold_path.py).

PLAIN_BODIES_EXAMPLES raises the number of generated bodies for a longer hunt.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from counter_core.records import INT64_MAX, INT64_MIN
from handlers.plain_bodies import plain_set, plain_step
from handlers.routes import TABLE, Route, model

ROUTES_WITH_PLAIN_BODIES = [route for route in TABLE if route.plain_body is not None]

# Integers around every bound either side could get wrong, and beyond 64 bits.
_edges = [0, 1, 2, -1, INT64_MAX, INT64_MAX + 1, INT64_MIN, INT64_MIN - 1, 2**64, -(2**64), 10**30]
_numbers = (
    st.sampled_from(_edges)
    | st.integers()
    | st.integers(min_value=INT64_MIN - 2, max_value=INT64_MAX + 2)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1.0, 5.0, -1.0, 0.0, -0.0, 1.5, 9223372036854775807.0, 1e19])
    | st.booleans()  # bool is an int to Python, not a number to JSON
)
_scalars = st.none() | st.booleans() | _numbers | st.text(max_size=5) | st.sampled_from(["1", "5", ""])
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
_bodies = (
    st.dictionaries(st.sampled_from(["by", "value", "metadata", "extra", "By", ""]), _values, max_size=3)
    | st.fixed_dictionaries({"by": _numbers})
    | st.fixed_dictionaries({"value": _numbers}, optional={"metadata": st.none() | _values})
    | _values
)


def _pydantic(route: Route, data: Any) -> str | None:
    """pydantic's JSON form of the body, as text (so 1 and true and 1.0 differ); None if refused."""
    assert route.body is not None
    try:
        return json.dumps(model(route.body).model_validate(data).model_dump(mode="json"))
    except ValidationError:
        return None


@settings(max_examples=int(os.environ.get("PLAIN_BODIES_EXAMPLES", "400")), deadline=None, derandomize=True)
@given(route=st.sampled_from(ROUTES_WITH_PLAIN_BODIES), data=_bodies)
def test_a_plain_answer_is_pydantics_answer(route: Route, data: Any) -> None:
    assert route.plain_body is not None
    plain = route.plain_body(data)
    if plain is not None:
        assert json.dumps(plain) == _pydantic(route, data)


@pytest.mark.parametrize(
    ("check", "data", "expected"),
    [
        (plain_step, {}, {"by": 1}),
        (plain_step, {"by": 1}, {"by": 1}),
        (plain_step, {"by": INT64_MAX}, {"by": INT64_MAX}),
        (plain_set, {"value": 0}, {"value": 0, "metadata": None}),
        (plain_set, {"value": INT64_MIN}, {"value": INT64_MIN, "metadata": None}),
        (plain_set, {"value": -7, "metadata": None}, {"value": -7, "metadata": None}),
    ],
)
def test_the_bodies_clients_send_are_settled_without_pydantic(
    check: Any, data: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert check(data) == expected


@pytest.mark.parametrize(
    ("check", "data"),
    [
        (plain_step, {"by": 0}),  # refused by the model, with its words
        (plain_step, {"by": True}),  # not a number
        (plain_step, {"by": 5.0}),  # an integer to JSON Schema: the model converts it
        (plain_step, {"by": INT64_MAX + 1}),
        (plain_step, {"by": 1, "extra": 1}),
        (plain_step, [1]),
        (plain_set, {}),  # value is required
        (plain_set, {"value": "5"}),
        (plain_set, {"value": 1, "metadata": {}}),  # metadata: depth and size are the model's to check
        (plain_set, {"value": INT64_MIN - 1}),
    ],
)
def test_anything_else_goes_to_pydantic(check: Any, data: Any) -> None:
    assert check(data) is None
