"""The handler at the edges: hostile bodies, stored data it did not write, malformed events, IDs as
API Gateway delivers them, and every refusal in the user's terms. Real handler, real counter files."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import apsw
import pytest

from counter_core.errors import CounterError
from counter_core.models import METADATA_MAX_DEPTH
from counter_core.paths import counter_path as file_of
from counter_core.store import Increment, StoredResponse
from tests.api_events import counter_path, http_event, invoke, rest_event
from tools.serve import RefusedPath, gateway_path


def _nested(depth: int) -> dict[str, Any]:
    """An object nested `depth` levels deep: {"a": {"a": ... {} ...}}."""
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.sqlite3")) if root.exists() else []


def _error(status: int, code: str, message: str) -> tuple[int, str, str]:
    return (status, code, message)


def _outcome(result: Any) -> tuple[int, str, str]:
    return (result.status, result.error_code, result.json["error"]["message"])


# ---------------------------------------------------------------- 1. no 500 after a commit


def test_metadata_deeper_than_the_limit_is_422_and_nothing_is_written(api_root: Path) -> None:
    # GIVEN metadata nested 260 levels deep (a 549-byte body that used to commit, then answer 500)
    body = {"value": 7, "metadata": _nested(260)}
    # WHEN it is PUT
    result = invoke(http_event("PUT", "/counters/deep", body=body))
    # THEN it is refused before any write, naming the limit
    assert _outcome(result) == _error(
        422,
        "validation_failed",
        f"the body is not valid: metadata nests deeper than {METADATA_MAX_DEPTH} levels - fix it",
    )
    assert result.json["error"]["details"] == [
        {
            "loc": ["metadata"],
            "msg": f"nests deeper than {METADATA_MAX_DEPTH} levels",
            "type": "metadata_too_deep",
        }
    ]
    assert _files(api_root) == []
    # AND metadata exactly at the limit is stored and read back
    at_limit = invoke(http_event("PUT", "/counters/deep", body={"value": 7, "metadata": _nested(32)}))
    assert at_limit.status == 201 and at_limit.json["metadata"] == _nested(32)


def _store_raw_metadata(root: Path, counter_id: str, text: str) -> None:
    """Write metadata as an earlier release could have stored it, bypassing today's validation."""
    conn = apsw.Connection(str(file_of(root, counter_id)))
    conn.execute("UPDATE counter_metadata SET metadata = ?", (text,))
    conn.close()


def test_stored_metadata_that_is_deep_or_not_strict_json_still_reads_and_increments(api_root: Path) -> None:
    # GIVEN counters whose stored metadata is 300 levels deep, or holds NaN and Infinity as Python
    # writes them (what releases before the depth limit and the strict-JSON check stored)
    invoke(http_event("PUT", "/counters/legacy-deep", body={"value": 1}))
    invoke(http_event("PUT", "/counters/legacy-nan", body={"value": 1}))
    deep = json.dumps(_nested(300), separators=(",", ":"))
    _store_raw_metadata(api_root, "legacy-deep", deep)
    _store_raw_metadata(api_root, "legacy-nan", '{"a":NaN,"b":[Infinity,-Infinity],"c":"NaN"}')
    import handlers.api

    handlers.api._state = None  # a fresh process: nothing cached
    # WHEN they are read and incremented without an Idempotency-Key
    read = invoke(http_event("GET", "/counters/legacy-deep"))
    incremented = invoke(http_event("POST", "/counters/legacy-deep/increment"))
    nan = invoke(http_event("GET", "/counters/legacy-nan"))
    # THEN every answer is a success in strict JSON; the deep text comes back as stored
    assert (read.status, incremented.status, incremented.json["value"]) == (200, 200, 2)
    assert json.dumps(read.json["metadata"], separators=(",", ":")) == deep
    assert nan.status == 200
    strict = json.loads(nan.text, parse_constant=lambda name: pytest.fail(f"{name} in a response"))
    assert strict["metadata"] == {"a": None, "b": [None, None], "c": "NaN"}


