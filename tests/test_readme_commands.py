"""The README's commands, run as printed: every `sh` block's command that needs no AWS account.

Each command line of a ```sh block is either run here, from the repository root, with bash, or
skipped for a stated reason (it needs AWS, the EFS mount, a person at a keyboard, or it is the test
suite itself). A command that fits neither makes the test fail until it is classified, so the README
cannot grow a command nobody runs. The one liberty taken: the local server listens on a free port,
so `localhost:3000` in a command becomes that port. Commands run against that server with fake AWS
credentials, and the requests they sign are verified with botocore (tests/test_client.py).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.local_server import REPO, running_server
from tests.test_client import CREDENTIALS, _received, verify_sigv4

README = (REPO / "README.md").read_text()
REGION = "us-east-1"

# Commands that cannot run on a machine without an AWS account, a mounted file system or a person.
NEEDS_AWS = ("sam ", "aws ", "sudo ", "export API_URL=$(aws ")
SKIPPED = {
    "make test": "the test suite itself",
    "make bench": "takes minutes; tests/test_bench.py runs the benchmark with --tiny",
    "make serve": "long-running: this test starts the same server; tests/test_running_locally.py runs `make serve PORT=...`",
    "make build-ApiFunction ARTIFACTS_DIR=/tmp/bundle": "tests/test_bundle.py runs it, and checks the bundle",
    "make validate": "installs aws-sam-cli, a large download, into an environment of its own",
    "make clean": "deletes .venv, which runs this test",
    "$EDITOR counter_core/schema.sql": "opens an editor",
}
RUNNABLE = ("make ", ".venv/bin/python -m tools.", "curl ", "COUNTERS_API_TOKEN=")


def readme_commands() -> list[str]:
    """Each command of the README's ```sh blocks (a line ending in a backslash goes on), comments and blank lines left out."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                commands.append(line.strip())
    return commands


def _classify(command: str) -> str:
    bare = command.split("  #")[0].split(" # ")[0].strip()
    if bare.startswith(NEEDS_AWS) or "/mnt/counters" in bare:
        return "aws"
    if bare in SKIPPED:
        return "skipped"
    if bare.startswith(RUNNABLE):
        return "run"
    return "unclassified"


def test_every_readme_command_is_run_or_skipped_for_a_reason() -> None:
    kinds = {command: _classify(command) for command in readme_commands()}
    assert [c for c, kind in kinds.items() if kind == "unclassified"] == []
    assert any(kind == "aws" for kind in kinds.values())
    assert sum(kind == "run" for kind in kinds.values()) >= 10


def _tracked_changes() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True
    ).stdout


def test_the_readme_commands_run_as_printed(tmp_path: Path) -> None:
    before = _tracked_changes()
    dump = tmp_path / "received.jsonl"
    with running_server(tmp_path / "counters", "--dump-requests", str(dump)) as server:
        port = server.url.rsplit(":", 1)[1]
        env = {
            **os.environ,
            "API_URL": f"{server.url}/",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": CREDENTIALS.access_key,
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS.secret_key,
            "TOKEN": "eyJ.example.jwt",
            # No profile or instance metadata lookups: the fake keys above are the only credentials.
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        env.pop("AWS_SESSION_TOKEN", None)
        ran = []
        for command in readme_commands():
            if _classify(command) != "run":
                continue
            printed = command.replace("localhost:3000", f"localhost:{port}")
            # failglob: an unquoted `?` or `*` that matches no file is an error, as in zsh (macOS's
            # default shell: "no matches found"), not passed on as bash does by default.
            result = subprocess.run(
                ["bash", "-O", "failglob", "-c", printed],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert result.returncode == 0, f"{command!r} failed:\n{result.stdout}\n{result.stderr}"
            ran.append(command)
    # THEN a command of each kind ran: make, a tool, curl against the server, signed requests
    assert any(c.startswith("make ") for c in ran)
    assert any(c.startswith(".venv/bin/python -m tools.invoke") for c in ran)
    assert any(c.startswith("curl --aws-sigv4") for c in ran)
    # AND every request the README's commands signed carries a valid SigV4 signature
    received = _received(dump)
    signed = [r for r in received if any(n.lower() == "x-amz-date" for n, _ in r["headers"])]
    assert len(signed) >= 3  # curl --aws-sigv4 and the two tools.client calls
    assert {verify_sigv4(record, CREDENTIALS) for record in signed} == {f"{REGION}/execute-api"}
    bearer = [r for r in received if ["Authorization", "Bearer eyJ.example.jwt"] in r["headers"]]
    assert len(bearer) == 2
    # AND nothing the repository tracks was changed by them
    assert _tracked_changes() == before


def _bare_python() -> str | None:
    """An interpreter without the project's packages (the system's python3), if this machine has one."""
    candidate = Path(sys.base_prefix) / "bin" / "python3"
    if not candidate.exists():
        return None
    probe = subprocess.run([candidate, "-c", "import apsw"], capture_output=True)
    return None if probe.returncode == 0 else str(candidate)


def test_a_tools_message_command_runs_with_a_bare_python3() -> None:
    # GIVEN the command a tool prints (`python -m tools.migrations manifest ...`), typed with an
    # interpreter that lacks the project's packages
    python = _bare_python()
    if python is None:
        pytest.skip("no interpreter without apsw on this machine")
    assert importlib.util.find_spec("apsw") is not None  # the suite itself runs in .venv
    result = subprocess.run(
        [python, "-m", "tools.migrations", "manifest", "--check"], cwd=REPO, capture_output=True, text=True
    )
    # THEN it ran in .venv, as printed
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("manifest.json is current.\n")


def test_a_venv_that_lacks_the_packages_is_said_once_never_exec_looped() -> None:
    # GIVEN the venv's own interpreter without its site-packages (-S): it lacks apsw, and its prefix is
    # not .venv's, so the hand-over to .venv/bin/python would hand over to itself again and again
    result = subprocess.run(
        [sys.executable, "-S", "-m", "tools.migrations", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=20,
    )
    # THEN after one hand-over it says what to do and exits 2
    assert result.returncode == 2
    assert result.stderr.startswith("error: this interpreter lacks the project's packages (apsw)")
