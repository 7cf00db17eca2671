"""Lambda entry point for API Gateway (HTTP API payload 2.0; REST payload 1.0 accepted too).

Cold start reads and validates the bundled migration manifest once (a malformed one fails the import,
naming the file and field); each counter file is migrated on its first open in this process.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable

from counter_core import (
    ConnectionCache,
    CounterError,
    MigrationFailed,
    MigrationReport,
    Quarantine,
    bundled_manifest,
    config,
    validate_counter_id,
)
from counter_core.store import (
    CounterStore,
    Decrement,
    Delete,
    Idempotency,
    Increment,
    Operation,
    Outcome,
    Reset,
    Set,
    StoredResponse,
)
from handlers import errors, observability
from handlers.http import BadEvent, Request, Response, json_response, parse_event
from handlers.observability import MetricUnit, emit_metric
from handlers.routes import ROUTES, BadPathEncoding, NoRoute, Route, WrongMethod, model, resolve

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any, TypeVar

    from pydantic import BaseModel

    M = TypeVar("M", bound=BaseModel)

# pydantic (and counter_core.models) is imported by the first request that validates something the
# plain checks of handlers.plain_bodies do not settle: a body such as {"by": 2.5} or one with metadata,
# the history query. `{"by": 2}`, no body, a GET, a reset or a delete never load it:
# importing it and building the models is about 110 ms of CPU in a fresh CPython 3.13, three times
# the apsw-only handler's whole cold start (README, figure 3; tests/test_cold_path.py).

__all__ = ["ROUTES", "handler"]

MAX_BODY_BYTES = 64 * 1024

logger = observability.logger

MANIFEST = bundled_manifest()  # at import: a bad bundle fails the cold start, not a request


class _State:
    """Per-process state, rebuilt only if COUNTERS_ROOT changes (tests, the local server)."""

    def __init__(self) -> None:
        self.root_setting = config.root_setting()
        self.cache = ConnectionCache(
            config.counters_root(),
            MANIFEST,
            capacity=config.connection_cache_size(),
            busy_timeout_ms=config.busy_timeout_ms(),
            on_migrated=_migrated,
            quarantine=Quarantine(on_failure=_migration_failed),
        )
        self.store = CounterStore(
            self.cache,
            idempotency_ttl_s=config.idempotency_ttl_s(),
            history_retention_rows=config.history_retention_rows(),
            on_lock_wait=_lock_wait,
        )


_state: _State | None = None


def _current_state() -> _State:
    global _state
    # A string comparison per request, not a Path: this runs on every warm invocation.
    if _state is None or _state.root_setting != config.root_setting():
        if _state is not None:
            _state.cache.close()
        _state = _State()
    return _state


def _migrated(counter_id: str, report: MigrationReport) -> None:
    if report.from_version == 0 and not report.adopted:
        # A new counter, its file built with every migration: ordinary traffic, which at millions of
        # counters would be millions of INFO lines. Counted by a metric; each one shown at DEBUG.
        logger.debug(
            "counter created",
            extra={
                "counter_id": counter_id,
                "to_version": report.to_version,
                "migration_ms": round(report.seconds * 1000, 3),
            },
        )
        emit_metric("CountersCreated", MetricUnit.Count, 1)
        return
    # An existing file brought up to date: once per file per schema change, worth an operator's eye.
    logger.info(
        "counter database migrated",
        extra={
            "counter_id": counter_id,
            "from_version": report.from_version,
            "to_version": report.to_version,
            "applied": list(report.applied),
            "adopted": list(report.adopted),
            "unknown_additive": list(report.unknown_additive),
            "migration_ms": round(report.seconds * 1000, 3),
        },
    )
    if report.applied:
        emit_metric("MigrationsApplied", MetricUnit.Count, len(report.applied))
        emit_metric("MigrationTime", MetricUnit.Milliseconds, report.seconds * 1000)


def _migration_failed(counter_id: str, error: MigrationFailed) -> None:
    """One metric per failed migration attempt; the file is quarantined for a back-off window."""
    logger.error(
        "counter migration failed - quarantined in this process for a back-off window",
        extra={"counter_id": counter_id, "tag": error.tag, "reason": str(error)},
    )
    emit_metric("MigrationFailures", MetricUnit.Count, 1)


def _lock_wait(seconds: float) -> None:
    emit_metric("LockWaitTime", MetricUnit.Milliseconds, seconds * 1000)


_cold_start = True


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Answer one API Gateway event. Never raises: an exception here would be a 502 at API Gateway."""
    fallback_id = str(getattr(context, "aws_request_id", None) or "local")
    try:
        return _handle(event, fallback_id)
    except Exception:  # a bug outside the request's own try (logging, metrics): still an answer
        logger.exception("unexpected error outside the request")
        return errors.internal_error(fallback_id).to_lambda()


