"""`tools.migrations status|migrate` over a root of real counter files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import apsw
import pytest

from counter_core import Manifest, counter_path, ensure_current, open_database
from counter_core.paths import walk_fleet
from tests.conftest import ADD_NOTE, PARENT_CHILD
from tests.migration_folders import make_folder
from tools.migrations.cli import main


def make_counter(root: Path, counter_id: str, manifest: Manifest) -> Path:
    path = counter_path(root, counter_id)
    conn = open_database(path, create=True, busy_timeout_ms=1000)
    ensure_current(conn, manifest, label=counter_id)
    conn.close()
    return path


def file_version(path: Path) -> int:
    """The file's user_version, read without changing it."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        row = conn.execute("PRAGMA user_version").fetchone()
        assert row is not None
        return int(row[0])
    finally:
        conn.close()


@pytest.fixture
def mixed_root(tmp_path: Path, v1_manifest: Manifest, v2_manifest: Manifest) -> Path:
    """Counters at v1 and v2, a foreign database in a counter's place, and files that are not counters."""
    root = tmp_path / "counters"
    for n in range(5):
        make_counter(root, f"old-{n}", v1_manifest)
    for n in range(3):
        make_counter(root, f"new-{n}", v2_manifest)
    foreign = counter_path(root, "foreign")
    foreign.parent.mkdir(parents=True)
    conn = apsw.Connection(str(foreign))
    conn.execute("CREATE TABLE accounts (id integer)")
    conn.close()
    (root / "README.txt").write_text("not a counter")
    (foreign.parent / "backup.sqlite3").write_bytes(foreign.read_bytes())
    return root


