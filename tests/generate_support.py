"""Shared by the generator's tests: an empty migrations folder and a CLI runner that captures output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tools.migrations.cli import main
from tools.migrations.folder import write_journal
from tools.migrations.manifest import write_manifest


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def empty_folder(folder: Path) -> Path:
    """A migrations folder with an empty journal and manifest, like a new project's `generated/`."""
    (folder / "meta").mkdir(parents=True)
    write_journal(folder, [])
    write_manifest(folder)
    return folder


def started_history(tmp_path: Path, capsys: pytest.CaptureFixture[str], sql: str) -> tuple[Path, Path]:
    """(folder, schema file): a history started by `generate --name init` from `sql`, in a new folder."""
    folder = tmp_path / "migrations"
    schema = write(tmp_path / "schema.sql", sql)
    result = run(capsys, "generate", "--name", "init", "--schema", schema, "--migrations", folder)
    assert result.code == 0, result.err
    return folder, schema


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> Result:
    """`python -m tools.migrations ARGS` in-process."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def files(folder: Path) -> dict[str, bytes]:
    """Every file of a migrations folder by relative path, to prove that nothing was written."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