def test_a_response_that_cannot_be_rendered_rolls_the_change_back(api_root: Path) -> None:
    # GIVEN a counter at 5
    invoke(http_event("PUT", "/counters/r", body={"value": 5}))
    import handlers.api

    store = handlers.api._current_state().store

    def failing_render(outcome: object) -> StoredResponse:
        raise CounterError("rendering failed")

    # WHEN an increment's response fails to render
    with pytest.raises(CounterError):
        store.apply("r", Increment(1), request_id="x", render=failing_render)
    # THEN the increment was not committed: rendering runs before COMMIT
    assert invoke(http_event("GET", "/counters/r")).json["value"] == 5
    assert [item["op"] for item in invoke(http_event("GET", "/counters/r/history")).json["items"]] == ["set"]


# ---------------------------------------------------------------- 2. bad input is 4xx, never 500


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # 30,000 levels (60 KB, under the 64 KiB limit): deeper than the json parser's recursion limit on
        # every supported CPython (3.11 stops near 1,000; 3.13's C scanner parses 1,000 and stops by 10,000).
        ("[" * 30_000 + "]" * 30_000, "the body nests too deeply to read - send a flatter document"),
        (
            '{"value": ' + "9" * 5000 + "}",
            "the body holds a number too long to read - values are signed 64-bit integers",
        ),
        (
            '{"value": 1, "metadata": {"x": NaN}}',
            "the body holds NaN, which is not a JSON number - send a number",
        ),
        (
            '{"value": 1, "metadata": {"x": [-Infinity]}}',
            "the body holds -Infinity, which is not a JSON number - send a number",
        ),
        (b"\xff\xfe{", "the body is not UTF-8 text - send JSON as UTF-8"),
    ],
)
def test_bodies_python_cannot_read_are_400_and_store_nothing(
    api_root: Path, raw: str | bytes, message: str
) -> None:
    result = invoke(http_event("PUT", "/counters/hostile", raw_body=raw, base64_body=isinstance(raw, bytes)))
    assert _outcome(result) == _error(400, "invalid_json", message)
    assert _files(api_root) == []


def test_a_number_json_cannot_spell_is_refused_in_metadata(api_root: Path) -> None:
    # 1e400 is valid JSON, read by Python as infinity, which JSON cannot write back
    result = invoke(http_event("PUT", "/counters/inf", raw_body='{"value": 1, "metadata": {"x": 1e400}}'))
    assert _outcome(result) == _error(
        422,
        "validation_failed",
        "the body is not valid: metadata holds a number too large for JSON - fix it",
    )
    assert _files(api_root) == []


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("PUT", "/counters/lone", '{"value": 1, "metadata": {"name": "caf\\ud83d"}}'),
        ("PUT", "/counters/lone", '{"value": 1, "metadata": {"\\udfff": 1}}'),
        ("POST", "/counters/lone/increment", '{"\\ud800": 1}'),
        ("PUT", "/counters/lone", b'{"value": 1, "metadata": {"k": "\xed\xa0\x80"}}'),
    ],
    ids=["value", "key", "increment-key", "raw-utf8-surrogate"],
)
def test_text_with_an_unpaired_surrogate_is_400_and_stores_nothing(
    api_root: Path, method: str, path: str, raw: str | bytes
) -> None:
    # GIVEN a string cut in half of a UTF-16 pair (JavaScript's "\ud83d\ude00".slice(0, 1), which
    # JSON.stringify writes as "\ud83d"): valid JSON syntax, but not Unicode text
    event = http_event(method, path, raw_body=raw, base64_body=isinstance(raw, bytes))
    # WHEN it is sent
    result = invoke(event)
    # THEN it is refused as such (it was "a number too large for JSON", or pydantic's words)
    assert _outcome(result) == _error(
        400,
        "invalid_json",
        "the body holds text that is not Unicode (an unpaired surrogate such as \\ud800)"
        " - send whole characters, encoded as UTF-8",
    )
    assert _files(api_root) == []


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize("forged", ["h1:" + "9" * 30, "h1:9223372036854775808", "h1:²", "h1:-1"])
def test_a_forged_cursor_is_400_invalid_cursor(api_root: Path, forged: str) -> None:
    invoke(http_event("POST", "/counters/h/increment"))
    result = invoke(http_event("GET", "/counters/h/history", query={"cursor": _cursor(forged)}))
    assert _outcome(result) == _error(
        400,
        "invalid_cursor",
        "cursor is not one this API issued - pass `next_cursor` from the previous page unchanged",
    )


def test_the_largest_cursor_is_accepted(api_root: Path) -> None:
    invoke(http_event("POST", "/counters/h/increment"))
    result = invoke(
        http_event("GET", "/counters/h/history", query={"cursor": _cursor("h1:9223372036854775807")})
    )
    assert result.status == 200 and len(result.json["items"]) == 1


# ---------------------------------------------------------------- 3. malformed events are 400


def _with(event: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {**event, **fields}


_INCREMENT = http_event("POST", "/counters/m/increment", body={"by": 1})


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (_with(_INCREMENT, body="é", isBase64Encoded=True), "event body is marked base64 but is not"),
        (_with(_INCREMENT, body="!!!", isBase64Encoded=True), "event body is marked base64 but is not"),
        (
            _with(_INCREMENT, headers=[["content-type", "application/json"]]),
            "event field 'headers' is not an object",
        ),
        (
            _with(_INCREMENT, queryStringParameters=["a"]),
            "event field 'queryStringParameters' is not an object",
        ),
        (_with(_INCREMENT, requestContext="ctx"), "event field 'requestContext' is not an object"),
        (_with(_INCREMENT, body={"by": 1}), "event body is not a string"),
        (_with(_INCREMENT, body=5), "event body is not a string"),
        (_with(_INCREMENT, body="\ud800"), "event body is not Unicode text"),
        (_with(_INCREMENT, pathParameters="m"), "event field 'pathParameters' is not an object"),
        (
            _with(rest_event("GET", "/counters/m"), multiValueHeaders=["x"]),
            "event field 'multiValueHeaders' is not an object",
        ),
        ({"Records": []}, "event has no HTTP method or path"),
        ([], "event is not an object"),
    ],
)
def test_a_malformed_event_is_400_and_changes_nothing(
    api_root: Path, event: Any, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    result = invoke(event)
    assert _outcome(result) == _error(
        400, "bad_request", "the event is not an API Gateway proxy request - send an HTTP request"
    )
    assert [r.reason for r in caplog.records if r.message == "not an API Gateway proxy event"] == [reason]  # type: ignore[attr-defined]
    assert _files(api_root) == []


# ---------------------------------------------------------------- 4. IDs as API Gateway delivers them

# Live HTTP API captures (hotsock/voker, vokerhttp/testdata/ingress-paths.json): the path a client
# sent, and the rawPath the function received; None where HTTP API answered 400 itself.
CAPTURES = [
    ("/capture/plain", "/capture/plain"),
    ("/capture/space%20value", "/capture/space value"),
    ("/capture/question%3Fvalue", "/capture/question"),
    ("/capture/percent%25done", None),
    ("/capture/hash%23value", "/capture/hash#value"),
    ("/capture/slash%2Fvalue", "/capture/slash/value"),
    ("/capture/unicode-%CE%BB-%E4%B8%96%E7%95%8C", "/capture/unicode-λ-世界"),
    ("/capture/literal%252Fvalue", "/capture/literal/value"),
    ("/capture/literal%253Fvalue", "/capture/literal?value"),
    ("/capture/literal%2525value", "/capture/literal%value"),
]


@pytest.mark.parametrize(("sent", "delivered"), CAPTURES)
def test_the_local_server_decodes_paths_as_the_captured_http_api_did(
    sent: str, delivered: str | None
) -> None:
    if delivered is None:
        with pytest.raises(RefusedPath):
            gateway_path(sent)
    else:
        assert gateway_path(sent) == delivered


def test_an_id_is_taken_from_path_parameters_and_never_decoded_again(api_root: Path) -> None:
    # GIVEN an ID that holds a percent-encoded-looking text, double-encoded by the client so that it
    # survives one decoding: HTTP API decodes it twice, so it arrives as `x/y` and matches no route
    result = invoke(http_event("POST", "/counters/x%252Fy/increment"))
    assert (result.status, result.error_code) == (404, "route_not_found")
    # WHEN an event names the route and carries the ID API Gateway decoded
    event = http_event("POST", "/counters/placeholder/increment")
    event["pathParameters"] = {"id": "caf%C3%A9"}
    # THEN the handler takes it as it is: the '%' is refused, never decoded into "café"
    assert _outcome(invoke(event)) == _error(
        400,
        "invalid_counter_id",
        "counter ID has '%' at position 3, which API Gateway's HTTP API cannot carry in a path segment"
        " - use other characters",
    )
    assert _files(api_root) == []
    # AND a plain ID from pathParameters is used as given, whatever rawPath says
    event["pathParameters"] = {"id": "café"}
    assert invoke(event).json["id"] == "café"


def test_rest_events_match_by_resource_and_path_parameters(api_root: Path) -> None:
    # REST (payload 1.0) with a resource per route: pathParameters is decoded, path is not
    event = rest_event("POST", "/counters/caf%C3%A9/increment")
    event["resource"] = "/counters/{id}/increment"
    event["pathParameters"] = {"id": "café"}
    assert invoke(event).json["id"] == "café"
    # and through a catch-all proxy resource, the encoded path is decoded exactly once
    assert invoke(rest_event("GET", "/counters/caf%C3%A9")).json["value"] == 1


def test_function_url_events_keep_the_path_encoded_and_are_decoded_once(api_root: Path) -> None:
    # GIVEN a Lambda function URL event (payload 2.0, rawPath as sent, no route key)
    event = http_event("POST", "/counters/placeholder/increment")
    event.update(routeKey="$default", rawPath="/counters/caf%C3%A9%20au%20lait/increment")
    event.pop("pathParameters")
    event["requestContext"]["domainName"] = "abcdefgh.lambda-url.us-east-1.on.aws"
    # THEN the path is decoded exactly once
    assert invoke(event).json["id"] == "café au lait"


def test_nfc_and_nfd_spellings_are_different_counters(api_root: Path) -> None:
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    invoke(http_event("PUT", counter_path(nfc), body={"value": 1}))
    invoke(http_event("PUT", counter_path(nfd), body={"value": 2}))
    assert invoke(http_event("GET", counter_path(nfc))).json["value"] == 1
    assert invoke(http_event("GET", counter_path(nfd))).json["value"] == 2
    assert len(_files(api_root)) == 2


# ---------------------------------------------------------------- 14. refusals in the user's terms


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("PUT", "/counters/a", {"value": "1"}, "value must be an integer, not a string or a boolean"),
        ("PUT", "/counters/a", {"value": True}, "value must be an integer, not a string or a boolean"),
        ("PUT", "/counters/a", [1], "the body must be a JSON object"),
        ("PUT", "/counters/a", "x", "the body must be a JSON object"),
        ("PUT", "/counters/a", {"metadata": {}}, "value is required"),
        ("PUT", "/counters/a", {"value": 1, "metadata": [1]}, "metadata must be a JSON object"),
        ("POST", "/counters/a/increment", {"by": 0}, "by must be at least 1"),
        ("POST", "/counters/a/increment", {"by": 2**63}, "by must be at most 9223372036854775807"),
        ("POST", "/counters/a/decrement", {"by": 1.5}, "by must be an integer, without a fraction"),
        # 9007199254740993.0 reads as the float 9007199254740992.0: past 2**53 a fraction or exponent
        # may already have changed the number, so such a count is refused, never rounded.
        (
            "POST",
            "/counters/a/increment",
            {"by": 9007199254740993.0},
            "by must be digits only (no fraction or exponent) from 2**53 = 9007199254740992 up,"
            " either side of 0, where a fraction or an exponent can round it",
        ),
        (
            "PUT",
            "/counters/a",
            {"value": -1e18},
            "value must be digits only (no fraction or exponent) from 2**53 = 9007199254740992"
            " up, either side of 0, where a fraction or an exponent can round it",
        ),
        ("POST", "/counters/a/increment", {"step": 1}, "step is not a field here (fields: by)"),
        (
            "PUT",
            "/counters/a",
            {"value": 1, "extra": 1},
            "extra is not a field here (fields: value, metadata)",
        ),
        (
            "PUT",
            "/counters/a",
            {"value": 1, "metadata": {"k": "x" * 4100}},
            "metadata is 4108 bytes as JSON; the limit is 4096",
        ),
    ],
)
def test_validation_messages_speak_the_api_not_the_library(
    api_root: Path, method: str, path: str, body: object, message: str
) -> None:
    result = invoke(http_event(method, path, body=body))
    assert _outcome(result) == _error(422, "validation_failed", f"the body is not valid: {message} - fix it")
    assert not any(word in result.text for word in ("Value error", "instance of", "Input should"))


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("limit=3&limit=4", "the query string is not valid: limit is given more than once - give it once"),
        ("limit=ten", "the query string is not valid: limit must be an integer - fix it"),
        ("limit=0", "the query string is not valid: limit must be at least 1 - fix it"),
        ("limit=101", "the query string is not valid: limit must be at most 100 - fix it"),
        (
            "limit=" + "9" * 5000,
            "the query string is not valid: limit must be an integer of at most 19 digits - fix it",
        ),
        (
            "cursor=" + "x" * 201,
            "the query string is not valid: cursor must be at most 200 characters long - fix it",
        ),
    ],
)
def test_query_messages_speak_the_api(api_root: Path, query: str, message: str) -> None:
    invoke(http_event("POST", "/counters/q/increment"))
    result = invoke(http_event("GET", f"/counters/q/history?{query}"))
    assert _outcome(result) == _error(422, "validation_failed", message)


