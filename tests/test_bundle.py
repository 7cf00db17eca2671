"""The Lambda bundle that `sam build` gets from `make build-<LogicalId>`.

The bundle is built once per module into a temporary directory with the real make target. Its wheels
come from PyPI the first time and from .cache/lambda-wheels after that.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.utils import canonicalize_name

from counter_core.manifest import parse_manifest
from tools.bench.coldstart import build_bundle, find_lambda_python

REPO = Path(__file__).resolve().parent.parent
UV = REPO / ".cache" / "uv-0.13.9" / "bin" / "uv"
EM_AARCH64 = 183
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# What `python3.13` on Lambda arm64 reports, for the lock's environment markers.
LAMBDA_MARKER_ENVIRONMENT = {
    "implementation_name": "cpython",
    "platform_machine": "aarch64",
    "platform_python_implementation": "CPython",
    "platform_system": "Linux",
    "python_full_version": "3.13.0",
    "python_version": "3.13",
    "sys_platform": "linux",
    "os_name": "posix",
}


def _make(target: str, artifacts: Path, *, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", target, f"ARTIFACTS_DIR={artifacts}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle built by `make build-ApiFunction`, as `sam build` would run it."""
    artifacts = tmp_path_factory.mktemp("ApiFunction")
    result = _make("build-ApiFunction", artifacts)
    assert result.returncode == 0, f"make build-ApiFunction failed:\n{result.stdout}\n{result.stderr}"
    return artifacts


def _files(root: Path) -> list[Path]:
    return sorted(path.relative_to(root) for path in root.rglob("*") if path.is_file())


def test_bundle_ships_the_current_manifest_and_every_migration(bundle: Path) -> None:
    bundled = bundle / "generated"
    manifest = parse_manifest((bundled / "manifest.json").read_bytes(), source="bundled manifest.json")
    # The build regenerated the source manifest first; the bundle carries exactly that file.
    assert (bundled / "manifest.json").read_bytes() == (REPO / "generated" / "manifest.json").read_bytes()

    journal = json.loads((bundled / "meta" / "_journal.json").read_text(encoding="utf-8"))
    tags = [entry["tag"] for entry in journal["entries"]]
    assert [migration.tag for migration in manifest.migrations] == tags
    assert sorted(path.name for path in bundled.glob("*.sql")) == sorted(f"{tag}.sql" for tag in tags)
    assert sorted(path.name for path in bundled.glob("*.sql")) == sorted(
        path.name for path in (REPO / "generated").glob("*.sql")
    )


def test_bundle_holds_no_tests_or_tools(bundle: Path) -> None:
    files = _files(bundle)
    assert not (bundle / "tests").exists()
    assert not (bundle / "tools").exists()
    assert [f for f in files if f.parts[0] in {"tests", "tools"}] == []
    # Every source file of the runtime packages is there.
    for package in ("handlers", "counter_core"):
        expected = sorted(
            p.relative_to(REPO) for p in (REPO / package).glob("*") if p.suffix in {".py", ".sql"}
        )
        assert [f for f in expected if f not in files] == [], package


def test_every_module_ships_unchecked_cpython313_bytecode(bundle: Path) -> None:
    # /var/task is read-only on Lambda: without shipped bytecode every cold start compiles every
    # module it imports. Unchecked hash-based .pyc files (PEP 552) are used without a stat of the source.
    missing, checked = [], []
    for source in bundle.rglob("*.py"):
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not compiled.is_file():
            missing.append(str(source.relative_to(bundle)))
            continue
        flags = int.from_bytes(compiled.read_bytes()[4:8], "little")
        if flags != 0b01:  # hash-based, check_source off
            checked.append(str(compiled.relative_to(bundle)))
    assert missing == []
    assert checked == []
    stray = [p for p in bundle.rglob("*.pyc") if not p.name.endswith(".cpython-313.pyc")]
    assert stray == []


def test_what_the_bundle_never_loads_is_not_shipped(bundle: Path) -> None:
    assert not (bundle / "apsw" / "tests").exists()
    assert not (bundle / "apsw" / "shell.py").exists()
    assert not (bundle / "apsw" / "sqlite_extra_binaries").exists()
    assert not (bundle / "bin").exists()


