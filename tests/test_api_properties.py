"""Property test at the handler: any event API Gateway could deliver, however hostile its body,
headers, path and query, gets an answer - never an exception, never a 5xx (on healthy files every
failure is the client's), never internals in the body, and a refusal changes no file.

Bounded by the `api-events` settings profile so `make test` stays fast; raise API_EVENTS_EXAMPLES
for a longer hunt (`API_EVENTS_EXAMPLES=5000 pytest tests/test_api_properties.py`).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.routes import TABLE
from tools.serve import LocalContext, RefusedPath, build_event

settings.register_profile(
    "api-events",
    max_examples=int(os.environ.get("API_EVENTS_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
PROFILE = settings.get_profile("api-events")

# Text that never belongs in a response unless the client sent it: file paths, SQL, Python.
INTERNALS = ("Traceback", 'File "', "sqlite", "counter_metadata", "counter_history", "idempotency_keys")

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_good_bodies = st.fixed_dictionaries(
    {"value": st.integers(min_value=-(2**64), max_value=2**64)}, optional={"metadata": _json}
) | st.fixed_dictionaries({}, optional={"by": st.integers(min_value=-5, max_value=2**64)})


def _deep(depth: int, kind: str) -> str:
    return '{"a":' * depth + "1" + "}" * depth if kind == "object" else "[" * depth + "]" * depth


_raw_bodies = st.one_of(
    st.none(),
    _json.map(json.dumps),
    _good_bodies.map(json.dumps),
    st.builds(
        lambda depth, kind: f'{{"value": 1, "metadata": {_deep(depth, kind)}}}',
        st.integers(1, 1200),
        st.sampled_from(["object", "array"]),
    ),
    st.sampled_from(["NaN", '{"by": Infinity}', '{"value": 1, "metadata": {"x": -Infinity}}', "1e400"]),
    st.integers(4200, 4400).map(lambda n: '{"value": ' + "7" * n + "}"),
    st.text(max_size=40),
    st.binary(max_size=40),
)
_ids = st.one_of(
    st.text(min_size=0, max_size=12),
    st.sampled_from([".", "..", "a/b", "a?b", "a#b", "50%", "%2F", "%252F", "café", "cafe\u0301", "x" * 257]),
)
_suffixes = st.sampled_from(["", "/increment", "/decrement", "/reset", "/history", "/nope", "/"])
_methods = st.sampled_from(sorted({r.method for r in TABLE} | {"PATCH", "HEAD", "OPTIONS"}))
_header_names = st.sampled_from(["content-type", "idempotency-key", "x-other"]) | st.text(max_size=10)
_header_values = st.sampled_from(
    ["application/json", "text/plain", "application/merge-patch+json"]
) | st.text(max_size=20)
_queries = st.dictionaries(
    st.sampled_from(["limit", "cursor", "other"]) | st.text(max_size=5),
    st.sampled_from(["1", "100", "0", "3,4", "aDE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ"]) | st.text(max_size=30),
    max_size=3,
)


@st.composite
def gateway_events(draw: st.DrawFn) -> dict[str, Any]:
    """A request as a client could send it, turned into the event HTTP API would build from it."""
    method = draw(_methods)
    counter_id = draw(_ids)
    path = f"/counters/{quote(counter_id, safe=draw(st.sampled_from(['', '/', '%'])))}{draw(_suffixes)}"
    if draw(st.booleans()):
        path = "/openapi.json" if draw(st.booleans()) else quote(draw(st.text(max_size=20)), safe="/%")
    query = draw(_queries)
    headers = draw(st.dictionaries(_header_names, _header_values, max_size=3))
    try:
        event = build_event(method, f"{path}?{urlencode(query)}", headers, b"", "192.0.2.1")
    except RefusedPath:  # HTTP API answers these itself; the function never sees them
        event = build_event(method, "/counters/refused", headers, b"", "192.0.2.1")
    body = draw(_raw_bodies)
    if isinstance(body, bytes) or (body is not None and draw(st.booleans())):
        data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
        event["body"], event["isBase64Encoded"] = base64.b64encode(data).decode(), True
    elif body is not None:
        event["body"] = body
    if draw(st.booleans()):
        # Payload 1.0 of the same request: REST keeps the path encoded.
        event = {
            "resource": "/{proxy+}",
            "path": path,
            "httpMethod": method,
            "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()},
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} or None,
            "pathParameters": None,
            "requestContext": {"requestId": "rest", "identity": {"sourceIp": "192.0.2.1"}},
            "body": event.get("body"),
            "isBase64Encoded": event.get("isBase64Encoded", False),
        }
    if draw(st.integers(0, 4)) == 0:
        # A field of a type API Gateway never sends.
        field = draw(st.sampled_from(sorted(event)))
        event[field] = draw(_json)
    return event


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("properties") / "counters"
    previous = os.environ.get("COUNTERS_ROOT")
    os.environ["COUNTERS_ROOT"] = str(root)
    yield root
    if previous is None:
        del os.environ["COUNTERS_ROOT"]
    else:
        os.environ["COUNTERS_ROOT"] = previous


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in a response: not JSON")

    return json.loads(text, parse_constant=refuse)


@settings(PROFILE)
@given(event=gateway_events())
def test_every_event_gets_an_answer_that_is_no_5xx_and_leaks_nothing(
    root: Path, event: dict[str, Any]
) -> None:
    from handlers.api import handler

    files_before = sorted(root.rglob("*")) if root.exists() else []
    # WHEN the event reaches the handler
    response = handler(event, LocalContext(aws_request_id="prop"))
    # THEN it answers (it never raises) with a Lambda proxy response
    assert isinstance(response["statusCode"], int) and isinstance(response["body"], str)
    status, body = response["statusCode"], response["body"]
    # AND on healthy files every refusal is the client's: never a 5xx, before or after a commit
    assert status < 500, body
    # AND the body is strict JSON (or empty for 204), with no internals the client did not send
    document = _strict_json(body) if status != 204 else None
    assert body == "" or document is not None
    sent = json.dumps(event, ensure_ascii=False)
    for marker in (*INTERNALS, str(root)):
        assert marker not in body or marker in sent, (marker, body)
    # AND a refusal changed no file
    if status >= 400:
        assert (sorted(root.rglob("*")) if root.exists() else []) == files_before
        assert isinstance(document, dict) and set(document["error"]) >= {"code", "message", "request_id"}
