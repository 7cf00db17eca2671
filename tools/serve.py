"""`python -m tools.serve`: the Lambda handler over local HTTP, as `sam local start-api` would, without Docker.

Each request becomes the API Gateway HTTP API payload 2.0 event that the deployed API would build
(the path decoded, the route key and path parameters of the matched route); the handler's response
goes back as HTTP. Requests are read concurrently (a stalled client holds up nobody) and handled one
at a time, as one Lambda instance serves them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import io
import json
import os
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from counter_core import config

DEFAULT_ROOT = Path("var/counters")
# API Gateway's own limit on a request payload; the handler refuses far less (64 KiB) itself.
MAX_BODY_BYTES = 10 * 1024 * 1024
READ_TIMEOUT_S = 10
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})|%")
_RAW_NON_ASCII = re.compile(rb"[\x80-\xff]")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")


class RefusedPath(ValueError):
    """A path HTTP API refuses with 400 before any route sees it (a `%` not followed by two hex
    digits once decoded, or bytes that are not UTF-8)."""


@dataclass(frozen=True)
class LocalContext:
    """The attributes of a Lambda context object that the handler and Powertools read."""

    aws_request_id: str
    function_name: str = "ApiFunction"
    function_version: str = "$LATEST"
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:ApiFunction"
    memory_limit_in_mb: int = 512

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def _decode_path(path: str) -> str:
    """Percent-decode once, strictly: RefusedPath for a stray `%` or bytes that are not UTF-8."""

    def byte(match: re.Match[bytes]) -> bytes:
        if match.group(1) is None:
            raise RefusedPath("a '%' is not followed by two hex digits")
        return bytes([int(match.group(1), 16)])

    try:
        return _ESCAPE.sub(byte, path.encode("utf-8")).decode("utf-8")
    except UnicodeError as exc:
        raise RefusedPath("the path is not UTF-8 once percent-decoded") from exc


def gateway_path(raw_path: str) -> str:
    """rawPath as HTTP API delivers it for the path a client sent, per live captures (hotsock/voker,
    vokerhttp/testdata/ingress-paths.json): decoded, cut at a decoded `?`, then decoded again
    (`%252F` arrives as `/`, `%2525` as `%`, a lone `%25` is refused with 400)."""
    return _decode_path(_decode_path(raw_path).split("?", 1)[0])


def build_event(
    method: str, target: str, headers: dict[str, str], body: bytes, client_ip: str
) -> dict[str, Any]:
    """A payload 2.0 event as API Gateway's HTTP API builds it for `target` (path and query as
    sent, percent-encoded): rawPath decoded, and for a path that matches a route, that route's key
    and its decoded pathParameters. Raises RefusedPath where HTTP API answers 400 itself.

    A path that matches no route goes to the handler as a catch-all (`$default`) event, so the
    handler's JSON 404 or 405 answers it; the deployed API answers those with its own 404.
    """
    from handlers.routes import NoRoute, WrongMethod, match

    split = urlsplit(target)
    path = gateway_path(split.path)
    route_key, path_parameters = "$default", None
    try:
        route, params = match(method, path.strip("/").split("/"))
        route_key, path_parameters = f"{route.method} {route.path}", params or None
    except (NoRoute, WrongMethod):
        pass
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        # HTTP API joins repeated query parameters with commas.
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": split.query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("Host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": client_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = path_parameters
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


# One Lambda instance handles one request at a time; the server threads only read and write.
_INVOKE = threading.Lock()


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    server_version = "durable-counters-local"
    timeout = READ_TIMEOUT_S  # a client that stops sending mid-request is dropped, not waited on

    def _serve(self) -> None:
        from handlers.api import handler

        try:
            body = self._read_body()
        except _BadRequest as exc:
            self._send_json_error(exc.status, exc.code, exc.message)
            return
        except TimeoutError:
            self.close_connection = True
            self.log_message("client sent no body for %s s; connection dropped", self.timeout)
            return
        try:
            # http.server reads the request line as Latin-1; raw UTF-8 bytes in it mean the same as
            # their percent-encoded form, as they do to API Gateway.
            raw = self.path.encode("latin-1")
            target = _RAW_NON_ASCII.sub(lambda m: b"%%%02X" % m[0][0], raw).decode("ascii")
            event = build_event(
                self.command, target, dict(self.headers.items()), body, self.client_address[0]
            )
        except RefusedPath as exc:
            self._send_json_error(400, "bad_request", f"{exc} - percent-encode the path as UTF-8")
            return
        dump = getattr(self.server, "dump_requests", None)
        if dump is not None:
            _dump(dump, self.command, self.path, self.headers.items(), body)
        with _INVOKE:
            result = handler(event, LocalContext(aws_request_id=event["requestContext"]["requestId"]))
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self._send(int(result["statusCode"]), result.get("headers") or {}, data)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        if not length_header.strip().isdigit():
            self.close_connection = True  # where this body ends is unknown
            raise _BadRequest(
                400, "bad_request", f"Content-Length {length_header!r} is not a number of bytes - fix it"
            )
        length = int(length_header)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise _BadRequest(
                413, "payload_too_large", f"the body is {length} bytes; the limit is {MAX_BODY_BYTES}"
            )
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            # Hex digits only: int() also reads "-1" (and read(-1) would wait for the client to close).
            if _CHUNK_SIZE.fullmatch(size_line) is None:
                self.close_connection = True
                raise _BadRequest(400, "bad_request", "the chunked body is malformed - fix it")
            size = int(size_line, 16)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailer fields, then the blank line
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                self.close_connection = True
                raise _BadRequest(
                    413, "payload_too_large", f"the body is over {MAX_BODY_BYTES} bytes - send less"
                )
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (414, a malformed request line, 431) in the API's JSON shape.
        # Our own words for the two common ones: http.server's phrases differ between CPython versions
        # ("Request-URI Too Long" until 3.12, "URI Too Long" from 3.13).
        codes = {
            414: (
                "uri_too_long",
                "the request line is too long - shorten the URL (a counter ID is at most 256 characters)",
            ),
            431: ("headers_too_large", "the request headers are too large - send fewer or shorter headers"),
        }
        self.close_connection = True
        default = ("bad_request", f"{message or self.responses.get(code, ('error',))[0]} - fix the request")
        self._send_json_error(code, *codes.get(code, default))

    def _send_json_error(self, status: int, code: str, message: str) -> None:
        from handlers.errors import error_response

        response = error_response(status, code, message, str(uuid.uuid4())).to_lambda()
        self._send(status, response["headers"], response["body"].encode())

    def _send(self, status: int, headers: dict[str, str], data: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if getattr(self, "command", None) != "HEAD":
            self.wfile.write(data)

    def __getattr__(self, name: str) -> Any:
        # Every method reaches the handler (do_GET, do_TRACE, ...), as API Gateway passes any method
        # on: the handler, not the server, answers 405 with Allow.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stderr; the handler's own JSON logs go to stdout.
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def _dump(path: Path, method: str, target: str, headers: Any, body: bytes) -> None:
    """Append one request as received (method, raw target, headers in order, body) as a JSON line."""
    record = {
        "method": method,
        "target": target,
        "headers": [[name, value] for name, value in headers],
        "body": base64.b64encode(body).decode(),
    }
    with path.open("a", encoding="utf-8") as sink:
        sink.write(json.dumps(record) + "\n")


def schema_warnings() -> list[str]:
    """Why the migrations this server applies may not be what counter_core/schema.sql says, if they may not.

    Runs `tools.migrations check` (the check `make test` runs) with its output captured, and keeps its
    error lines: the schema file has changes no migration makes yet, or the manifest is stale. Read-only.
    """
    from tools.migrations.folder import DEFAULT_FOLDER, FolderError
    from tools.migrations.generate import DEFAULT_SCHEMA, check

    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            failed = check(DEFAULT_FOLDER, DEFAULT_SCHEMA) != 0
    except FolderError as exc:
        return [f"warning: {problem}" for problem in exc.problems]
    if not failed:
        return []
    # check's error lines refer to the difference it printed above them; this warning does not show it
    # (the last line says where to see it), so the reference goes.
    problems = [
        line.removeprefix("error: ").replace(" (difference above)", "")
        for line in output.getvalue().splitlines()
        if line.startswith("error: ")
    ]
    return [
        *(f"warning: {problem}" for problem in problems or ["the migrations check failed"]),
        "warning: serving the migrations in generated/ as they are - details: `.venv/bin/python -m tools.migrations check`",
    ]


def _listen(host: str, port: int) -> ThreadingHTTPServer | None:
    """The server bound to host:port, or None after one line saying why it cannot be and what to do."""
    try:
        server = ThreadingHTTPServer((host, port), _Handler)
        server.daemon_threads = True  # Ctrl-C does not wait for a stalled client
        return server
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            reason = f"port {port} on {host} is already in use"
        elif exc.errno == errno.EACCES:
            reason = f"no permission to listen on port {port}"
        else:
            reason = f"cannot listen on {host}:{port} ({exc.strerror})"
        other = port + 1 if 0 < port < 65535 else 3001
        print(
            f"error: {reason} - stop what holds it, or choose another port: `make serve PORT={other}`"
            f" (or `--port {other}`)",
            file=sys.stderr,
        )
        return None


def port_number(text: str) -> int:
    """argparse type of --port: a port a socket can bind (0 picks a free one)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port - use 1 to 65535 (0 picks a free one)")
    return port


