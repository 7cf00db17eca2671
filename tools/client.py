"""`python -m tools.client URL OPERATION ID`: call the deployed counters API, signed with SigV4 or with a JWT.

A small client for operators and an example for applications: it needs botocore only (which every
boto3 user has), never ships in the Lambda bundle, and sends requests with the standard library.
With the default `ApiAuth=IAM`, each request is signed with SigV4 for the `execute-api` service, with
the credentials botocore finds (environment, profile, SSO, instance role); the caller needs
`execute-api:Invoke` on the API. With `ApiAuth=JWT`, pass the token instead (`--token` or
COUNTERS_API_TOKEN): it goes in the Authorization header as a bearer token.

    from tools.client import CountersClient
    client = CountersClient("https://abc123.execute-api.eu-west-1.amazonaws.com")
    client.increment("page-views", idempotency_key="7f1c2a9e").json()
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

SERVICE = "execute-api"
TOKEN_VARIABLE = "COUNTERS_API_TOKEN"  # noqa: S105 - the name of a variable, not a secret
# What an ID cannot hold to reach the function through HTTP API (counter_core.paths.UNCARRIED; this
# client needs botocore only, so it does not import the project).
UNCARRIED = "/?#%"
OPERATIONS = ("get", "put", "increment", "decrement", "reset", "delete", "history")
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class CountersClient:
    """The API's routes as methods; each returns the Reply, whatever its status."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        region: str | None = None,
        credentials: Any = None,
        timeout: float = 30,
    ) -> None:
        if urlsplit(base_url).scheme not in ("https", "http"):
            raise ValueError(f"{base_url!r} is not an http(s) URL - pass the stack's ApiUrl output")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._signer = None
        if token is None:
            self._signer = _sigv4_signer(self.base_url, region=region, credentials=credentials)

    def get(self, counter_id: str) -> Reply:
        return self.request("GET", _path(counter_id))

    def put(self, counter_id: str, value: int, metadata: dict[str, Any] | None = None, **kw: Any) -> Reply:
        body: dict[str, Any] = {"value": value, **({"metadata": metadata} if metadata is not None else {})}
        return self.request("PUT", _path(counter_id), body=body, **kw)

    def increment(self, counter_id: str, by: int = 1, **kw: Any) -> Reply:
        return self.request("POST", _path(counter_id, "/increment"), body={"by": by}, **kw)

    def decrement(self, counter_id: str, by: int = 1, **kw: Any) -> Reply:
        return self.request("POST", _path(counter_id, "/decrement"), body={"by": by}, **kw)

    def reset(self, counter_id: str, **kw: Any) -> Reply:
        return self.request("POST", _path(counter_id, "/reset"), **kw)

    def delete(self, counter_id: str, **kw: Any) -> Reply:
        return self.request("DELETE", _path(counter_id), **kw)

    def history(self, counter_id: str, *, limit: int | None = None, cursor: str | None = None) -> Reply:
        query = {k: str(v) for k, v in (("limit", limit), ("cursor", cursor)) if v is not None}
        return self.request("GET", _path(counter_id, "/history") + (f"?{urlencode(query)}" if query else ""))

    def request(
        self, method: str, target: str, *, body: Any = None, idempotency_key: str | None = None
    ) -> Reply:
        """Send one request to base_url + target (already URL-encoded), signed or with the token."""
        url = self.base_url + target
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self._signer is not None:
            headers = self._signer(method, url, headers, data)
        # The scheme was checked to be http(s) in __init__.
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return Reply(response.status, dict(response.headers.items()), response.read())
        except urllib.error.HTTPError as error:
            return Reply(error.code, dict(error.headers.items()), error.read())


def _path(counter_id: str, suffix: str = "") -> str:
    # Every character but unreserved ones encoded, "/" included: an ID is one path segment.
    return f"/counters/{quote(counter_id, safe='')}{suffix}"


def region_of(base_url: str) -> str | None:
    """The region in an execute-api hostname, or None for a custom domain or a local server."""
    match = _REGION_IN_HOST.search(urlsplit(base_url).hostname or "")
    return match.group(1) if match else None


