"""The per-request shortcuts of the warm path say exactly what the slower code they replaced said."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counter_core.store import rfc3339
from handlers.observability import MetricUnit, emit_metric


# 1970 to 2100: the timestamps this code writes. Far from 1970 the float division of the datetime
# version drifts by a millisecond (year 1000, year 9000); the integer version does not.
@given(st.integers(min_value=0, max_value=4102444800000))
def test_rfc3339_is_what_datetime_writes(ms: int) -> None:
    expected = (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )
    assert rfc3339(ms) == expected


@pytest.mark.parametrize("value", [0, 1, 2**63 - 1, 0.5, 2.0, float("nan"), float("inf")])
def test_a_metric_value_is_written_as_json_dumps_writes_it(
    value: float, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    emit_metric("Probe", MetricUnit.Count, value)
    [line] = capsys.readouterr().out.splitlines()
    assert line.endswith(f'"Probe":{json.dumps(value)}}}')


def test_rfc3339_is_exact_far_from_1970() -> None:
    assert rfc3339(-1) == "1969-12-31T23:59:59.999Z"
    assert rfc3339(226263913014689) == "9140-01-08T06:56:54.689Z"
