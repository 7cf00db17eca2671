"""The OpenAPI 3.1 document, generated from the route table and the pydantic models.

Built on the first request for it (not at cold start) and cached; `python -m tools.openapi` writes
the committed copy, docs/openapi.json, and a test keeps the two equal.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from counter_core.models import ErrorBody, HistoryQuery
from counter_core.paths import ID_PATTERN, MAX_ID_LENGTH
from handlers.routes import TABLE, Route, model

TITLE = "Durable counters"
VERSION = "1.0.0"

_ERROR_TEXT = {
    400: "Bad request: invalid_counter_id, invalid_cursor, invalid_json, invalid_idempotency_key",
    404: "not_found: the counter does not exist; route_not_found: no such route (a decoded / or ? in an ID changes the path)",
    405: "method_not_allowed (see the Allow header)",
    409: "out_of_range: the value would leave the signed 64-bit range; nothing changed",
    413: "payload_too_large: the body is over 64 KiB",
    415: "unsupported_media_type: send Content-Type: application/json",
    422: "validation_failed (with details) or idempotency_key_reused",
    500: "internal: unexpected; quote the request_id",
    503: "busy (lock wait timed out) or a migration refusal; see Retry-After",
}


# Response headers, declared once and referenced from each response that carries them.
_HEADERS: dict[str, dict[str, Any]] = {
    "RequestId": {
        "description": "The request's ID (API Gateway's); every error body repeats it, and the logs carry it.",
        "schema": {"type": "string"},
    },
    "RetryAfter": {
        "description": "Seconds to wait before retrying (503: busy, or a migration refused during a deploy).",
        "schema": {"type": "integer", "minimum": 0},
    },
    "Allow": {"description": "The methods this path accepts.", "schema": {"type": "string"}},
    "IdempotentReplayed": {
        "description": "`true` when this is the stored response of an earlier request with the same Idempotency-Key.",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
_HEADER_NAMES = {
    "RequestId": "x-request-id",
    "RetryAfter": "Retry-After",
    "Allow": "Allow",
    "IdempotentReplayed": "Idempotent-Replayed",
}

# The deployed API takes one of these, per the template's ApiAuth parameter (ApiAuth=PUBLIC: none);
# the local server (`make serve`) checks none.
_SECURITY_SCHEMES = {
    "sigv4": {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "description": "AWS Signature Version 4 for the execute-api service (ApiAuth=IAM, the default);"
        " the caller needs execute-api:Invoke. See tools/client.py or `curl --aws-sigv4`.",
        "x-amazon-apigateway-authtype": "awsSigv4",
    },
    "jwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A token from JwtIssuer for JwtAudience (ApiAuth=JWT).",
    },
}

_SERVERS = [
    {
        "url": "https://{apiId}.execute-api.{region}.amazonaws.com",
        "description": "The deployed HTTP API (the stack's ApiUrl output)",
        "variables": {"apiId": {"default": "abc123"}, "region": {"default": "us-east-1"}},
    },
    {"url": "http://127.0.0.1:3000", "description": "`make serve`"},
]


def _headers(*names: str) -> dict[str, Any]:
    return {_HEADER_NAMES[name]: {"$ref": f"#/components/headers/{name}"} for name in names}


def _schemas() -> tuple[dict[Any, Any], dict[str, Any]]:
    models: set[type[BaseModel]] = {ErrorBody}
    for route in TABLE:
        models.update(model(name) for name in (route.body, route.response) if name is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    bodies = {route.body for route in TABLE}
    refs, document = models_json_schema(
        [(m, "validation" if m.__name__ in bodies else "serialization") for m in ordered],
        ref_template="#/components/schemas/{model}",
    )
    return dict(refs), document.get("$defs", {})


def _json_content(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def _operation(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {"operationId": route.operation_id, "summary": route.summary, "responses": {}}
    parameters: list[dict[str, Any]] = []
    if "{id}" in route.path:
        parameters.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "description": "Counter ID: 1 to 256 Unicode characters, percent-encoded as UTF-8 in"
                " the path. No control characters and none of / ? # % (API Gateway's HTTP API cannot"
                " carry them in a path segment); not . or .. (URLs drop them). Compared as exact code"
                " points, without Unicode normalisation: NFC and NFD spellings are different counters.",
                "schema": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ID_LENGTH,
                    "pattern": ID_PATTERN,
                },
            }
        )
    if route.operation_id == "getCounterHistory":
        for name, field in HistoryQuery.model_fields.items():
            schema = HistoryQuery.model_json_schema()["properties"][name]
            parameters.append(
                {"name": name, "in": "query", "required": field.is_required(), "schema": schema}
            )
    if route.mutation:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Apply at most once: a retry with the same key and request replays the stored response.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
            }
        )
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": _json_content(refs[(model(route.body), "validation")]),
        }
    responses: dict[str, Any] = operation["responses"]
    if route.operation_id == "getOpenApi":
        responses["200"] = {
            "description": "OpenAPI 3.1 document",
            "headers": _headers("RequestId"),
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
        return operation
    success: dict[str, Any] = {"description": "Success"}
    success_headers = ("RequestId", "IdempotentReplayed") if route.mutation else ("RequestId",)
    success["headers"] = _headers(*success_headers)
    if route.response is not None and route.success != 204:
        success["content"] = _json_content(refs[(model(route.response), "serialization")])
    responses[str(route.success)] = success
    if route.operation_id == "setCounter":
        assert route.response is not None
        responses["201"] = {
            "description": "Created",
            "headers": _headers(*success_headers),
            "content": _json_content(refs[(model(route.response), "serialization")]),
        }
    extra = {405: ("Allow",), 503: ("RetryAfter",)}
    for status in sorted({*route.errors, 405, 500}):
        responses[str(status)] = {
            "description": _ERROR_TEXT[status],
            "headers": _headers("RequestId", *extra.get(status, ())),
            "content": _json_content(refs[(ErrorBody, "serialization")]),
        }
    return operation


@functools.cache
def openapi_document() -> str:
    """The document as JSON text (byte-stable: the committed copy is compared byte for byte)."""
    refs, components = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in TABLE:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Durable counters: one SQLite database per counter. Every error is"
            ' {"error": {"code", "message", "request_id", "details"?}}.',
        },
        "servers": _SERVERS,
        "security": [{"sigv4": []}, {"jwt": []}],
        "paths": paths,
        "components": {"schemas": components, "headers": _HEADERS, "securitySchemes": _SECURITY_SCHEMES},
    }
    return json.dumps(document, indent=2, sort_keys=False) + "\n"
