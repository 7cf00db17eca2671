"""What a cold start loads: pydantic and Powertools stay off the path of an ordinary first request.

Their imports were most of a 245 ms cold start (tools.bench, figure 3); these tests keep a cheap
change (an import moved back to the top of a module) from silently putting them back.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

from counter_core.manifest import bundled_manifest, parse_manifest
from counter_core.models import HistoryQuery, SetCounter, Step
from handlers.observability import _deferrable_level
from handlers.routes import TABLE, model
from tests.api_events import http_event

REPO = Path(__file__).resolve().parent.parent

# Standard-library modules the request path does without, each a measured part of a cold start
# (README, figure 3): dataclasses (with inspect), typing and pathlib, and the imports that pkgutil,
# secrets, random, datetime and base64 used to add. The Lambda runtime preloads none of them.
LEAN = (
    "base64",
    "dataclasses",
    "datetime",
    "importlib.resources",
    "inspect",
    "pathlib",
    "pkgutil",
    "random",
    "secrets",
    "typing",
)

# Runs in a fresh interpreter: one request, then the heavy packages and the LEAN modules it loaded.
_CHILD = """
import json, sys
before = set(sys.modules)
from handlers.api import handler
response = handler(json.loads(sys.argv[1]), None)
heavy = sorted({m.split(".")[0] for m in sys.modules if m.split(".")[0] in ("pydantic", "pydantic_core", "aws_lambda_powertools")})
lean = sorted(m for m in set(sys.modules) - before if m in sys.argv[2].split(","))
print(json.dumps({"status": response["statusCode"], "heavy": heavy, "lean": lean}))
"""


def _fresh_process(event: dict[str, Any], root: Path, **env: str) -> dict[str, Any]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "AWS_LAMBDA_", "LOG_LEVEL"))
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(event), ",".join(LEAN)],
        cwd=REPO,
        env={**environment, "COUNTERS_ROOT": str(root), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/counters/c/increment"), ("POST", "/counters/c/decrement")],
)
def test_a_first_request_without_a_body_loads_neither_pydantic_nor_powertools(
    tmp_path: Path, method: str, path: str
) -> None:
    # GIVEN a fresh process at Lambda's log level (AWS_LAMBDA_LOG_LEVEL=INFO with JSON logs)
    # WHEN it imports the handler and serves one request that has no body
    result = _fresh_process(http_event(method, path), tmp_path, AWS_LAMBDA_LOG_LEVEL="INFO")
    # THEN it answered without importing either, or any module of LEAN
    assert result == {"status": 200, "heavy": [], "lean": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/counters/c/increment", {"by": 2}, 200),
        ("POST", "/counters/c/decrement", {}, 200),
        ("PUT", "/counters/c", {"value": 7}, 201),
    ],
)
def test_a_plain_body_is_validated_without_pydantic(
    tmp_path: Path, method: str, path: str, body: dict[str, Any], status: int
) -> None:
    # handlers.plain_bodies settles it (tests/test_plain_bodies.py: the same answer pydantic gives)
    result = _fresh_process(http_event(method, path, body=body), tmp_path, AWS_LAMBDA_LOG_LEVEL="INFO")
    assert result == {"status": status, "heavy": [], "lean": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/counters/c/increment", {"by": 2.0}, 200),  # an integer to JSON Schema
        ("POST", "/counters/c/increment", {"by": 0}, 422),  # refused in pydantic's terms, reworded
        ("PUT", "/counters/c", {"value": 7, "metadata": {"a": 1}}, 201),  # metadata's depth and size
    ],
)
def test_any_other_body_is_validated_by_pydantic(
    tmp_path: Path, method: str, path: str, body: dict[str, Any], status: int
) -> None:
    result = _fresh_process(http_event(method, path, body=body), tmp_path, AWS_LAMBDA_LOG_LEVEL="INFO")
    assert (result["status"], result["heavy"]) == (status, ["pydantic", "pydantic_core"])


@pytest.mark.parametrize(
    ("event", "status"),
    [
        ({"version": "2.0", "requestContext": {}}, 400),  # not an API Gateway event: a WARNING
        (http_event("GET", "/counters/missing"), 404),  # refused: an INFO line
    ],
)
def test_a_line_written_builds_powertools_logger(tmp_path: Path, event: dict[str, Any], status: int) -> None:
    result = _fresh_process(event, tmp_path, AWS_LAMBDA_LOG_LEVEL="INFO")
    assert (result["status"], result["heavy"]) == (status, ["aws_lambda_powertools"])


@pytest.mark.parametrize(
    ("settings", "level"),
    [
        ({}, logging.INFO),
        ({"AWS_LAMBDA_LOG_LEVEL": "WARN"}, logging.WARNING),
        ({"AWS_LAMBDA_LOG_LEVEL": "FATAL"}, logging.CRITICAL),
        ({"POWERTOOLS_LOG_LEVEL": "error"}, logging.ERROR),
        ({"LOG_LEVEL": "WARNING"}, logging.WARNING),
        # What the deferral does not reproduce builds Powertools' Logger at once:
        ({"AWS_LAMBDA_LOG_LEVEL": "DEBUG"}, None),
        ({"POWERTOOLS_LOG_LEVEL": "DEBUG"}, None),
        ({"AWS_LAMBDA_LOG_LEVEL": "INFO", "POWERTOOLS_LOG_LEVEL": "INFO"}, None),
        ({"POWERTOOLS_LOGGER_SAMPLE_RATE": "0.1"}, None),
        ({"POWERTOOLS_DEBUG": "true"}, None),
        ({"POWERTOOLS_LOG_LEVEL": "VERBOSE"}, None),
    ],
)
def test_the_logger_waits_only_where_powertools_would_set_just_a_level(
    settings: dict[str, str], level: int | None
) -> None:
    assert _deferrable_level(settings) == level


def test_a_debug_level_builds_the_logger_at_import_and_logs_each_request(tmp_path: Path) -> None:
    # GIVEN POWERTOOLS_LOG_LEVEL=DEBUG WHEN a bodyless increment is served
    result = _fresh_process(
        http_event("POST", "/counters/c/increment"), tmp_path, POWERTOOLS_LOG_LEVEL="DEBUG"
    )
    # THEN Powertools is loaded (it writes the DEBUG request line)
    assert result["heavy"] == ["aws_lambda_powertools"]


def test_empty_body_is_what_the_body_model_makes_of_nothing() -> None:
    # The idempotency fingerprint of a bodyless request hashes what its plain check makes of `{}`, as
    # it hashed the model's defaults when they were built per request: a stored key must keep matching.
    for route in TABLE:
        if route.body is not None and not route.body_required:
            assert route.plain_body is not None, route.operation_id
            assert route.plain_body({}) == model(route.body)().model_dump(mode="json"), route.operation_id
    assert {model(r.body) for r in TABLE if r.body} == {SetCounter, Step}
    assert HistoryQuery is model("HistoryQuery")


_GOOD = {
    "idx": 0,
    "tag": "0000_init",
    "when": 1,
    "sha256": "a" * 64,
    "additive": True,
    "foreign_keys_off": False,
    "statements": ["CREATE TABLE t (x)"],
}


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (b"{", "<root>"),
        (b"[]", "<root>"),
        (json.dumps({"format": 2, "migrations": []}).encode(), "format"),
        (json.dumps({"format": 1}).encode(), "migrations"),
        (json.dumps({"format": 1, "migrations": [], "extra": 1}).encode(), "extra"),
        (json.dumps({"format": 1, "migrations": [{**_GOOD, "idx": True}]}).encode(), "migrations.0.idx"),
        (json.dumps({"format": 1, "migrations": [{**_GOOD, "tag": "init"}]}).encode(), "migrations.0.tag"),
        (json.dumps({"format": 1, "migrations": [{**_GOOD, "when": -1}]}).encode(), "migrations.0.when"),
        (
            json.dumps({"format": 1, "migrations": [{**_GOOD, "additive": 1}]}).encode(),
            "migrations.0.additive",
        ),
        (
            json.dumps({"format": 1, "migrations": [{**_GOOD, "statements": [1]}]}).encode(),
            "migrations.0.statements.0",
        ),
        (
            json.dumps({"format": 1, "migrations": [{**_GOOD, "surprise": 1}]}).encode(),
            "migrations.0.surprise",
        ),
        (json.dumps({"format": 1, "migrations": [{**_GOOD, "idx": 1}]}).encode(), "<root>"),
        (json.dumps({"format": 1, "migrations": [_GOOD, {**_GOOD, "idx": 1}]}).encode(), "<root>"),
    ],
)
def test_a_malformed_manifest_is_refused_naming_the_field(document: bytes, field: str) -> None:
    from counter_core import ManifestInvalid

    with pytest.raises(ManifestInvalid) as caught:
        parse_manifest(document, source="m.json")
    assert str(caught.value).startswith(f"m.json is malformed: field '{field}': ")


def test_a_manifest_round_trips_through_its_json_form() -> None:
    document = {"format": 1, "migrations": [_GOOD]}
    manifest = parse_manifest(json.dumps(document).encode(), source="m.json")
    assert manifest.to_json() == document and manifest.version == 1


# Runs in a fresh interpreter with only `bundle` (a folder or a zip) and counter_core on sys.path.
_READ_BUNDLED = """
import sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]
from counter_core import ManifestInvalid, bundled_manifest
try:
    print(bundled_manifest().version)
except ManifestInvalid as exc:
    print(exc)
"""


def _read_bundled(bundle: Path, tmp_path: Path) -> str:
    code_only = tmp_path / "code"
    shutil.copytree(REPO / "counter_core", code_only / "counter_core")
    done = subprocess.run(
        [sys.executable, "-I", "-c", _READ_BUNDLED, str(bundle), str(code_only)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip()


def test_the_bundled_manifest_is_read_through_the_package_loader_from_a_zip(tmp_path: Path) -> None:
    archive = tmp_path / "bundle.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for name in ("__init__.py", "manifest.json"):
            bundle.write(REPO / "generated" / name, f"generated/{name}")
    assert _read_bundled(archive, tmp_path) == str(bundled_manifest().version)


def test_a_bundle_without_its_manifest_names_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "bundle"
    (folder / "generated").mkdir(parents=True)
    shutil.copy(REPO / "generated" / "__init__.py", folder / "generated")
    assert _read_bundled(folder, tmp_path) == (
        "generated/manifest.json is missing from the bundle - rebuild with `sam build`"
    )
