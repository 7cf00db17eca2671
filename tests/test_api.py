"""handlers.api.handler driven with real API Gateway events on real counter files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import apsw
import pytest

from counter_core.models import INT64_MAX, INT64_MIN
from tests.api_events import counter_path, http_event, invoke, rest_event, sample

ROOT_DIR = Path(__file__).resolve().parent.parent


def test_the_sample_events_walk_a_counter_through_its_life(api_root: Path) -> None:
    # GIVEN the committed sample events, as `sam local invoke -e` sends them
    steps = [
        ("put_counter", 201, 41),
        ("get_counter", 200, 41),
        ("increment", 200, 42),
        ("increment", 200, 42),  # same Idempotency-Key: replayed, not applied twice
        ("decrement", 200, 40),
        ("reset", 200, 0),
    ]
    for name, status, value in steps:
        result = invoke(sample(name))
        assert (name, result.status, result.json["value"]) == (name, status, value)
    history = invoke(sample("history"))
    assert [item["op"] for item in history.json["items"]] == ["reset", "decrement", "increment", "set"]
    assert invoke(sample("delete_counter")).status == 204
    assert invoke(sample("get_counter")).status == 404
    assert invoke(sample("openapi")).json["openapi"] == "3.1.0"


def test_increment_creates_at_zero_and_returns_the_counter(api_root: Path) -> None:
    # WHEN a new counter is incremented without a body
    result = invoke(http_event("POST", "/counters/visits/increment"))
    # THEN it starts from 0, with RFC 3339 UTC millisecond timestamps
    assert result.status == 200
    body = result.json
    assert (body["id"], body["value"], body["metadata"]) == ("visits", 1, {})
    assert body["created_at"].endswith("Z") and len(body["created_at"]) == len("2026-11-25T03:00:00.000Z")
    assert invoke(http_event("POST", "/counters/visits/increment", body={"by": 5})).json["value"] == 6
    assert invoke(http_event("POST", "/counters/visits/decrement", body={"by": 10})).json["value"] == -4
    assert result.headers["x-request-id"] == "req-1"


def test_put_creates_then_replaces_and_keeps_metadata_unless_given(api_root: Path) -> None:
    path = "/counters/c"
    assert invoke(http_event("PUT", path, body={"value": 7, "metadata": {"team": "a"}})).status == 201
    replaced = invoke(http_event("PUT", path, body={"value": 9}))
    assert (replaced.status, replaced.json["value"], replaced.json["metadata"]) == (200, 9, {"team": "a"})
    assert invoke(http_event("PUT", path, body={"value": 9, "metadata": {}})).json["metadata"] == {}


def test_rest_payload_1_0_and_base64_bodies_are_accepted(api_root: Path) -> None:
    created = invoke(rest_event("PUT", "/counters/r", body={"value": 3}, base64_body=True))
    assert created.status == 201
    assert invoke(rest_event("POST", "/counters/r/increment", body={"by": 2})).json["value"] == 5
    history = invoke(rest_event("GET", "/counters/r/history", query={"limit": "1"}))
    assert [item["value"] for item in history.json["items"]] == [5]
    assert history.json["items"][0]["request_id"] == "rest-1"
    assert (
        invoke(http_event("POST", "/counters/r/increment", body={"by": 1}, base64_body=True)).json["value"]
        == 6
    )


def test_ids_are_url_decoded_once_and_may_hold_printable_unicode(api_root: Path) -> None:
    counter_id = "café ☕ 2026 +&=;,!$'()*@:~[]{}|\\^`\"<>"
    result = invoke(http_event("POST", counter_path(counter_id, "/increment")))
    assert result.status == 200 and result.json["id"] == counter_id
    assert invoke(http_event("GET", counter_path(counter_id))).json["value"] == 1
    # The same ID through REST (payload 1.0, path still encoded) is the same counter.
    assert invoke(rest_event("GET", counter_path(counter_id))).json["value"] == 1


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/counters//increment", "counter ID is empty - use 1 to 256 characters"),
        (counter_path("x" * 257, "/increment"), "counter ID is 257 characters long - use at most 256"),
        (
            counter_path("a\nb", "/increment"),
            "counter ID has a control character (U+000A) at position 1 - remove it",
        ),
        (
            counter_path("a/b", "/increment"),
            "counter ID has '/' at position 1, which API Gateway's HTTP API cannot carry in a path"
            " segment - use other characters",
        ),
        (
            counter_path("50%", "/increment"),
            "counter ID has '%' at position 2, which API Gateway's HTTP API cannot carry in a path"
            " segment - use other characters",
        ),
        (
            counter_path("#1", "/increment"),
            "counter ID has '#' at position 0, which API Gateway's HTTP API cannot carry in a path"
            " segment - use other characters",
        ),
        (
            "/counters/%2E%2E/increment",
            "counter ID '..' is a dot segment, which URLs drop - use other characters",
        ),
        (
            "/counters/%FF/increment",
            "the counter ID is not valid UTF-8 once URL-decoded - encode it as UTF-8",
        ),
    ],
)
def test_invalid_counter_ids_are_400(api_root: Path, path: str, message: str) -> None:
    # REST (payload 1.0) hands the path over still encoded, so every ID reaches the handler
    result = invoke(rest_event("POST", path))
    assert (result.status, result.error_code, result.json["error"]["message"]) == (
        400,
        "invalid_counter_id",
        message,
    )
    assert not api_root.exists() or not any(api_root.rglob("*.sqlite3"))


def test_malformed_json_is_400_invalid_json(api_root: Path) -> None:
    result = invoke(http_event("POST", "/counters/a/increment", raw_body='{"by": '))
    assert (result.status, result.error_code) == (400, "invalid_json")
    assert (
        result.json["error"]["message"]
        == "the body is not valid JSON: expecting value at line 1, column 8 - fix it"
    )
    assert result.json["error"]["request_id"] == "req-1"


@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("POST", "/counters/a/increment", {"by": 0}, ["by"]),
        ("POST", "/counters/a/increment", {"by": INT64_MAX + 1}, ["by"]),
        ("POST", "/counters/a/increment", {"by": "1"}, ["by"]),
        ("POST", "/counters/a/decrement", {"by": 1.5}, ["by"]),
        ("POST", "/counters/a/increment", {"step": 1}, ["step"]),
        ("PUT", "/counters/a", {"value": True}, ["value"]),
        ("PUT", "/counters/a", {"metadata": {}}, ["value"]),
        ("PUT", "/counters/a", {"value": 1, "metadata": [1]}, ["metadata"]),
        ("PUT", "/counters/a", {"value": 1, "metadata": {"k": "x" * 4100}}, ["metadata"]),
        ("PUT", "/counters/a", [1], []),
    ],
)
def test_bodies_that_fail_validation_are_422_with_field_errors(
    api_root: Path, method: str, path: str, body: object, loc: list[str]
) -> None:
    result = invoke(http_event(method, path, body=body))
    assert (result.status, result.error_code) == (422, "validation_failed")
    assert result.json["error"]["details"][0]["loc"] == loc
    assert not any(api_root.rglob("*.sqlite3")) if api_root.exists() else True


def test_a_put_without_a_body_is_422(api_root: Path) -> None:
    result = invoke(http_event("PUT", "/counters/a"))
    assert (result.status, result.error_code) == (422, "validation_failed")


def test_a_body_over_64_kib_is_413(api_root: Path) -> None:
    result = invoke(http_event("PUT", "/counters/a", raw_body='{"value": 1, "pad": "' + "x" * 70_000 + '"}'))
    assert (result.status, result.error_code) == (413, "payload_too_large")


def test_a_json_body_sent_as_another_content_type_is_415(api_root: Path) -> None:
    result = invoke(
        http_event(
            "POST",
            "/counters/a/increment",
            body={"by": 1},
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    )
    assert (result.status, result.error_code) == (415, "unsupported_media_type")
    assert "Content-Type: application/json" in result.json["error"]["message"]


def test_unknown_routes_are_404_and_wrong_methods_405_with_allow(api_root: Path) -> None:
    missing = invoke(http_event("GET", "/nothing/here"))
    assert (missing.status, missing.error_code) == (404, "route_not_found")
    wrong = invoke(http_event("PATCH", "/counters/a"))
    assert (wrong.status, wrong.error_code, wrong.headers["allow"]) == (
        405,
        "method_not_allowed",
        "GET, PUT, DELETE",
    )
    assert invoke(http_event("GET", "/counters/a/increment")).headers["allow"] == "POST"


def test_an_event_that_is_not_from_api_gateway_is_400(api_root: Path) -> None:
    result = invoke({"Records": []})
    assert (result.status, result.error_code) == (400, "bad_request")


def test_overflow_at_either_end_is_409_and_changes_nothing(api_root: Path) -> None:
    invoke(http_event("PUT", "/counters/big", body={"value": INT64_MAX}))
    over = invoke(http_event("POST", "/counters/big/increment"))
    assert (over.status, over.error_code) == (409, "out_of_range")
    assert over.json["error"]["message"] == (
        f"increment by 1 would take the value {INT64_MAX} outside the signed 64-bit range"
        f" [{INT64_MIN}, {INT64_MAX}] - the counter is unchanged"
    )
    assert invoke(http_event("GET", "/counters/big")).json["value"] == INT64_MAX
    invoke(http_event("PUT", "/counters/small", body={"value": INT64_MIN + 1}))
    assert invoke(http_event("POST", "/counters/small/decrement")).json["value"] == INT64_MIN
    under = invoke(http_event("POST", "/counters/small/decrement"))
    assert (under.status, under.error_code) == (409, "out_of_range")
    fresh = invoke(http_event("POST", "/counters/fresh/decrement", body={"by": INT64_MAX}))
    assert fresh.json["value"] == -INT64_MAX
    history = invoke(http_event("GET", "/counters/small/history")).json["items"]
    assert [item["op"] for item in history] == ["decrement", "set"]  # the refused one left no trace


def test_an_idempotent_retry_replays_the_stored_response(api_root: Path) -> None:
    # GIVEN a mutation sent with an Idempotency-Key
    headers = {"idempotency-key": "order-17"}
    first = invoke(http_event("POST", "/counters/i/increment", body={"by": 3}, headers=headers))
    # WHEN the client retries it (JSON spelled differently, same meaning)
    retry = invoke(
        http_event(
            "POST", "/counters/i/increment", raw_body='{ "by":3 }', headers=headers, request_id="req-2"
        )
    )
    # THEN the stored status and body come back, marked as replayed, and the counter moved once
    assert (retry.status, retry.text, retry.headers["idempotent-replayed"]) == (200, first.text, "true")
    assert "idempotent-replayed" not in first.headers
    assert invoke(http_event("GET", "/counters/i")).json["value"] == 3
    put = invoke(http_event("PUT", "/counters/j", body={"value": 1}, headers={"idempotency-key": "k"}))
    assert put.status == 201
    assert (
        invoke(http_event("PUT", "/counters/j", body={"value": 1}, headers={"idempotency-key": "k"})).status
        == 201
    )
    delete = {"idempotency-key": "del-1"}
    assert invoke(http_event("DELETE", "/counters/j", headers=delete)).status == 204
    again = invoke(http_event("DELETE", "/counters/j", headers=delete))
    assert (again.status, again.text, again.headers["idempotent-replayed"]) == (204, "", "true")


def test_the_same_key_with_a_different_request_is_422(api_root: Path) -> None:
    headers = {"idempotency-key": "order-18"}
    invoke(http_event("POST", "/counters/i/increment", body={"by": 3}, headers=headers))
    reused = invoke(http_event("POST", "/counters/i/increment", body={"by": 4}, headers=headers))
    assert (reused.status, reused.error_code) == (422, "idempotency_key_reused")
    other_route = invoke(http_event("POST", "/counters/i/decrement", body={"by": 3}, headers=headers))
    assert other_route.error_code == "idempotency_key_reused"
    assert invoke(http_event("GET", "/counters/i")).json["value"] == 3


@pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there"])
def test_a_malformed_idempotency_key_is_400(api_root: Path, key: str) -> None:
    result = invoke(http_event("POST", "/counters/i/increment", headers={"idempotency-key": key}))
    assert (result.status, result.error_code) == (400, "invalid_idempotency_key")


def test_idempotency_keys_expire_after_the_ttl(api_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from counter_core import store

    clock = [1_800_000_000_000]
    monkeypatch.setattr(store, "_now_ms", lambda: clock[0])
    monkeypatch.setenv("COUNTERS_IDEMPOTENCY_TTL_S", "60")
    monkeypatch.setenv("COUNTERS_ROOT", str(api_root / "ttl"))  # a new root: state re-read with the new TTL
    headers = {"idempotency-key": "once"}
    assert invoke(http_event("POST", "/counters/t/increment", headers=headers)).json["value"] == 1
    clock[0] += 59_000
    assert (
        invoke(http_event("POST", "/counters/t/increment", headers=headers)).headers["idempotent-replayed"]
        == "true"
    )
    clock[0] += 2_000
    assert invoke(http_event("POST", "/counters/t/increment", headers=headers)).json["value"] == 2


def test_history_pages_newest_first_with_an_opaque_cursor(api_root: Path) -> None:
    for _ in range(25):
        invoke(http_event("POST", "/counters/h/increment"))
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        query = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        page = invoke(http_event("GET", "/counters/h/history", query=query)).json
        seen += [item["value"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(range(25, 0, -1))
    default = invoke(http_event("GET", "/counters/h/history")).json
    assert len(default["items"]) == 20
    item = default["items"][0]
    assert set(item) == {"seq", "op", "amount", "value", "at", "request_id"} and item["amount"] == 1


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ({"limit": "0"}, 422, "validation_failed"),
        ({"limit": "101"}, 422, "validation_failed"),
        ({"limit": "ten"}, 422, "validation_failed"),
        ({"cursor": "bm9wZQ"}, 400, "invalid_cursor"),
        ({"cursor": "!!"}, 400, "invalid_cursor"),
    ],
)
def test_bad_history_queries_are_refused(
    api_root: Path, query: dict[str, str], status: int, code: str
) -> None:
    invoke(http_event("POST", "/counters/h/increment"))
    result = invoke(http_event("GET", "/counters/h/history", query=query))
    assert (result.status, result.error_code) == (status, code)


def test_delete_removes_counter_and_history_and_a_later_increment_starts_from_zero(api_root: Path) -> None:
    for _ in range(3):
        invoke(http_event("POST", "/counters/d/increment"))
    assert invoke(http_event("DELETE", "/counters/d")).status == 204
    assert invoke(http_event("GET", "/counters/d")).status == 404
    assert invoke(http_event("GET", "/counters/d/history")).status == 404
    assert invoke(http_event("DELETE", "/counters/d")).status == 404
    assert invoke(http_event("POST", "/counters/d/increment")).json["value"] == 1
    assert len(invoke(http_event("GET", "/counters/d/history")).json["items"]) == 1


def test_reads_of_missing_counters_create_nothing(api_root: Path) -> None:
    assert invoke(http_event("GET", "/counters/ghost")).status == 404
    assert invoke(http_event("GET", "/counters/ghost/history")).status == 404
    assert invoke(http_event("DELETE", "/counters/ghost")).status == 404
    assert not api_root.exists()


def test_a_lock_held_past_the_busy_timeout_is_503_busy_with_retry_after(
    api_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNTERS_BUSY_TIMEOUT_MS", "50")
    invoke(http_event("POST", "/counters/hot/increment"))
    monkeypatch.setenv("COUNTERS_ROOT", str(api_root))  # unchanged root: same cached state
    from counter_core.paths import counter_path as file_of

    other = apsw.Connection(str(file_of(api_root, "hot")))
    other.execute("BEGIN IMMEDIATE")
    try:
        result = invoke(http_event("POST", "/counters/hot/increment"))
    finally:
        other.execute("ROLLBACK")
    assert (result.status, result.error_code, result.headers["retry-after"]) == (503, "busy", "1")
    assert invoke(http_event("POST", "/counters/hot/increment")).json["value"] == 2


def test_a_foreign_file_in_a_counters_place_is_503_without_internals(api_root: Path) -> None:
    from counter_core.paths import counter_path as file_of

    path = file_of(api_root, "stolen")
    path.parent.mkdir(parents=True)
    conn = apsw.Connection(str(path))
    conn.execute("CREATE TABLE payroll (x)")
    conn.close()
    result = invoke(http_event("POST", "/counters/stolen/increment"))
    assert (result.status, result.error_code) == (503, "not_a_counter_database")
    assert (
        result.json["error"]["message"]
        == "the counter's file is not a counter database - an operator must inspect it"
    )
    assert str(api_root) not in result.text and "payroll" not in result.text


def _json_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
    """Records as Powertools renders them (JSON with the appended keys such as request_id)."""
    from handlers.api import logger

    return [json.loads(logger.registered_formatter.format(record)) for record in caplog.records]


def test_an_unexpected_failure_is_500_with_the_request_id_and_no_internals(
    api_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a counter whose row was edited by hand: text where an integer belongs (a file SQLite finds
    # malformed is no longer unexpected: 503 counter_file_damaged, tests/test_faults_open_path.py)
    invoke(http_event("PUT", "/counters/broken", body={"value": 1}))
    from counter_core.paths import counter_path as file_of

    conn = apsw.Connection(str(file_of(api_root, "broken")))
    conn.execute("UPDATE counter_metadata SET value = 'one'")
    conn.close()
    # WHEN it is read in a fresh process state
    import handlers.api

    handlers.api._state = None
    result = invoke(http_event("GET", "/counters/broken", request_id="req-500"))
    # THEN the client gets a 500 that says nothing about files or SQL, and the log has the traceback
    assert (result.status, result.error_code) == (500, "internal")
    assert (
        result.json["error"]["message"]
        == "an unexpected error occurred - retry, and quote request ID req-500 if it persists"
    )
    assert (
        "Traceback" not in result.text
        and str(api_root) not in result.text
        and "sqlite" not in result.text.lower()
    )
    [error] = [log for log in _json_logs(caplog) if log.get("message") == "unexpected error"]
    assert error["request_id"] == "req-500" and "Traceback" in str(error["exception"])


def test_requests_and_migrations_are_logged_and_measured(
    api_root: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN per-request lines switched on (they are DEBUG: API Gateway's access log has every request)
    caplog.set_level(logging.DEBUG, logger="counters")
    invoke(http_event("POST", "/counters/m/increment", request_id="req-m"))
    logs = _json_logs(caplog)
    request_logs = [log for log in logs if log.get("message") == "request"]
    assert request_logs[-1]["request_id"] == "req-m" and request_logs[-1]["status"] == 200
    assert any(log.get("message") == "counter created" and log["level"] == "DEBUG" for log in logs)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    metric_names = {
        m["Name"] for line in lines if "_aws" in line for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
    }
    assert {"Requests", "CountersCreated"} <= metric_names
    [requests] = [line for line in lines if "Requests" in line]
    assert (requests["route"], requests["status"]) == ("incrementCounter", "200")


def test_openapi_is_served_and_the_committed_copy_is_current(api_root: Path) -> None:
    served = invoke(http_event("GET", "/openapi.json"))
    assert served.status == 200
    assert served.text == (ROOT_DIR / "docs" / "openapi.json").read_text(), "run `python -m tools.openapi`"
    document = served.json
    from handlers.routes import ROUTES

    assert sorted((m.upper(), p) for p, ops in document["paths"].items() for m in ops) == sorted(ROUTES)
