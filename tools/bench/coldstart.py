"""Cold start of the bundle as it ships, against an apsw-only handler doing the same SQL.

The bundle is built by `make build-ApiFunction` for this machine's architecture (LAMBDA_ARCH), the
target `sam build` runs, so it carries what Lambda gets: bytecode compiled by CPython 3.13 and only
the runtime packages. Each sample is a fresh CPython 3.13 (`-I -S`: no site-packages, nothing but the
bundle and the standard library on sys.path) that imports the handler and serves one increment, of a
new counter or of an existing one. The baseline is a handler module of a few lines using only the
bundle's apsw: the same file layout, the same statements, schema and first write in one transaction
for a new counter.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

from tools.bench.baseline import HISTORY_SQL, READ_SQL, REPO, UPSERT_SQL

RAW_HANDLER = """\
import hashlib, json, os, time
import apsw

DDL, READ, UPSERT, HISTORY = json.loads({sql!r})


def handler(event, context):
    counter_id = event["pathParameters"]["id"]
    digest = hashlib.sha256(counter_id.encode()).hexdigest()
    path = os.path.join(os.environ["COUNTERS_ROOT"], digest[:2], digest[2:4], digest + ".sqlite3")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    conn = apsw.Connection(path)
    conn.set_busy_timeout(5000)
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("BEGIN IMMEDIATE")
    if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
        for statement in DDL:
            conn.execute(statement)
        conn.execute("PRAGMA user_version=1")
    now = time.time_ns() // 1_000_000
    row = conn.execute(READ).fetchone()
    value = (row[0] if row else 0) + 1
    conn.execute(UPSERT, (counter_id, value, row[1] if row else "{{}}", row[2] if row else now, now))
    conn.execute(HISTORY, ("increment", 1, value, now, context.aws_request_id))
    conn.execute("COMMIT")
    body = json.dumps({{"id": counter_id, "value": value}})
    return {{"statusCode": 200, "headers": {{"content-type": "application/json"}}, "body": body}}
"""

# What the Lambda runtime has imported before it imports the handler: the standard-library modules
# imported at the top of the runtime interface client's bootstrap and the modules it loads with it
# (awslambdaric 4.2.2: bootstrap.py, lambda_runtime_client.py, lambda_runtime_log_utils.py,
# lambda_runtime_marshaller.py; its simplejson and C client are left out, as neither side uses them).
# Figure 3r loads them first on both sides, so it times what a Lambda init adds for the handler.
RUNTIME_PRELOADS = (
    "decimal",
    "enum",
    "importlib",
    "json",
    "logging",
    "math",
    "os",
    "sys",
    "time",
    "traceback",
)

# Runs in the fresh interpreter: sys.argv = [-c, paths, module, event JSON, preloads].
CHILD = """\
import json, sys
for name in filter(None, sys.argv[4].split(",")):
    __import__(name)
sys.path[:0] = sys.argv[1].split(":")
module = __import__(sys.argv[2], fromlist=["handler"])
class Context:
    aws_request_id = "cold-start"
response = module.handler(json.loads(sys.argv[3]), Context())
assert response["statusCode"] == 200, response
"""


def find_lambda_python() -> str | None:
    """A CPython 3.13 (Lambda's runtime), found as the Makefile finds one; None if there is none."""
    candidates = [os.environ.get("LAMBDA_PYTHON"), shutil.which("python3.13")]
    pyenv = shutil.which("pyenv")
    if pyenv:
        prefix = subprocess.run([pyenv, "prefix", "3.13"], capture_output=True, text=True, check=False)
        if prefix.returncode == 0 and prefix.stdout.strip():
            candidates.append(f"{prefix.stdout.strip().splitlines()[0]}/bin/python3.13")
    for candidate in candidates:
        if not candidate or not Path(candidate).is_file():
            continue
        probe = subprocess.run(
            [candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 13))"],
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return candidate
    return None


def build_bundle(artifacts: Path) -> None:
    """The bundle `sam build` would make, for this machine's architecture, by the same make target."""
    done = subprocess.run(
        [
            "make",
            "--no-print-directory",
            "build-ApiFunction",
            f"ARTIFACTS_DIR={artifacts}",
            f"LAMBDA_ARCH={os.uname().machine}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"make build-ApiFunction failed: {done.stderr.strip()[-400:]}")


def write_raw_handler(folder: Path, python: str, ddl: list[str]) -> None:
    """The apsw-only handler, compiled like the bundle (unchecked-hash bytecode)."""
    folder.mkdir(parents=True, exist_ok=True)
    sql = json.dumps([ddl, READ_SQL, UPSERT_SQL, HISTORY_SQL])
    (folder / "rawhandler.py").write_text(RAW_HANDLER.format(sql=sql), encoding="utf-8")
    subprocess.run(
        [python, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(folder)],
        check=True,
        capture_output=True,
    )


def sample(
    python: str,
    paths: list[Path],
    module: str,
    event: dict[str, object],
    root: Path,
    preloads: tuple[str, ...] = (),
) -> tuple[float, float]:
    """One fresh interpreter: (wall ms, CPU ms) from its start to its exit after one request, with
    `preloads` imported before the handler (RUNTIME_PRELOADS: as on the Lambda runtime)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [
            python,
            "-I",
            "-S",
            "-c",
            CHILD,
            ":".join(str(p) for p in paths),
            module,
            json.dumps(event),
            ",".join(preloads),
        ],
        env={"PATH": os.environ.get("PATH", ""), "COUNTERS_ROOT": str(root)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
        check=False,
    )
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed in a fresh interpreter: {done.stderr.strip()[-400:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu
