"""tools.client against the real local server: every request it sends carries a valid SigV4 signature.

The local server does not check signatures (API Gateway does); it records each request exactly as it
received it (`--dump-requests`), and this test verifies the Authorization header from that record
with botocore's own signer, as API Gateway would: same canonical request, same key, same signature.
Fake credentials: nothing here talks to AWS.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import botocore
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.local_server import REPO, running_server
from tools.client import TOKEN_VARIABLE, CountersClient, region_of

CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
REGION = "eu-west-1"
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request,"
    r" SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})$"
)


def _received(dump: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in dump.read_text().splitlines()]


def verify_sigv4(record: dict[str, Any], credentials: Credentials) -> str:
    """The service the request was signed for, if its signature is valid for `credentials`; else raises."""
    headers = {name.lower(): value for name, value in record["headers"]}
    match = _AUTHORIZATION.match(headers["authorization"])
    assert match is not None, headers["authorization"]
    assert match["key"] == credentials.access_key
    assert headers["x-amz-date"].startswith(match["date"])
    signed = match["signed"].split(";")
    assert {"host", "x-amz-date"} <= set(signed)
    # Rebuild the request from what the server received, with only the headers the signature covers.
    request = AWSRequest(
        method=record["method"],
        url=f"http://{headers['host']}{record['target']}",
        data=base64.b64decode(record["body"]),
        headers={name: headers[name] for name in signed},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(credentials, match["service"], match["region"])
    canonical = auth.canonical_request(request)
    assert auth.signed_headers(auth.headers_to_sign(request)) == match["signed"]
    expected = auth.signature(auth.string_to_sign(request, canonical), request)
    if expected != match["signature"]:
        raise AssertionError(f"signature {match['signature']} is not valid; expected {expected}")
    return f"{match['region']}/{match['service']}"


@pytest.fixture
def dump_and_client(tmp_path: Path) -> Any:
    dump = tmp_path / "received.jsonl"
    with running_server(tmp_path / "counters", "--dump-requests", str(dump)) as server:
        yield dump, CountersClient(server.url, region=REGION, credentials=CREDENTIALS)


def test_every_request_of_the_client_is_validly_signed(dump_and_client: Any) -> None:
    dump, client = dump_and_client
    # WHEN the client runs every route, with an ID that needs encoding and an idempotency key
    odd = "team web: é+1"
    replies = [
        client.put(odd, 41, {"team": "web"}),
        client.increment(odd, idempotency_key="7f1c2a9e"),
        client.increment(odd, idempotency_key="7f1c2a9e"),
        client.decrement(odd, by=2),
        client.get(odd),
        client.history(odd, limit=2),
        client.reset(odd),
        client.delete(odd),
    ]
    # THEN the server answered them as the API does
    assert [r.status for r in replies] == [201, 200, 200, 200, 200, 200, 200, 204]
    assert replies[2].headers["idempotent-replayed"] == "true"
    assert replies[4].json()["value"] == 40
    # AND each request as received carries a SigV4 signature valid for execute-api in the region
    received = _received(dump)
    assert len(received) == len(replies)
    assert {verify_sigv4(record, CREDENTIALS) for record in received} == {f"{REGION}/execute-api"}
    assert received[0]["target"] == "/counters/team%20web%3A%20%C3%A9%2B1"


def test_the_verification_fails_for_another_secret_or_a_changed_body(dump_and_client: Any) -> None:
    dump, client = dump_and_client
    client.put("tamper", 1)
    (record,) = _received(dump)
    with pytest.raises(AssertionError, match="is not valid"):
        verify_sigv4(record, Credentials(CREDENTIALS.access_key, "another-secret"))
    changed = {**record, "body": base64.b64encode(b'{"value": 2}').decode()}
    with pytest.raises(AssertionError, match="is not valid"):
        verify_sigv4(changed, CREDENTIALS)


def test_with_a_token_the_client_sends_a_bearer_token_and_no_signature(tmp_path: Path) -> None:
    dump = tmp_path / "received.jsonl"
    with running_server(tmp_path / "counters", "--dump-requests", str(dump)) as server:
        reply = CountersClient(server.url, token="eyJ.example.jwt").increment("jwt")
    assert reply.status == 200
    (record,) = _received(dump)
    headers = {name.lower(): value for name, value in record["headers"]}
    assert headers["authorization"] == "Bearer eyJ.example.jwt"
    assert "x-amz-date" not in headers


def test_the_region_is_read_from_an_execute_api_url() -> None:
    assert region_of("https://abc123.execute-api.eu-west-1.amazonaws.com/") == "eu-west-1"
    assert region_of("http://127.0.0.1:3000") is None


def _client_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": CREDENTIALS.access_key,
        "AWS_SECRET_ACCESS_KEY": CREDENTIALS.secret_key,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "tools.client", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unset_api_url_is_one_line_saying_what_to_pass() -> None:
    # GIVEN the README's command typed before `export API_URL=...` ran: "$API_URL" is empty
    result = _client_cli("", "get", "page-views")
    # THEN one line, not a traceback
    assert result.returncode == 2
    assert result.stderr == (
        "error: '' is not an http(s) URL - pass the stack's ApiUrl output"
        " (`export API_URL=...` as the README shows)\n"
    )


def test_a_server_that_does_not_answer_is_one_line() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    result = _client_cli(url, "get", "page-views")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: cannot reach {url} (Connection refused) - check the URL (the stack's ApiUrl output)\n"
    )


@pytest.mark.parametrize(("counter_id", "char"), [("a/b", "/"), ("50%", "%"), ("why?", "?")])
def test_an_id_http_api_cannot_carry_is_refused_before_sending(counter_id: str, char: str) -> None:
    # It used to be sent (encoded) and answered 404 route_not_found, or worse, another counter.
    result = _client_cli("http://127.0.0.1:9/", "increment", counter_id)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        f"error: counter ID {counter_id!r} holds {char!r}, which API Gateway's HTTP API cannot carry"
        " in a path - use other characters"
    )


def test_the_client_runs_with_botocore_alone(tmp_path: Path) -> None:
    # GIVEN an interpreter that has botocore (as every boto3 user's has) and not the project's
    # packages: .venv's Python without its site-packages (-S), botocore and its dependencies on PYTHONPATH
    site = Path(botocore.__file__).resolve().parent.parent
    only_botocore = tmp_path / "site"
    only_botocore.mkdir()
    for name in ("botocore", "dateutil", "jmespath", "urllib3", "six.py"):
        (only_botocore / name).symlink_to(site / name)
    with running_server(tmp_path / "counters") as server:
        # WHEN the client runs with it, as its docstring promises it can
        result = subprocess.run(
            [sys.executable, "-S", "-m", "tools.client", server.url, "increment", "alone"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(only_botocore), TOKEN_VARIABLE: "eyJ.example.jwt"},
            capture_output=True,
            text=True,
            timeout=20,
        )
    # THEN it sends the request (it used to be refused for lacking apsw, which it never uses)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('200 {"id":"alone","value":1,')


def test_the_cli_sets_metadata_and_pages_through_history(tmp_path: Path) -> None:
    with running_server(tmp_path / "counters") as server:
        # GIVEN a counter set with metadata, then incremented twice
        put = _client_cli(server.url, "put", "pages", "--value", "5", "--metadata", '{"team": "web"}')
        assert put.returncode == 0, put.stderr
        assert json.loads(put.stdout.split(" ", 1)[1])["metadata"] == {"team": "web"}
        for _ in range(2):
            assert _client_cli(server.url, "increment", "pages").returncode == 0
        # WHEN its history is read one entry at a time, following next_cursor
        values = []
        cursor: list[str] = []
        while True:
            page = _client_cli(server.url, "history", "pages", "--limit", "1", *cursor)
            assert page.returncode == 0, page.stderr
            body = json.loads(page.stdout.split(" ", 1)[1])
            values += [item["value"] for item in body["items"]]
            if body["next_cursor"] is None:
                break
            cursor = ["--cursor", body["next_cursor"]]
    # THEN every operation is read once, newest first
    assert values == [7, 6, 5]


def test_metadata_that_is_not_a_json_object_is_one_line_before_sending() -> None:
    result = _client_cli("http://127.0.0.1:9/", "put", "x", "--value", "1", "--metadata", "[1]")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        'argument --metadata: not a JSON object - pass an object such as \'{"team": "web"}\''
    )


def test_a_command_without_the_url_says_the_url_is_missing() -> None:
    result = _client_cli("get", "page-views")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].endswith(
        "error: the URL is missing before 'get' - pass the stack's ApiUrl output first:"
        ' .venv/bin/python -m tools.client "$API_URL" get page-views'
    )
