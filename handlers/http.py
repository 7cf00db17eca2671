"""API Gateway events in, Lambda proxy responses out: HTTP API payload 2.0 and REST payload 1.0."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote


class BadEvent(ValueError):
    """The event is not an API Gateway proxy event this handler understands."""


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # raw (still percent-encoded) path, stage prefix removed
    headers: dict[str, str]  # names lower-cased
    query: dict[str, str]
    body: bytes | None
    request_id: str
    source_ip: str | None = None


@dataclass
class Response:
    status: int
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def to_lambda(self) -> dict[str, Any]:
        headers = dict(self.headers)
        if self.body is not None:
            headers.setdefault("content-type", "application/json")
        return {
            "statusCode": self.status,
            "headers": headers,
            "body": self.body or "",
            "isBase64Encoded": False,
        }


def json_response(status: int, payload: Any, *, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status, json.dumps(payload, separators=(",", ":"), ensure_ascii=False), dict(headers or {})
    )


def parse_event(event: Any, *, fallback_request_id: str) -> Request:
    """Normalise either payload version; told apart by the event itself (2.0 has `version` and `rawPath`)."""
    if not isinstance(event, dict):
        raise BadEvent("event is not an object")
    context = event.get("requestContext") or {}
    if event.get("version") == "2.0":
        http = context.get("http") or {}
        method, path = http.get("method"), event.get("rawPath")
        query = {k: str(v) for k, v in (event.get("queryStringParameters") or {}).items()}
        source_ip = http.get("sourceIp")
        # A named stage (not $default) prefixes rawPath with itself.
        stage = context.get("stage")
        if isinstance(path, str) and stage and stage != "$default" and path.startswith(f"/{stage}/"):
            path = path[len(stage) + 1 :]
    else:
        method, path = event.get("httpMethod"), event.get("path")
        multi = event.get("multiValueQueryStringParameters") or {}
        single = event.get("queryStringParameters") or {}
        query = {k: str(v) for k, v in single.items()} | {k: str(v[-1]) for k, v in multi.items() if v}
        source_ip = (context.get("identity") or {}).get("sourceIp")
    if not isinstance(method, str) or not isinstance(path, str):
        raise BadEvent("event has no HTTP method or path")
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    # Payload 2.0 joins repeated headers with commas already; 1.0 may also send multiValueHeaders.
    for name, values in (event.get("multiValueHeaders") or {}).items():
        if values:
            headers[str(name).lower()] = ",".join(str(v) for v in values)
    return Request(
        method=method.upper(),
        path=path,
        headers=headers,
        query=query,
        body=_body(event),
        request_id=str(context.get("requestId") or fallback_request_id),
        source_ip=source_ip if isinstance(source_ip, str) else None,
    )


def _body(event: dict[str, Any]) -> bytes | None:
    body = event.get("body")
    if body is None:
        return None
    if not isinstance(body, str):
        raise BadEvent("event body is not a string")
    if event.get("isBase64Encoded"):
        try:
            return base64.b64decode(body, validate=True)
        except binascii.Error as exc:
            raise BadEvent("event body is marked base64 but is not") from exc
    return body.encode("utf-8")


def path_segments(path: str) -> list[str] | None:
    """Percent-decoded path segments; None if a segment is not valid UTF-8 once decoded."""
    try:
        return [unquote(segment, errors="strict") for segment in path.strip("/").split("/")]
    except UnicodeDecodeError:
        return None