def _sigv4_signer(base_url: str, *, region: str | None, credentials: Any) -> Any:
    import botocore.session  # type: ignore[import-untyped]
    from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

    session = botocore.session.Session()
    region = (
        region or region_of(base_url) or session.get_config_variable("region") or os.environ.get("AWS_REGION")
    )
    if not region:
        raise SystemExit(
            "error: no region for SigV4 - the URL is not an execute-api hostname; pass --region (or set AWS_REGION)"
        )
    credentials = credentials or session.get_credentials()
    if credentials is None:
        raise SystemExit(
            "error: no AWS credentials found - configure a profile or set AWS_ACCESS_KEY_ID and"
            f" AWS_SECRET_ACCESS_KEY, or pass a JWT with --token (or {TOKEN_VARIABLE})"
        )
    auth = SigV4Auth(credentials, SERVICE, region)

    def sign(method: str, url: str, headers: dict[str, str], data: bytes | None) -> dict[str, str]:
        # The Host header is signed: sign the request exactly as urllib will send it.
        signed = AWSRequest(method=method, url=url, data=data or b"", headers={**headers})
        auth.add_auth(signed)
        return dict(signed.headers.items())

    return sign


def _call(client: CountersClient, args: argparse.Namespace, key: dict[str, Any]) -> Reply:
    if args.operation == "put":
        return client.put(args.id, args.value, args.metadata, **key)
    if args.operation in ("increment", "decrement"):
        return getattr(client, args.operation)(args.id, args.by, **key)  # type: ignore[no-any-return]
    if args.operation in ("reset", "delete"):
        return getattr(client, args.operation)(args.id, **key)  # type: ignore[no-any-return]
    if args.operation == "history":
        return client.history(args.id, limit=args.limit, cursor=args.cursor)
    return client.get(args.id)


def _metadata(text: str) -> dict[str, Any]:
    """--metadata: a JSON object, read here so a typo is one line before anything is sent."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f'not JSON ({exc}) - pass an object such as \'{{"team": "web"}}\''
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('not a JSON object - pass an object such as \'{"team": "web"}\'')
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=".venv/bin/python -m tools.client", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "url",
        help="the stack's ApiUrl output, for example https://abc123.execute-api.eu-west-1.amazonaws.com",
    )
    parser.add_argument("operation", choices=OPERATIONS)
    parser.add_argument(
        "id", help="the counter ID (any characters but / ? # %%, and not . or ..; it is URL-encoded here)"
    )
    parser.add_argument("--value", type=int, help="put: the value")
    parser.add_argument("--metadata", type=_metadata, help="put: the new metadata, a JSON object")
    parser.add_argument("--by", type=int, default=1, help="increment/decrement: the step (default: 1)")
    parser.add_argument("--idempotency-key", help="mutations: retry-safe key")
    parser.add_argument("--limit", type=int, help="history: entries per page (1-100, default 20)")
    parser.add_argument("--cursor", help="history: the next_cursor of the page before")
    parser.add_argument("--region", help="SigV4 region (default: from the URL, else the AWS configuration)")
    parser.add_argument(
        "--token",
        default=os.environ.get(TOKEN_VARIABLE),
        help=f"a JWT instead of SigV4 (default: ${TOKEN_VARIABLE})",
    )
    given = sys.argv[1:] if argv is None else argv
    if given and given[0] in OPERATIONS:
        parser.error(
            f"the URL is missing before {given[0]!r} - pass the stack's ApiUrl output first:"
            f' .venv/bin/python -m tools.client "$API_URL" {" ".join(given)}'
        )
    args = parser.parse_args(argv)
    if args.operation == "put" and args.value is None:
        parser.error("put needs --value")
    uncarried = [char for char in UNCARRIED if char in args.id]
    if uncarried or args.id in (".", ".."):
        what = f"holds {uncarried[0]!r}" if uncarried else "is a dot segment"
        parser.error(
            f"counter ID {args.id!r} {what}, which API Gateway's HTTP API cannot carry in a path"
            " - use other characters"
        )
    try:
        client = CountersClient(args.url, token=args.token, region=args.region)
    except ValueError as exc:
        print(f"error: {exc} (`export API_URL=...` as the README shows)", file=sys.stderr)
        return 2
    key = {"idempotency_key": args.idempotency_key}
    try:
        reply = _call(client, args, key)
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        print(
            f"error: cannot reach {args.url} ({reason}) - check the URL (the stack's ApiUrl output)",
            file=sys.stderr,
        )
        return 2
    print(reply.status, reply.body.decode("utf-8", "replace"))
    return 0 if reply.status < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