def _handle(event: dict[str, Any], fallback_id: str) -> dict[str, Any]:
    global _cold_start
    if _cold_start:
        _cold_start = False
        emit_metric("ColdStart", MetricUnit.Count, 1)
    started = time.perf_counter()
    route_name = "unmatched"
    try:
        request = parse_event(event, fallback_request_id=fallback_id)
    except BadEvent as exc:
        logger.append_keys(request_id=fallback_id)
        logger.warning("not an API Gateway proxy event", extra={"reason": str(exc)})
        response = errors.error_response(
            400,
            "bad_request",
            "the event is not an API Gateway proxy request - send an HTTP request",
            fallback_id,
        )
        return response.to_lambda()
    # Replaced at the start of every invocation, so a log line never carries an earlier request's ID.
    logger.append_keys(request_id=request.request_id)
    try:
        route, params = resolve(request)
        route_name = route.operation_id
        response = _dispatch(route, params, request)
    except (NoRoute, WrongMethod, BadPathEncoding) as exc:
        response = _routing_error(exc, request)
    except errors.ApiError as exc:
        response = errors.from_api_error(exc, request.request_id)
    except CounterError as exc:
        response = errors.from_domain_error(exc, request.request_id)
        # A 404 or 409 is ordinary traffic; a 503 (busy, a migration refused) needs an operator's eye.
        level = logger.warning if response.status >= 500 else logger.info
        level("request refused", extra={"code": exc.code, "status": response.status, "reason": str(exc)})
    except Exception:  # the one top-level catch: anything unexpected is a 500 with the request ID
        logger.exception("unexpected error")
        response = errors.internal_error(request.request_id)
    response.headers["x-request-id"] = request.request_id
    emit_metric("Requests", MetricUnit.Count, 1, route=route_name, status=str(response.status))
    # DEBUG, not INFO: API Gateway's access log already records every request, and a JSON line per
    # request costs CPU and a write on the hot path (tools.bench, figure 2). Turn it on with
    # POWERTOOLS_LOG_LEVEL=DEBUG, or for a sample of invocations with POWERTOOLS_LOGGER_SAMPLE_RATE.
    logger.debug(
        "request",
        extra={
            "method": request.method,
            "path": request.path,
            "route": route_name,
            "status": response.status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
        },
    )
    return response.to_lambda()


def _routing_error(exc: Exception, request: Request) -> Response:
    if isinstance(exc, WrongMethod):
        return errors.error_response(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed here - use {', '.join(exc.allow)}",
            request.request_id,
            headers={"allow": ", ".join(exc.allow)},
        )
    if isinstance(exc, BadPathEncoding):
        return errors.error_response(
            400,
            "invalid_counter_id",
            "the counter ID is not valid UTF-8 once URL-decoded - encode it as UTF-8",
            request.request_id,
        )
    return errors.error_response(
        404, "route_not_found", "no such route - see GET /openapi.json for the routes", request.request_id
    )


