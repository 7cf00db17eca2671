"""`python -m tools.serve`: the handler over real HTTP, driven by a real HTTP client."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.local_server import Server, running_server


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


def _raw(url: str, request: bytes, *, send_slowly: bool = False) -> tuple[int, dict[str, str], str]:
    """Send bytes exactly as given (no client library to tidy them up); read the whole answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body.decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve") / "counters", "--read-timeout", "2") as server:
        yield server


def _error(body: str) -> tuple[str, str]:
    error = json.loads(body)["error"]
    return error["code"], error["message"]


def test_a_chunked_body_is_read(served: Server) -> None:
    # GIVEN `{"by": 50}` sent in two chunks, as curl sends a body of unknown length
    request = (
        b"POST /counters/chunked/increment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b'5\r\n{"by"\r\n5;ext=1\r\n: 50}\r\n0\r\n\r\n'
    )
    # THEN it increments by 50, not by the default 1
    status, _, body = _raw(served.url, request)
    assert (status, json.loads(body)["value"]) == (200, 50)


@pytest.mark.parametrize("size", [b"-1", b"zz", b""])
def test_a_chunk_size_that_is_not_one_is_a_json_400_at_once(served: Server, size: bytes) -> None:
    # GIVEN a chunk size line that is negative (read as "read to the end": the server used to wait
    # for the client to close, then drop it unanswered), not hex, or empty
    request = (
        b"POST /counters/chunked-bad/increment HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + size + b'\r\n{"by":5}\r\n0\r\n\r\n'
    )
    started = time.monotonic()
    status, _, body = _raw(served.url, request)
    # THEN a JSON 400 comes back at once, and nothing was counted
    assert (status, _error(body)) == (400, ("bad_request", "the chunked body is malformed - fix it"))
    assert time.monotonic() - started < 1.5  # under the server's 2 s read timeout
    status, _, _ = _raw(
        served.url, b"GET /counters/chunked-bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert status == 404


def test_a_content_length_that_is_not_a_number_is_a_json_400(served: Server) -> None:
    request = b"POST /counters/x/increment HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"
    status, headers, body = _raw(served.url, request)
    assert (status, headers["content-type"]) == (400, "application/json")
    assert _error(body) == ("bad_request", "Content-Length 'abc' is not a number of bytes - fix it")
    assert "Traceback" not in served.stderr.read_text()


def test_a_request_line_too_long_is_a_json_414(served: Server) -> None:
    status, headers, body = _raw(served.url, b"GET /counters/" + b"x" * 70_000 + b" HTTP/1.1\r\n\r\n")
    assert (status, headers["content-type"]) == (414, "application/json")
    assert _error(body) == (
        "uri_too_long",
        "the request line is too long - shorten the URL (a counter ID is at most 256 characters)",
    )


def test_a_path_http_api_refuses_is_a_json_400(served: Server) -> None:
    status, _, body = _raw(served.url, b"GET /counters/50%25 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 400
    assert _error(body) == (
        "bad_request",
        "a '%' is not followed by two hex digits - percent-encode the path as UTF-8",
    )


def test_raw_utf8_in_the_request_line_names_the_same_counter_as_percent_encoding(served: Server) -> None:
    put = 'PUT /counters/caf%C3%A9-raw HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n{"value": 3}'
    assert _raw(served.url, put.encode())[0] == 201
    status, _, body = _raw(served.url, "GET /counters/café-raw HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (status, json.loads(body)["id"], json.loads(body)["value"]) == (200, "café-raw", 3)


def test_a_stalled_client_blocks_no_one_and_is_dropped(served: Server) -> None:
    # GIVEN a client that announced 100 bytes of body, sent one, and went quiet
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as stalled:
        stalled.sendall(b"POST /counters/s/increment HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        # WHEN another client sends a whole request
        started = time.monotonic()
        status, _, _ = _request("POST", f"{served.url}/counters/other/increment")
        # THEN it is answered at once, not after the stalled one
        assert status == 200 and time.monotonic() - started < 1.5
        # AND the stalled connection is closed after the read timeout, with nothing applied
        assert stalled.recv(1024) == b""
    assert _request("GET", f"{served.url}/counters/s")[0] == 404
    assert "client sent no body for 2.0 s; connection dropped" in served.stderr.read_text()
