"""API Gateway events in, Lambda proxy responses out: HTTP API payload 2.0 and REST payload 1.0."""

from __future__ import annotations

import binascii
import json

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any


class BadEvent(ValueError):
    """The event is not an API Gateway proxy event this handler understands."""


class Request:
    """One HTTP request, as parse_event reads it from the event (a plain class: see Response)."""

    __slots__ = (
        "body",
        "headers",
        "method",
        "path",
        "path_is_decoded",
        "path_parameters",
        "query",
        "request_id",
        "route_key",
        "source_ip",
    )

    def __init__(
        self,
        *,
        method: str,
        path: str,
        headers: dict[str, str],
        query: dict[str, str],
        body: bytes | None,
        request_id: str,
        source_ip: str | None = None,
        route_key: str | None = None,
        path_parameters: dict[str, str] | None = None,
        path_is_decoded: bool = True,
    ) -> None:
        self.method = method
        self.path = path  # as the event gives it, stage prefix removed: decoded in 2.0, encoded in 1.0
        self.headers = headers  # names lower-cased
        self.query = query
        self.body = body
        self.request_id = request_id
        self.source_ip = source_ip
        # The route API Gateway matched ("POST /counters/{id}/increment"), None for a catch-all route,
        # and the path parameters it decoded: the counter ID is taken from these, never decoded again.
        self.route_key = route_key
        self.path_parameters = path_parameters
        self.path_is_decoded = path_is_decoded  # payload 2.0 rawPath is decoded already; 1.0 path is not

    def segments(self) -> list[str] | None:
        """The path's segments, decoded exactly once; None if a 1.0 path is not UTF-8 once decoded."""
        parts = self.path.strip("/").split("/")
        if self.path_is_decoded:
            return parts
        # Imported here: only a REST (1.0) event without path parameters decodes its path, and
        # urllib.parse (with ipaddress) was 3.5 ms of the cold start (python -X importtime).
        from urllib.parse import unquote

        try:
            return [unquote(part, errors="strict") for part in parts]
        except UnicodeDecodeError:
            return None


class Response:
    """A response being built: the handler adds headers (x-request-id) after the route answered.

    Request, Response and Route are plain classes with __slots__, not dataclasses: see counter_core.values.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: str | None = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = {} if headers is None else headers

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
    """Normalise either payload version; told apart by the event itself (2.0 has `version` and `rawPath`).

    Anything API Gateway would never send (a field of the wrong type, a body that is not what it
    claims to be) is BadEvent, never another exception.
    """
    if not isinstance(event, dict):
        raise BadEvent("event is not an object")
    context = _object(event, "requestContext")
    route_key: str | None
    if event.get("version") == "2.0":
        http = _object(context, "http")
        method, path = http.get("method"), event.get("rawPath")
        # Lambda function URLs send payload 2.0 too, with rawPath still percent-encoded, as REST does.
        domain = context.get("domainName")
        path_is_decoded = not (isinstance(domain, str) and ".lambda-url." in domain)
        query = {k: str(v) for k, v in _object(event, "queryStringParameters").items()}
        source_ip = http.get("sourceIp")
        # A named stage (not $default) prefixes rawPath with itself.
        stage = context.get("stage")
        if isinstance(stage, str) and stage != "$default" and isinstance(path, str):
            path = path.removeprefix(f"/{stage}") if path.startswith(f"/{stage}/") else path
        route_key = event.get("routeKey") if event.get("routeKey") != "$default" else None
    else:
        method, path, path_is_decoded = event.get("httpMethod"), event.get("path"), False
        multi = _object(event, "multiValueQueryStringParameters")
        single = _object(event, "queryStringParameters")
        query = {k: str(v) for k, v in single.items()}
        for name, values in multi.items():
            if isinstance(values, list) and values:
                query[name] = str(values[-1])
        source_ip = _object(context, "identity").get("sourceIp")
        resource = event.get("resource")
        route_key = (
            f"{method} {resource}" if isinstance(resource, str) and "{proxy+}" not in resource else None
        )
    if not isinstance(method, str) or not isinstance(path, str):
        raise BadEvent("event has no HTTP method or path")
    headers = {str(k).lower(): str(v) for k, v in _object(event, "headers").items()}
    # Payload 2.0 joins repeated headers with commas already; 1.0 may also send multiValueHeaders.
    for name, values in _object(event, "multiValueHeaders").items():
        if isinstance(values, list) and values:
            headers[str(name).lower()] = ",".join(str(v) for v in values)
    params = _object(event, "pathParameters")
    request_id = context.get("requestId")
    return Request(
        method=method.upper(),
        path=path,
        headers=headers,
        query=query,
        body=_body(event),
        request_id=request_id if isinstance(request_id, str) and request_id else fallback_request_id,
        source_ip=source_ip if isinstance(source_ip, str) else None,
        route_key=route_key if isinstance(route_key, str) else None,
        path_parameters={str(k): v for k, v in params.items() if isinstance(v, str)} or None,
        path_is_decoded=path_is_decoded,
    )


def _object(container: dict[str, Any], name: str) -> dict[str, Any]:
    """A field that must be a JSON object when present (null and absent read as empty)."""
    value = container.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadEvent(f"event field {name!r} is not an object")
    return value


def _body(event: dict[str, Any]) -> bytes | None:
    body = event.get("body")
    if body is None:
        return None
    if not isinstance(body, str):
        raise BadEvent("event body is not a string")
    if event.get("isBase64Encoded") is True:
        try:
            # base64.b64decode(body, validate=True) is this call; importing base64 was 1 ms of cold start.
            return binascii.a2b_base64(body.encode("ascii"), strict_mode=True)
        except ValueError as exc:  # binascii.Error, and UnicodeEncodeError for a non-ASCII string
            raise BadEvent("event body is marked base64 but is not") from exc
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: no HTTP request carries one
        raise BadEvent("event body is not Unicode text") from exc
