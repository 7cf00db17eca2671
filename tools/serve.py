"""`python -m tools.serve`: the Lambda handler over local HTTP, as `sam local start-api` would, without Docker.

Each request becomes an API Gateway HTTP API payload 2.0 event; the handler's response goes back as
HTTP. One request at a time, as one Lambda instance serves them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import io
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from counter_core import config

DEFAULT_ROOT = Path("var/counters")


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


def build_event(
    method: str, target: str, headers: dict[str, str], body: bytes, client_ip: str
) -> dict[str, Any]:
    """A payload 2.0 event as API Gateway (and `sam local start-api`) builds it."""
    split = urlsplit(target)
    query: dict[str, str] = {}
    for key, value in parse_qsl(split.query, keep_blank_values=True):
        # HTTP API joins repeated query parameters with commas.
        query[key] = f"{query[key]},{value}" if key in query else value
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": split.path,
        "rawQueryString": split.query,
        "headers": {name.lower(): value for name, value in headers.items()},
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("Host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": method,
                "path": split.path,
                "protocol": "HTTP/1.1",
                "sourceIp": client_ip,
                "userAgent": headers.get("User-Agent", ""),
            },
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if body:
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode()
            event["isBase64Encoded"] = True
    return event


class _Handler(BaseHTTPRequestHandler):
    server_version = "durable-counters-local"

    def _serve(self) -> None:
        from handlers.api import handler

        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        dump = getattr(self.server, "dump_requests", None)
        if dump is not None:
            _dump(dump, self.command, self.path, self.headers.items(), body)
        event = build_event(self.command, self.path, dict(self.headers.items()), body, self.client_address[0])
        result = handler(event, LocalContext(aws_request_id=event["requestContext"]["requestId"]))
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self.send_response(int(result["statusCode"]))
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
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
    problems = [
        line.removeprefix("error: ") for line in output.getvalue().splitlines() if line.startswith("error: ")
    ]
    return [
        *(f"warning: {problem}" for problem in problems or ["the migrations check failed"]),
        "warning: serving the migrations in generated/ as they are - details: `.venv/bin/python -m tools.migrations check`",
    ]


def _listen(host: str, port: int) -> HTTPServer | None:
    """The server bound to host:port, or None after one line saying why it cannot be and what to do."""
    try:
        return HTTPServer((host, port), _Handler)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default: 3000; 0 picks a free one)")
    parser.add_argument(
        "--root", type=Path, default=DEFAULT_ROOT, help="counter files directory (default: var/counters)"
    )
    parser.add_argument(
        "--dump-requests",
        type=Path,
        metavar="FILE",
        help="append every request as received (headers and body included) to FILE as JSON lines - to see"
        " exactly what a client sends, such as its SigV4 Authorization header",
    )
    args = parser.parse_args(argv)
    args.root.mkdir(parents=True, exist_ok=True)
    os.environ[config.ENV_ROOT] = str(args.root.resolve())
    # No CloudWatch here: keep the console to one line per request (override either to see them).
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    import handlers.api  # noqa: F401  - load the manifest now: a bad bundle fails before we listen

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
