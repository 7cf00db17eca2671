"""Golden cases: tests/generate_cases/<case>/{before.sql, after.sql, expected.sql, args}.

Each case generates `before` (when not empty), then `after` with the flags in `args` (one per line),
compares the SQL with expected.sql byte for byte, then diffs again: nothing may be left to do, and
`check` must pass. The generator's own verification replays every migration onto an empty database
and onto one with rows, so each case also proves its data survives.

Set UPDATE_GOLDEN=1 to rewrite expected.sql from the current output (then review the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.generate_support import empty_folder, run

CASES_DIR = Path(__file__).parent / "generate_cases"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_golden_case(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = CASES_DIR / case
    folder = empty_folder(tmp_path / "migrations")
    common = ["--migrations", folder]
    number = 0
    if (source / "before.sql").read_text().strip():
        first = run(capsys, "generate", "--name", "before", "--schema", source / "before.sql", *common)
        assert first.code == 0, first.err
        number = 1
    args_file = source / "args"
    flags = args_file.read_text().split() if args_file.exists() else []

    result = run(capsys, "generate", "--name", "after", "--schema", source / "after.sql", *flags, *common)

    assert result.code == 0, result.err
    written = (folder / f"{number:04d}_after.sql").read_text(encoding="utf-8")
    expected_file = source / "expected.sql"
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(written, encoding="utf-8")
    assert written == expected_file.read_text(encoding="utf-8")

    again = run(capsys, "generate", "--name", "again", "--schema", source / "after.sql", *common)
    assert again.code == 0, again.err
    assert again.out.startswith("Nothing to do:")
    assert not (folder / f"{number + 1:04d}_again.sql").exists()
    checked = run(capsys, "check", "--schema", source / "after.sql", *common)
    assert checked.code == 0, checked.err