def _dispatch(route: Route, params: dict[str, str], request: Request) -> Response:
    if route.operation_id == "getOpenApi":
        from handlers.openapi import openapi_document  # built on first use, not at cold start

        return Response(200, openapi_document())
    counter_id = validate_counter_id(params["id"])
    store = _current_state().store
    if route.operation_id == "getCounter":
        return Response(200, store.get(counter_id).to_json())
    if route.operation_id == "getCounterHistory":
        from counter_core.models import HistoryQuery

        query = _validate(HistoryQuery, _single_valued(request.query, HistoryQuery), what="query string")
        page = store.history(counter_id, limit=query.limit, cursor=query.cursor)
        return json_response(200, page.model_dump(mode="json"))
    body = _body(route, request)
    operation = _operation(route, body)
    key = _idempotency_key(request)
    idempotency = None
    if key is not None:
        idempotency = Idempotency(key=key, fingerprint=_fingerprint(route, counter_id, body))
    # Rendered inside the transaction: nothing that can fail runs between COMMIT and the response.
    applied = store.apply(
        counter_id,
        operation,
        request_id=request.request_id,
        render=lambda outcome: _stored(route, outcome),
        idempotency=idempotency,
    )
    assert applied.response is not None
    return _from_stored(applied.response, replayed=applied.replayed)


def _operation(route: Route, body: dict[str, Any] | None) -> Operation:
    if route.operation_id == "resetCounter":
        return Reset()
    if route.operation_id == "deleteCounter":
        return Delete()
    assert body is not None  # the other mutations have a body model: _body never returns None for them
    if route.operation_id == "setCounter":
        return Set(body["value"], body["metadata"])
    if route.operation_id == "incrementCounter":
        return Increment(body["by"])
    return Decrement(body["by"])


def _stored(route: Route, outcome: Outcome) -> StoredResponse:
    if outcome.counter is None:
        return StoredResponse(status=204, body="")
    status = 201 if route.operation_id == "setCounter" and outcome.created else route.success
    return StoredResponse(status=status, body=outcome.counter.to_json())


def _from_stored(stored: StoredResponse, *, replayed: bool) -> Response:
    response = Response(stored.status, stored.body or None)
    if replayed:
        response.headers["idempotent-replayed"] = "true"
    return response


def _body(route: Route, request: Request) -> dict[str, Any] | None:
    """The validated body in its model's JSON form (every default filled in); None for a route that
    takes no body. An optional body that was not sent is read as `{}`: the model's defaults."""
    raw = request.body
    if raw is None or raw.strip() == b"":
        if route.body is None:
            return None
        if route.body_required:
            raise errors.ApiError(422, "validation_failed", "a JSON body is required - send one", details=[])
        return _validated_body(route, {})
    if len(raw) > MAX_BODY_BYTES:
        raise errors.ApiError(
            413,
            "payload_too_large",
            f"the body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES} - send less",
        )
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise errors.ApiError(
            415,
            "unsupported_media_type",
            f"the body is sent as {content_type!r} - send JSON with Content-Type: application/json",
        )
    try:
        # What json.loads does with bytes (UTF-8, -16 or -32 by the first bytes), with one decoder made
        # at import instead of one per request (json.loads builds one when given parse_constant).
        data = _JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except json.JSONDecodeError as exc:
        raise errors.ApiError(
            400,
            "invalid_json",
            f"the body is not valid JSON: {exc.msg.lower()} at line {exc.lineno}, column {exc.colno} - fix it",
        ) from None
    except UnicodeDecodeError:
        raise errors.ApiError(
            400, "invalid_json", "the body is not UTF-8 text - send JSON as UTF-8"
        ) from None
    except _NotJsonNumber as exc:
        raise errors.ApiError(
            400, "invalid_json", f"the body holds {exc}, which is not a JSON number - send a number"
        ) from None
    except RecursionError:
        raise errors.ApiError(
            400, "invalid_json", "the body nests too deeply to read - send a flatter document"
        ) from None
    except ValueError:  # Python's integer digit limit (sys.get_int_max_str_digits)
        raise errors.ApiError(
            400,
            "invalid_json",
            "the body holds a number too long to read - values are signed 64-bit integers",
        ) from None
    # A lone surrogate comes only from a `\u` escape or (json reads bytes with surrogatepass) the
    # bytes ED A0-BF: the walk runs only for bodies that hold one of those.
    if (b"\\u" in raw or b"\xed" in raw) and _has_lone_surrogate(data):
        raise errors.ApiError(
            400,
            "invalid_json",
            "the body holds text that is not Unicode (an unpaired surrogate such as \\ud800)"
            " - send whole characters, encoded as UTF-8",
        )
    if route.body is None:
        # `{}` is no body: clients such as requests' `json={}` send it on every POST.
        if data == {}:
            return None
        raise errors.ApiError(
            422, "validation_failed", "this route takes no body - send none or {}", details=[]
        )
    return _validated_body(route, data)


def _validated_body(route: Route, data: Any) -> dict[str, Any]:
    """`data` in the JSON form of the route's body model: settled by its plain check, else by pydantic."""
    assert route.body is not None
    if route.plain_body is not None:
        plain = route.plain_body(data)
        if plain is not None:
            return plain
    return _validate(model(route.body), data, what="body").model_dump(mode="json")


def _has_lone_surrogate(data: Any) -> bool:
    """Whether a string anywhere in parsed JSON (keys too) holds U+D800-U+DFFF: JSON's escapes can
    spell half of a UTF-16 pair, which no UTF-8 text, file or response can hold. Iterative: any depth."""
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


_SURROGATE = re.compile("[\ud800-\udfff]")


class _NotJsonNumber(Exception):
    """Python's json reads NaN and Infinity; JSON has no such numbers."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonNumber(name)


_JSON = json.JSONDecoder(parse_constant=_refuse_constant)


def _single_valued(query: dict[str, str], model: type[BaseModel]) -> dict[str, str]:
    """The query, refused if one of the model's parameters was repeated (HTTP API joins repeats
    with commas; none of this API's query values holds a comma)."""
    for name in model.model_fields:
        if "," in query.get(name, ""):
            raise errors.ApiError(
                422,
                "validation_failed",
                f"the query string is not valid: {name} is given more than once - give it once",
                details=[{"loc": [name], "msg": "is given more than once", "type": "repeated"}],
            )
    return query


def _validate(model: type[M], data: Any, *, what: str) -> M:
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        details = [
            {"loc": list(err["loc"]), "msg": _problem(err, model), "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(
            f"{'.'.join(str(part) for part in d['loc']) or f'the {what}'} {d['msg']}" for d in details
        )
        raise errors.ApiError(
            422, "validation_failed", f"the {what} is not valid: {summary} - fix it", details=details
        ) from None


_NUMBER = "must be an integer"
# pydantic's error types, in the API's terms (pydantic's own messages name Python types and classes).
_PROBLEMS: dict[str, Callable[[dict[str, Any]], str]] = {
    "model_type": lambda ctx: "must be a JSON object",
    "model_attributes_type": lambda ctx: "must be a JSON object",
    "dict_type": lambda ctx: "must be a JSON object",
    "missing": lambda ctx: "is required",
    "int_type": lambda ctx: _NUMBER,
    "int_parsing": lambda ctx: _NUMBER,
    "int_parsing_size": lambda ctx: _NUMBER + " of at most 19 digits",
    "int_from_float": lambda ctx: _NUMBER + ", without a fraction",
    "finite_number": lambda ctx: _NUMBER,
    "greater_than_equal": lambda ctx: f"must be at least {ctx['ge']}",
    "less_than_equal": lambda ctx: f"must be at most {ctx['le']}",
    "string_type": lambda ctx: "must be a string",
    "string_too_short": lambda ctx: f"must be at least {ctx['min_length']} characters long",
    "string_too_long": lambda ctx: f"must be at most {ctx['max_length']} characters long",
}


def _problem(err: Any, model: type[BaseModel]) -> str:
    if err["type"] == "extra_forbidden":
        return f"is not a field here (fields: {', '.join(model.model_fields)})"
    describe = _PROBLEMS.get(err["type"])
    # Custom errors (ours) already speak the API's language; anything else keeps pydantic's words.
    return describe(err.get("ctx") or {}) if describe is not None else str(err["msg"])


def _idempotency_key(request: Request) -> str | None:
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(" " <= ch <= "~" for ch in key):
        raise errors.ApiError(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1 to 255 printable ASCII characters - send another",
        )
    return key


def _fingerprint(route: Route, counter_id: str, body: dict[str, Any] | None) -> str:
    """Same route, counter and (parsed) body: the same request, whatever the JSON whitespace."""
    canonical = json.dumps(
        [
            route.method,
            route.path,
            counter_id,
            body,
        ],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
