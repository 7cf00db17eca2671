"""Introspection and Drizzle Kit's snapshot format: what SQLite says, in the shape Drizzle Kit writes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.migration_folders import DRIZZLE_FOLDER
from tools.migrations.introspect import load_schema
from tools.migrations.schema import CheckConstraint, Column, canonical, default_sql, normalize_sql
from tools.migrations.snapshot import parse_snapshot, render_snapshot, snapshot_data

DRIZZLE_0002_SQL = """CREATE TABLE parents (id integer PRIMARY KEY NOT NULL, name text NOT NULL DEFAULT 'unnamed');
CREATE TABLE children (
    id integer PRIMARY KEY NOT NULL,
    parent_id integer NOT NULL REFERENCES parents ON DELETE CASCADE,
    label text,
    note text
);
CREATE INDEX children_parent_id_idx ON children (parent_id);"""


def drizzle_snapshot(number: int) -> dict[str, Any]:
    return json.loads((DRIZZLE_FOLDER / "meta" / f"{number:04d}_snapshot.json").read_text())


@pytest.mark.parametrize("number", [0, 1, 2, 3])
def test_drizzle_snapshots_read_and_write_back_unchanged(number: int) -> None:
    data = drizzle_snapshot(number)
    schema = parse_snapshot(data, source="fixture")
    written = snapshot_data(
        schema,
        snapshot_id=data["id"],
        prev_id=data["prevId"],
        renamed_tables=data["_meta"]["tables"],
        renamed_columns=data["_meta"]["columns"],
    )
    assert written == data


def test_written_snapshots_use_drizzle_kits_key_order_and_formatting() -> None:
    data = drizzle_snapshot(0)
    written = render_snapshot(
        snapshot_data(
            parse_snapshot(data, source="fixture"),
            snapshot_id=data["id"],
            prev_id=data["prevId"],
            renamed_tables={},
            renamed_columns={},
        )
    )
    assert written == (DRIZZLE_FOLDER / "meta" / "0000_snapshot.json").read_text()


def test_introspected_sql_gives_the_snapshot_drizzle_kit_wrote() -> None:
    data = drizzle_snapshot(2)
    schema = load_schema(DRIZZLE_0002_SQL, source="schema.sql")
    written = snapshot_data(schema, snapshot_id="x", prev_id="y", renamed_tables={}, renamed_columns={})
    assert written["tables"] == data["tables"]
    assert canonical(schema) == canonical(parse_snapshot(data, source="fixture"))


def test_columns_defaults_and_autoincrement() -> None:
    schema = load_schema(
        "CREATE TABLE t (\n  seq INTEGER PRIMARY KEY AUTOINCREMENT,\n  a NUMERIC DEFAULT (1 + 2),\n"
        "  b TEXT DEFAULT CURRENT_TIMESTAMP,\n  c REAL DEFAULT -1.5,\n  d DEFAULT 'it''s',\n  e INT DEFAULT 7\n);",
        source="s",
    )
    columns = schema.tables["t"].columns
    assert columns["seq"] == Column("seq", "integer", primary_key=True, autoincrement=True)
    assert [columns[c].default for c in "abcde"] == ["(1 + 2)", "CURRENT_TIMESTAMP", "-1.5", "'it''s'", "7"]
    assert columns["d"].type == ""
    json_columns = snapshot_data(schema, snapshot_id="x", prev_id="y", renamed_tables={}, renamed_columns={})[
        "tables"
    ]["t"]["columns"]
    # Drizzle Kit writes numbers as JSON numbers and SQL text as strings.
    assert [json_columns[c]["default"] for c in "abcde"] == [
        "(1 + 2)",
        "CURRENT_TIMESTAMP",
        -1.5,
        "'it''s'",
        7,
    ]


def test_check_constraints_are_named_like_drizzle_would_need_them() -> None:
    schema = load_schema(
        "CREATE TABLE t (\n  a INTEGER CHECK (a > 0) CHECK (a < 9),\n  b TEXT CONSTRAINT b_short CHECK (length(b) < 5),"
        '\n  "check" INTEGER,\n  CHECK (a <> b)\n);',
        source="s",
    )
    # in declaration order, as drizzle-kit lists them
    assert schema.tables["t"].checks == (
        CheckConstraint("t_a_check", "a > 0"),
        CheckConstraint("t_a_check_2", "a < 9"),
        CheckConstraint("b_short", "length(b) < 5"),
        CheckConstraint("t_check", "a <> b"),
    )
    assert list(schema.tables["t"].columns) == ["a", "b", "check"]


def test_composite_keys_uniques_and_foreign_keys() -> None:
    schema = load_schema(
        "CREATE TABLE p (a TEXT, b TEXT, PRIMARY KEY (a, b));\n"
        "CREATE TABLE c (x TEXT, y TEXT, z TEXT UNIQUE, UNIQUE (x, y),"
        " FOREIGN KEY (x, y) REFERENCES P (A, B) ON UPDATE CASCADE);",
        source="s",
    )
    p, c = schema.tables["p"], schema.tables["c"]
    assert p.primary_key == ("a", "b") and not any(col.primary_key for col in p.columns.values())
    assert [(u.name, u.columns) for u in c.uniques] == [("c_x_y_unique", ("x", "y")), ("c_z_unique", ("z",))]
    [fk] = c.foreign_keys
    # Names are resolved to the parent's spelling.
    assert (fk.name, fk.table_to, fk.columns_to, fk.on_update, fk.on_delete) == (
        "c_x_y_p_a_b_fk",
        "p",
        ("a", "b"),
        "cascade",
        "no action",
    )


def test_partial_index_keeps_its_where() -> None:
    schema = load_schema(
        "CREATE TABLE t (a INTEGER);\nCREATE UNIQUE INDEX t_a ON t (a) WHERE a > 0 AND (a < 10);", source="s"
    )
    index = schema.tables["t"].indexes["t_a"]
    assert (index.columns, index.unique, index.where) == (("a",), True, "a > 0 AND (a < 10)")


@pytest.mark.parametrize(
    ("left", "right"),
    [("a >= 0", '"A">=0'), ("length(x) > 0 -- why\n", "LENGTH( x )>0"), ("(1)", "( 1 )")],
)
def test_normalized_sql_ignores_what_sqlite_ignores(left: str, right: str) -> None:
    assert normalize_sql(left) == normalize_sql(right)


def test_normalized_sql_keeps_string_case() -> None:
    assert normalize_sql("x = 'A'") != normalize_sql("x = 'a'")


@pytest.mark.parametrize(
    ("reported", "written"),
    [
        ("1+2", "(1+2)"),
        ("(1) + (2)", "((1) + (2))"),
        ("(1 + 2)", "((1 + 2))"),  # written as DEFAULT ((1 + 2)), as drizzle-kit would keep it
        ("'a'", "'a'"),
        ("('x')", "(('x'))"),
        ('"abc"', "'abc'"),  # SQLite's legacy double-quoted string default
        ('"it\'s ""q"""', "'it''s \"q\"'"),
        ("false", "false"),
        ("-5", "-5"),
        ("NULL", "NULL"),
    ],
)
def test_default_sql_wraps_expressions(reported: str, written: str) -> None:
    assert default_sql(reported) == written


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("a TEXT DEFAULT 'x'", "'x'"),
        ("a TEXT DEFAULT ('x')", "'x'"),
        ("a TEXT DEFAULT (('x'))", "(('x'))"),
        ('a TEXT DEFAULT "x"', "'x'"),
        ("a INTEGER DEFAULT (1 + 2)", "(1 + 2)"),
        ("a INTEGER DEFAULT ((1 + 2))", "((1 + 2))"),
    ],
)
def test_every_default_form_sqlite_accepts_round_trips_and_compares_alike(sql: str, expected: str) -> None:
    # GIVEN a default in any form SQLite accepts
    schema = load_schema(f"CREATE TABLE t ({sql});", source="s")
    # THEN it reads back as text that is valid after DEFAULT, and SQLite accepts it again unchanged
    assert schema.tables["t"].columns["a"].default == expected
    # AND every spelling of the same value compares equal
    declared = sql.split(" ", 2)[1]
    simplest = "(1 + 2)" if "1 + 2" in sql else "'x'"
    plain = load_schema(f"CREATE TABLE t (a {declared} DEFAULT {simplest});", source="s")
    assert canonical(plain) == canonical(schema)
    again = load_schema(f"CREATE TABLE t (a {declared} DEFAULT {expected});", source="s")
    assert canonical(again) == canonical(schema)


@pytest.mark.parametrize(
    ("sql_default", "json_default"),
    [
        ("false", False),
        ("true", True),
        ("FALSE", False),
        ("0", 0),
        ("-5", -5),
        ("2", 2),
        ("1.5", 1.5),
        ("2.0", 2.0),
        ("1e-07", 1e-07),
        ("9007199254740993", "9007199254740993"),
        ("'false'", "'false'"),
    ],
)
def test_defaults_are_written_as_drizzle_kit_writes_them(sql_default: str, json_default: object) -> None:
    schema = load_schema(f"CREATE TABLE t (a integer DEFAULT {sql_default});", source="s")
    data = snapshot_data(schema, snapshot_id="x", prev_id="y", renamed_tables={}, renamed_columns={})
    written = data["tables"]["t"]["columns"]["a"]["default"]
    assert written == json_default and type(written) is type(json_default)
    # and read back, the snapshot describes the same schema
    assert canonical(parse_snapshot(data, source="x")) == canonical(schema)