def prepare(root: Path) -> list[str]:
    """What stops a local run before it starts, as `error:` lines (none: ready): a setting the handler
    cannot use, or a --root that cannot be the counter files directory (created if missing)."""
    problems = [f"error: {problem}" for problem in config.problems()]
    if problems:
        return [*problems, "Fix the environment and start again (see the README's Configuration)."]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return [
            f"error: cannot use {root} as the counter files directory ({exc.strerror})"
            " - pass --root a directory, or a path where one can be created"
        ]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_number, default=3000, help="port (default: 3000; 0 picks a free one)"
    )
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="counter files directory (default: var/counters)"
    )
    parser.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT_S,
        help=f"seconds to wait for a client that stops sending (default: {READ_TIMEOUT_S})",
    )
    parser.add_argument(
        "--dump-requests",
        type=Path,
        metavar="FILE",
        help="append every request as received (headers and body included) to FILE as JSON lines - to see"
        " exactly what a client sends, such as its SigV4 Authorization header",
    )
    args = parser.parse_args(argv)
    _Handler.timeout = args.read_timeout
    problems = prepare(args.root)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    os.environ[config.ENV_ROOT] = str(args.root.resolve())
    # No CloudWatch here: keep the console to one line per request (override either to see them).
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    from counter_core import ManifestInvalid

    try:
        import handlers.api  # noqa: F401  - load the manifest now: a bad bundle fails before we listen
    except ManifestInvalid as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    for line in schema_warnings():
        print(line, file=sys.stderr, flush=True)
    server = _listen(args.host, args.port)
    if server is None:
        return 1
    server.dump_requests = args.dump_requests  # type: ignore[attr-defined]
    url = f"http://{args.host}:{server.server_port}"
    print(f"Serving the counter API at {url} (counter files in {args.root})", flush=True)
    print(f"Try: curl -X POST {url}/counters/hello/increment && curl {url}/counters/hello", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nStopped.", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
