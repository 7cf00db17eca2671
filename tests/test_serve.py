"""`python -m tools.serve`: the handler over real HTTP, driven by a real HTTP client."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from tests.local_server import running_server


def _request(
    method: str, url: str, body: object = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], str]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), error.read().decode()


def test_the_local_server_serves_the_api_over_http(tmp_path: Path) -> None:
    root = tmp_path / "served"
    with running_server(root) as server:
        url = server.url
        # GIVEN the server started on a free port and printed how to use it
        assert (
            server.stdout.read_text()
            .splitlines()[1]
            .startswith(f"Try: curl -X POST {url}/counters/hello/increment")
        )
        # WHEN a client creates, increments and reads a counter whose ID needs URL-encoding
        status, _, body = _request("PUT", f"{url}/counters/caf%C3%A9%201", {"value": 5, "metadata": {"a": 1}})
        assert (status, json.loads(body)["id"]) == (201, "café 1")
        status, headers, body = _request(
            "POST", f"{url}/counters/caf%C3%A9%201/increment", {"by": 2}, {"Idempotency-Key": "k1"}
        )
        assert (status, json.loads(body)["value"]) == (200, 7)
        status, headers, body = _request(
            "POST", f"{url}/counters/caf%C3%A9%201/increment", {"by": 2}, {"Idempotency-Key": "k1"}
        )
        assert (status, headers["idempotent-replayed"], json.loads(body)["value"]) == (200, "true", 7)
        status, _, body = _request("GET", f"{url}/counters/caf%C3%A9%201/history?limit=1")
        assert [item["value"] for item in json.loads(body)["items"]] == [7]
        # THEN errors keep their shape over HTTP too
        status, headers, body = _request("PATCH", f"{url}/counters/x")
        assert (status, headers["allow"], json.loads(body)["error"]["code"]) == (
            405,
            "GET, PUT, DELETE",
            "method_not_allowed",
        )
        status, _, body = _request("GET", f"{url}/openapi.json")
        assert status == 200 and json.loads(body)["openapi"] == "3.1.0"
        # AND Ctrl-C stops it cleanly
        assert server.stop() == 0
        assert server.stdout.read_text().strip().endswith("Stopped.")
        access_log = server.stderr.read_text()
        assert '"PUT /counters/caf%C3%A9%201 HTTP/1.1" 201' in access_log
    assert any(root.rglob("*.sqlite3"))