def test_a_bundle_built_for_this_machine_serves_requests_with_nothing_else_on_the_path(
    tmp_path: Path,
) -> None:
    # GIVEN the bundle built by the same target for this machine's architecture, and CPython 3.13
    python = find_lambda_python()
    if python is None:
        pytest.skip("no CPython 3.13 on this machine (python3.13 on PATH, pyenv's 3.13 or LAMBDA_PYTHON)")
    machine = os.uname().machine
    if machine not in {"x86_64", "aarch64"}:
        pytest.skip(f"Lambda has no {machine} runtime")
    artifacts = tmp_path / "bundle"
    build_bundle(artifacts)
    before = _files(artifacts)
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import handlers.api as api\n"
        "event = json.load(open(sys.argv[2]))\n"
        "class Context: aws_request_id = 'bundle-test'\n"
        "for _ in range(2): response = api.handler(event, Context())\n"
        "print('RESULT', response['statusCode'], json.loads(response['body'])['value'])\n"
        "print('MODULES', sorted(m.split('.')[0] for m in sys.modules if getattr(sys.modules[m], '__file__', None)"
        " and sys.modules[m].__file__.startswith(sys.argv[1]) and '.' not in m))\n"
    )
    # WHEN a fresh interpreter with only the bundle (and the standard library) on sys.path serves it
    done = subprocess.run(
        [python, "-I", "-S", "-c", script, str(artifacts), str(REPO / "events" / "increment.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            "COUNTERS_ROOT": str(tmp_path / "counters"),
            "POWERTOOLS_METRICS_DISABLED": "true",
            "PATH": os.environ["PATH"],
        },
    )
    # THEN it answers, from the shipped bytecode (nothing was compiled or written into the bundle)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in done.stdout.splitlines() if " " in line}
    status, value = lines["RESULT"].split()
    assert status == "200" and int(value) >= 1
    assert "'apsw'" in lines["MODULES"]
    assert _files(artifacts) == before


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    assert header[4] == 2, f"{path.name} is not 64-bit"
    byte_order = "<" if header[5] == 1 else ">"
    machine: int = struct.unpack(f"{byte_order}H", header[18:20])[0]
    return machine


def test_apsw_is_an_aarch64_cpython313_build(bundle: Path) -> None:
    extensions = sorted((bundle / "apsw").glob("__init__.*.so"))
    assert [path.name for path in extensions] == ["__init__.cpython-313-aarch64-linux-gnu.so"]
    assert _elf_machine(extensions[0]) == EM_AARCH64


def test_every_native_binary_targets_lambda_arm64(bundle: Path) -> None:
    # Python extension modules and plain shared objects alike (apsw also ships SQLite extensions).
    binaries = sorted(bundle.rglob("*.so"))
    extension_modules = [p for p in binaries if ".cpython-" in p.name]
    assert len(extension_modules) >= 2, "apsw and pydantic_core each ship an extension module"
    wrong_tag = [
        str(p.relative_to(bundle))
        for p in extension_modules
        if not p.name.endswith(".cpython-313-aarch64-linux-gnu.so")
    ]
    wrong_machine = [str(p.relative_to(bundle)) for p in binaries if _elf_machine(p) != EM_AARCH64]
    assert wrong_tag == []
    assert wrong_machine == []


def _locked_runtime_set() -> set[tuple[str, str]]:
    """`name==version` of uv.lock's runtime dependencies that apply on Lambda (markers evaluated there)."""
    exported = subprocess.run(
        [str(UV), "export", "--frozen", "--no-dev", "--no-emit-project", "--no-header", "--no-hashes"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "UV_PROJECT_ENVIRONMENT": str(REPO / ".venv")},
    ).stdout
    pins: set[tuple[str, str]] = set()
    for line in exported.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate(LAMBDA_MARKER_ENVIRONMENT):
            continue
        name, _, version = requirement.strip().partition("==")
        pins.add((canonicalize_name(name), version))
    return pins


def test_bundle_installs_exactly_the_locked_runtime_dependencies(bundle: Path) -> None:
    installed: set[tuple[str, str]] = set()
    for dist_info in bundle.glob("*.dist-info"):
        name, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
        installed.add((canonicalize_name(name), version))
    assert installed == _locked_runtime_set()


@pytest.mark.parametrize("function", ["ApiFunction", "FleetPlanFunction", "FleetMigrateFunction"])
def test_each_function_handler_module_is_bundled(bundle: Path, function: str) -> None:
    template = (REPO / "template.yaml").read_text(encoding="utf-8")
    handler = {
        "ApiFunction": "handlers.api.handler",
        "FleetPlanFunction": "handlers.fleet.plan",
        "FleetMigrateFunction": "handlers.fleet.migrate_shard",
    }[function]
    assert f"Handler: {handler}" in template
    module = Path(*handler.split(".")[:-1]).with_suffix(".py")
    assert (bundle / module).is_file()


def test_bundle_size_is_reported_and_within_lambda_limits(
    bundle: Path, record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str]
) -> None:
    total = sum((bundle / f).stat().st_size for f in _files(bundle))
    archive = shutil.make_archive(str(bundle.parent / "bundle"), "zip", bundle)
    zipped = Path(archive).stat().st_size
    record_property("bundle_unzipped_bytes", total)
    record_property("bundle_zipped_bytes", zipped)
    with capsys.disabled():
        print(f"\nLambda bundle: {total / 2**20:.1f} MiB unzipped, {zipped / 2**20:.1f} MiB zipped")
    assert total < LAMBDA_UNZIPPED_LIMIT


def test_build_stops_with_the_tools_message_when_migrations_are_inconsistent(tmp_path: Path) -> None:
    # GIVEN a copy of the project whose journal names a migration that has no SQL file
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Makefile", "pyproject.toml", "uv.lock"):
        shutil.copy2(REPO / name, project / name)
    for package in ("handlers", "counter_core", "tools", "generated"):
        shutil.copytree(REPO / package, project / package, ignore=shutil.ignore_patterns("__pycache__"))
    for shared in (".venv", ".cache"):
        (project / shared).symlink_to(REPO / shared)
    journal_path = project / "generated" / "meta" / "_journal.json"
    journal = json.loads(journal_path.read_text(encoding="utf-8"))
    journal["entries"].append(
        {
            "idx": len(journal["entries"]),
            "version": "6",
            "when": 4102444800000,
            "tag": "9999_missing",
            "breakpoints": True,
        }
    )
    journal_path.write_text(json.dumps(journal), encoding="utf-8")
    artifacts = tmp_path / "artifacts"

    # WHEN the bundle is built
    result = _make("build-ApiFunction", artifacts, cwd=project)

    # THEN make fails with the migrations tool's own message, before anything is bundled
    assert result.returncode != 0
    assert "entry '9999_missing' has no file 9999_missing.sql" in result.stderr
    assert result.stderr.rstrip().splitlines()[-2].endswith("- fix them and run the command again.")
    assert not artifacts.exists() or not any(artifacts.iterdir())
