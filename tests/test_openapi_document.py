"""The OpenAPI document: valid (openapi-spec-validator), and declaring the headers, security and servers
that the API really has - each declared header is checked against a real handler response.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from handlers.api import handler
from handlers.openapi import openapi_document
from tests.api_events import http_event

DOCUMENT: dict[str, Any] = json.loads(openapi_document())


def _responses() -> list[tuple[str, str, str, dict[str, Any]]]:
    return [
        (path, method, status, response)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        for status, response in operation["responses"].items()
    ]


def test_the_document_is_valid_openapi_3_1() -> None:
    validate(DOCUMENT)  # raises OpenAPIValidationError, naming the path of the problem


def test_a_broken_document_is_caught_by_the_validator() -> None:
    broken = json.loads(openapi_document())
    broken["paths"]["/counters/{id}"]["get"]["responses"]["200"]["headers"]["x-request-id"] = {"$ref": 3}
    with pytest.raises(Exception, match="3"):
        validate(broken)


def test_every_response_declares_the_request_id_header() -> None:
    missing = [f"{m} {p} {s}" for p, m, s, r in _responses() if "x-request-id" not in r.get("headers", {})]
    assert missing == []


def test_retry_after_allow_and_idempotent_replayed_are_declared_where_they_are_sent() -> None:
    for path, method, status, response in _responses():
        headers = set(response["headers"])
        where = f"{method} {path} {status}"
        assert ("Retry-After" in headers) == (status == "503"), where
        assert ("Allow" in headers) == (status == "405"), where
        mutation = method != "get" and status in {"200", "201", "204"}
        assert ("Idempotent-Replayed" in headers) == mutation, where
    for name in ("RequestId", "RetryAfter", "Allow", "IdempotentReplayed"):
        assert "schema" in DOCUMENT["components"]["headers"][name]


def test_declared_headers_are_the_ones_the_handler_sends(api_root: Path) -> None:
    # GIVEN real responses: a replayed increment and a wrong method
    key = {"idempotency-key": "k1"}
    handler(http_event("POST", "/counters/h/increment", headers=key), None)
    replayed = handler(http_event("POST", "/counters/h/increment", headers=key), None)
    wrong = handler(http_event("PATCH", "/counters/h"), None)
    # THEN they carry the headers the document declares, under those names (case-insensitively)
    assert {"idempotent-replayed", "x-request-id"} <= {h.lower() for h in replayed["headers"]}
    assert wrong["statusCode"] == 405
    assert {"allow", "x-request-id"} <= {h.lower() for h in wrong["headers"]}


def test_security_schemes_are_sigv4_or_a_jwt_and_servers_name_the_api() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["sigv4"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert (schemes["jwt"]["type"], schemes["jwt"]["scheme"], schemes["jwt"]["bearerFormat"]) == (
        "http",
        "bearer",
        "JWT",
    )
    assert DOCUMENT["security"] == [{"sigv4": []}, {"jwt": []}]
    urls = [server["url"] for server in DOCUMENT["servers"]]
    assert urls == ["https://{apiId}.execute-api.{region}.amazonaws.com", "http://127.0.0.1:3000"]