def test_status_counts_files_by_version_and_lists_those_needing_attention(
    mixed_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", str(mixed_root), "--json", "--migrations", str(tmp_path / "v2")]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 9
    assert report["by_version"] == {"1": 5, "2": 3}
    assert report["by_state"]["behind"] == 5 and report["by_state"]["current"] == 3
    assert report["by_state"]["foreign"] == 1
    [attention] = report["attention"]
    assert attention["state"] == "foreign" and attention["file"].endswith(".sqlite3")


def test_status_with_an_older_bundle_reports_newer_files(
    mixed_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["status", str(mixed_root), "--json", "--migrations", str(tmp_path / "v1")])
    report = json.loads(capsys.readouterr().out)
    assert report["by_state"]["newer"] == 3 and report["by_state"]["current"] == 5


def test_status_finds_drift_that_the_fast_path_does_not_read(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    make_counter(root, "a", v1_manifest)
    make_folder(tmp_path / "edited", [("init", PARENT_CHILD + "\n-- edited")])
    assert main(["status", str(root), "--migrations", str(tmp_path / "edited")]) == 1
    out = capsys.readouterr().out
    assert "drifted (1): an applied migration was edited after release" in out
    assert "migration '0000_init' was applied with sha256" in out
    assert out.splitlines()[-1] == "1 file(s) need an operator: see what to do above; nothing was changed."


def test_migrate_brings_every_counter_forward_and_touches_nothing_else(
    mixed_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    untouched = {p: p.read_bytes() for p in [mixed_root / "README.txt", *mixed_root.rglob("backup.sqlite3")]}
    foreign = counter_path(mixed_root, "foreign")
    foreign_bytes = foreign.read_bytes()
    # WHEN the fleet is migrated with two worker processes
    code = main(
        ["migrate", str(mixed_root), "--workers", "2", "--no-progress", "--migrations", str(tmp_path / "v2")]
    )
    # THEN the five behind are migrated, the three current left alone, and the foreign one reported
    captured = capsys.readouterr()
    assert code == 1
    assert "9 counter file(s): 5 migrated, 3 already current, 1 failed." in captured.out
    assert "not a counter database" in captured.err
    assert all(path.read_bytes() == data for path, data in untouched.items())
    assert foreign.read_bytes() == foreign_bytes
    # AND a second run finds nothing more to migrate
    main(
        ["migrate", str(mixed_root), "--workers", "1", "--no-progress", "--migrations", str(tmp_path / "v2")]
    )
    assert "0 migrated, 8 already current, 1 failed." in capsys.readouterr().out


def test_migrate_on_a_clean_fleet_exits_0(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    for n in range(3):
        make_counter(root, str(n), v1_manifest)
    make_folder(tmp_path / "next", [("init", PARENT_CHILD), ("add_note", ADD_NOTE)])
    assert (
        main(
            ["migrate", str(root), "--workers", "1", "--no-progress", "--migrations", str(tmp_path / "next")]
        )
        == 0
    )
    assert "3 counter file(s): 3 migrated, 0 already current, 0 failed." in capsys.readouterr().out


def test_migrate_in_one_exclusive_transaction_leaves_current_files_byte_for_byte(
    tmp_path: Path, v1_manifest: Manifest, v2_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN files behind and files already current
    root = tmp_path / "counters"
    behind = [make_counter(root, f"behind-{n}", v1_manifest) for n in range(2)]
    current = [make_counter(root, f"current-{n}", v2_manifest) for n in range(2)]
    before = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in current}
    # WHEN migrate runs (the header, history check and migration share one BEGIN EXCLUSIVE)
    code = main(
        ["migrate", str(root), "--workers", "1", "--no-progress", "--migrations", str(tmp_path / "v2")]
    )
    # THEN the behind files are migrated, and the current ones were locked but never written
    assert code == 0
    assert "4 counter file(s): 2 migrated, 2 already current, 0 failed." in capsys.readouterr().out
    assert [file_version(path) for path in behind] == [2, 2]
    assert {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in current} == before
    assert not list(root.rglob("*-journal"))


def test_status_reports_stray_temporaries_of_interrupted_creations(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    path = make_counter(root, "a", v1_manifest)
    from counter_core.paths import temporary_name

    stray = Path(temporary_name(path, pid=4242, token="0badc0de"))
    stray.write_bytes(b"half-built")
    assert main(["status", str(root), "--json", "--migrations", str(tmp_path / "v1")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 1 and report["stray_temporaries"] == [str(stray.relative_to(root))]
    main(["status", str(root), "--migrations", str(tmp_path / "v1")])
    assert (
        "1 stray *.tmp file(s) from interrupted counter creations: safe to delete" in capsys.readouterr().out
    )


# ---------------------------------------------------------------- the walk


def test_one_walk_yields_counter_files_and_build_files_sorted_with_their_type(
    tmp_path: Path, v1_manifest: Manifest
) -> None:
    # GIVEN counters, a FIFO, a symlink and a directory at counter paths, a stray build file, and
    # names that are not counter files (wrong shard, wrong shape)
    root = tmp_path / "counters"
    healthy = [make_counter(root, f"c-{n}", v1_manifest) for n in range(4)]
    odd = {}
    for name in ("fifo", "link", "dir"):
        odd[name] = path = counter_path(root, name)
        path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(odd["fifo"])
    odd["link"].symlink_to(healthy[0])
    odd["dir"].mkdir()
    build = healthy[1].with_name(f"{healthy[1].name}.123-0badcafe.tmp")
    build.write_bytes(b"partial")
    misplaced = healthy[2].parent / healthy[3].name  # a counter's name in another counter's shard
    if misplaced.parent != healthy[3].parent:
        misplaced.write_bytes(healthy[3].read_bytes())
    (healthy[2].parent / "notes.sqlite3").write_text("not a counter")
    # WHEN the fleet walk runs
    entries = list(walk_fleet(root))
    # THEN it yields each counter path and the build file once, sorted by name, typed from the listing
    names = [e.path.name for e in entries]
    assert names == sorted(names)
    expected = {p: True for p in healthy} | {p: False for p in odd.values()}
    assert {e.path: e.regular for e in entries if not e.temporary} == expected
    assert [(e.path, e.regular) for e in entries if e.temporary] == [(build, True)]
    # AND the bounds the SQS worker uses hold: one shard, and strictly after a name
    shard = healthy[0].parent.parent.name
    in_shard = [e.path for e in walk_fleet(root, prefixes=(shard,))]
    assert in_shard == [e.path for e in entries if e.path.parent.parent.name == shard]
    middle = entries[len(entries) // 2].path.name
    assert [e.path.name for e in walk_fleet(root, after=middle)] == [n for n in names if n > middle]


def test_status_reports_a_symlink_and_a_directory_at_counter_paths_without_opening_them(
    tmp_path: Path, v1_manifest: Manifest, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "counters"
    target = make_counter(tmp_path / "elsewhere", "target", v1_manifest)
    before = target.read_bytes()
    link, directory = counter_path(root, "link"), counter_path(root, "dir")
    for path in (link, directory):
        path.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    directory.mkdir()
    assert main(["status", str(root), "--json", "--migrations", str(tmp_path / "v1")]) == 1
    report = json.loads(capsys.readouterr().out)
    details = sorted(item["detail"].split(",")[0] for item in report["attention"])
    assert details == ["a directory", "a symlink"]
    assert {item["state"] for item in report["attention"]} == {"not_a_file"}
    assert target.read_bytes() == before


@pytest.mark.parametrize("command", ["status", "preflight", "migrate"])
def test_a_migrations_folder_that_does_not_exist_is_one_line_naming_it(
    tmp_path: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a counters root and a mistyped --migrations folder
    (tmp_path / "counters").mkdir()
    missing = tmp_path / "generatd"
    # WHEN a fleet command runs with it
    code = main([command, str(tmp_path / "counters"), "--migrations", str(missing)])
    # THEN it exits 2 with one line naming the folder and what to pass (not "run manifest", which
    # would act on the project's own folder)
    assert code == 2
    assert capsys.readouterr().err == (
        f"error: migrations folder {missing} does not exist - pass the folder that holds meta/_journal.json"
        " (the project's is generated)\n"
    )


def test_a_migrations_folder_without_a_manifest_names_the_command_for_that_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a migrations folder as Drizzle Kit leaves it: no manifest.json yet
    (tmp_path / "counters").mkdir()
    folder = tmp_path / "drizzle"
    make_folder(folder, [("init", "CREATE TABLE notes (id INTEGER PRIMARY KEY);")])
    (folder / "manifest.json").unlink()
    # WHEN status runs with it THEN the command it prints builds that folder's manifest
    assert main(["status", str(tmp_path / "counters"), "--migrations", str(folder)]) == 2
    assert capsys.readouterr().err.endswith(
        f" - run `python -m tools.migrations manifest --migrations {folder}`\n"
    )
