"""Build API Gateway events the way API Gateway does, and call the real handler with them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from tools.serve import LocalContext, build_event

EVENTS = Path(__file__).resolve().parent.parent / "events"


@dataclass(frozen=True)
class Result:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error_code(self) -> str:
        return str(self.json["error"]["code"])


def counter_path(counter_id: str, suffix: str = "") -> str:
    return f"/counters/{quote(counter_id, safe='')}{suffix}"


def sample(name: str) -> dict[str, Any]:
    """One of the committed sample events (events/NAME.json), as `sam local invoke -e` would send it."""
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


def http_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    raw_body: bytes | str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
    request_id: str = "req-1",
) -> dict[str, Any]:
    """The HTTP API (payload 2.0) event for a request to `path` (percent-encoded, as a client sends
    it), built as the deployed HTTP API builds it: rawPath decoded, route key, pathParameters."""
    target = path + (f"?{urlencode(query)}" if query else "")
    request_headers = {"content-type": "application/json", **(headers or {})}
    event = build_event(method, target, request_headers, b"", "192.0.2.1")
    event["requestContext"]["requestId"] = request_id
    _set_body(event, body, raw_body, base64_body)
    return event


def rest_event(
    method: str,
    path: str,
    *,
    body: Any = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    base64_body: bool = False,
    request_id: str = "rest-1",
) -> dict[str, Any]:
    """A REST API (payload 1.0) proxy event."""
    event: dict[str, Any] = {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", **(headers or {})},
        "multiValueHeaders": None,
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "requestContext": {"requestId": request_id, "stage": "prod", "identity": {"sourceIp": "192.0.2.1"}},
        "isBase64Encoded": False,
    }
    _set_body(event, body, None, base64_body)
    return event


def _set_body(event: dict[str, Any], body: Any, raw: bytes | str | None, base64_body: bool) -> None:
    data: bytes | None
    if raw is not None:
        data = raw.encode() if isinstance(raw, str) else raw
    elif body is not None:
        data = json.dumps(body).encode()
    else:
        data = None
    if data is None:
        event["body"] = None
    elif base64_body:
        event["body"] = base64.b64encode(data).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = data.decode("utf-8")


def invoke(event: dict[str, Any]) -> Result:
    from handlers.api import handler

    raw = handler(event, LocalContext(aws_request_id="lambda-req"))
    assert isinstance(raw["statusCode"], int) and raw["isBase64Encoded"] is False
    return Result(raw["statusCode"], raw["headers"], raw["body"])