# ---------------------------------------------------------------- routes without a body, counters that do not exist


def test_reset_of_a_counter_that_does_not_exist_is_404_and_creates_no_file(api_root: Path) -> None:
    # GIVEN no counter "typo" (a mistyped ID)
    # WHEN it is reset
    result = invoke(http_event("POST", "/counters/typo/reset"))
    # THEN it is 404, as for GET and DELETE, and no stray counter file appears
    assert (result.status, result.error_code) == (404, "not_found")
    assert _files(api_root) == []


def test_reset_of_a_deleted_counter_is_404(api_root: Path) -> None:
    # GIVEN a counter that was created and then deleted (its file stays, its rows are gone)
    assert invoke(http_event("POST", "/counters/gone/increment")).status == 200
    assert invoke(http_event("DELETE", "/counters/gone")).status == 204
    # WHEN it is reset
    # THEN it does not come back to life
    assert invoke(http_event("POST", "/counters/gone/reset")).status == 404
    assert invoke(http_event("GET", "/counters/gone")).status == 404


@pytest.mark.parametrize(("method", "suffix"), [("POST", "/reset"), ("DELETE", "")])
def test_an_empty_json_object_on_a_route_without_a_body_is_no_body(
    api_root: Path, method: str, suffix: str
) -> None:
    # GIVEN an existing counter, and a client that always sends a JSON body (requests' json={})
    assert invoke(http_event("POST", "/counters/c/increment", body={"by": 5})).status == 200
    # WHEN it resets or deletes with `{}`
    result = invoke(http_event(method, f"/counters/c{suffix}", body={}))
    # THEN the body is taken as none
    assert result.status == (200 if method == "POST" else 204)


def test_a_non_empty_body_on_a_route_without_a_body_is_still_refused(api_root: Path) -> None:
    assert invoke(http_event("POST", "/counters/c/increment")).status == 200
    result = invoke(http_event("POST", "/counters/c/reset", body={"value": 3}))
    assert _outcome(result) == _error(422, "validation_failed", "this route takes no body - send none or {}")
    assert invoke(http_event("GET", "/counters/c")).json["value"] == 1
