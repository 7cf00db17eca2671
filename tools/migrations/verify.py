"""Prove a migration history before anyone ships it: replay it with the real engine and compare.

Two checks, both in memory and both through `counter_core.migrate.ensure_current` (the code that
migrates counter files in production, foreign keys on, rebuilds hoisted out of the transaction):
- `replay`: every migration onto an empty database gives the expected schema;
- `check_data`: the last migration, applied to a database with rows in every table, keeps every
  row and every value of the columns it does not change.
"""

from __future__ import annotations

import difflib
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import apsw

from counter_core.errors import CounterError
from counter_core.manifest import Manifest
from counter_core.migrate import ensure_current
from tools.migrations.diff import Renames
from tools.migrations.introspect import introspect
from tools.migrations.render import quote
from tools.migrations.schema import Column, Schema, Table, canonical

SEED_ROWS = 3


class ReplayFailed(Exception):
    """The engine refused or failed to apply the history; the message is the engine's."""


def replay(manifest: Manifest) -> Schema:
    """The schema an empty database has after every migration of `manifest`."""
    conn = _engine_connection()
    try:
        _migrate(conn, manifest)
        return introspect(conn, source="the replayed migrations")
    finally:
        conn.close()


def schema_difference(actual: Schema, expected: Schema, *, actual_name: str, expected_name: str) -> list[str]:
    """A unified diff of the canonical forms; empty when the schemas are equal."""
    if canonical(actual) == canonical(expected):
        return []
    return list(
        difflib.unified_diff(
            json.dumps(canonical(actual), indent=2, sort_keys=True).splitlines(),
            json.dumps(canonical(expected), indent=2, sort_keys=True).splitlines(),
            fromfile=actual_name,
            tofile=expected_name,
            lineterm="",
        )
    )


@dataclass
class DataReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # tables that could not be given rows


def check_data(manifest: Manifest, renames: Renames) -> DataReport:
    """Apply the last migration to a database with rows; every row and unchanged value must survive."""
    report = DataReport()
    if not manifest.migrations:
        return report
    conn = _engine_connection()
    try:
        _migrate(conn, Manifest(format=manifest.format, migrations=manifest.migrations[:-1]))
        before = introspect(conn, source="the database before the migration")
        report.notes.extend(_seed(conn, before))
        rows = {
            name: [
                dict(zip(table.columns, row, strict=True)) for row in _rows(conn, name, list(table.columns))
            ]
            for name, table in before.tables.items()
        }
        sequences = _sequences(conn)
        _migrate(conn, manifest)
        after = introspect(conn, source="the database after the migration")
        after_sequences = _sequences(conn)
        for name, table in before.tables.items():
            target = renames.tables.get(name, name)
            if target not in after.tables:
                continue  # dropped, as declared with --allow-data-loss
            pairs = _surviving_columns(table.columns, after.tables[target].columns, target, renames)
            expected = Counter(tuple(row[old] for old, _ in pairs) for row in rows[name])
            actual = Counter(_rows(conn, target, [new for _, new in pairs]))
            if expected != actual:
                missing = list((expected - actual).elements())[:3]
                report.problems.append(
                    f"table `{target}`: {len(rows[name])} row(s) before, {sum(actual.values())} after; values of"
                    f" unchanged columns {[new for _, new in pairs]} lost, e.g. {missing}"
                )
            if name in sequences and target in after_sequences and after_sequences[target] != sequences[name]:
                report.problems.append(
                    f"table `{target}`: AUTOINCREMENT sequence was {sequences[name]}, is {after_sequences[target]}"
                    " after the migration (ids of deleted rows would be reused)"
                )
        return report
    finally:
        conn.close()


def _engine_connection() -> apsw.Connection:
    conn = apsw.Connection(":memory:")
    conn.execute("PRAGMA foreign_keys=ON")  # as counter_core.connection opens every counter file
    return conn


def _migrate(conn: apsw.Connection, manifest: Manifest) -> None:
    try:
        ensure_current(conn, manifest, label="the verification database")
    except CounterError as exc:
        raise ReplayFailed(str(exc)) from exc


def _surviving_columns(
    before: dict[str, Column], after: dict[str, Column], table: str, renames: Renames
) -> list[tuple[str, str]]:
    """(old name, new name) of columns kept with the same type: their values must not change."""
    pairs = []
    for old, column in before.items():
        new = renames.columns.get((table, old), old)
        if new in after and after[new].type.lower() == column.type.lower():
            pairs.append((old, new))
    return pairs


def _rows(conn: apsw.Connection, table: str, columns: list[str]) -> list[Any]:
    if not columns:
        return [() for _ in conn.execute(f"SELECT 1 FROM {quote(table)}")]
    return [
        tuple(row) for row in conn.execute(f"SELECT {', '.join(map(quote, columns))} FROM {quote(table)}")
    ]


def _sequences(conn: apsw.Connection) -> dict[str, int]:
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").fetchone() is None:
        return {}
    return {str(name): int(seq) for name, seq in conn.execute("SELECT name, seq FROM sqlite_sequence")}


def _seed(conn: apsw.Connection, schema: Schema) -> list[str]:
    """Insert up to SEED_ROWS rows per table, parents before children; notes for tables left empty.

    Values are synthesized from each column's affinity; a row a constraint rejects is retried with
    defaults and NULLs, and skipped when nothing fits (a CHECK such as `id = 1` allows one row).
    """
    notes = []
    for table in _parents_first(schema):
        error = ""
        for number in range(1, SEED_ROWS + 1):
            for values in _candidates(conn, schema, table.name, number):
                columns = list(values)
                sql = (
                    f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))})"
                    f" VALUES ({', '.join('?' for _ in columns)})"
                    if columns
                    else f"INSERT INTO {quote(table.name)} DEFAULT VALUES"
                )
                try:
                    conn.execute(sql, tuple(values.values()))
                    break
                except (apsw.ConstraintError, apsw.MismatchError, apsw.SQLError) as exc:
                    # SQLError: a CHECK that calls a function our value upsets, e.g. json_extract on non-JSON
                    error = str(exc)
        if conn.execute(f"SELECT 1 FROM {quote(table.name)}").fetchone() is None:
            notes.append(
                f"table `{table.name}` could not be given a row ({error}), so its data was not checked"
            )
    # Pretend rows were deleted, so a migration that resets an AUTOINCREMENT sequence shows.
    if conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").fetchone():
        conn.execute("UPDATE sqlite_sequence SET seq = seq + 1000")
    return notes


def _parents_first(schema: Schema) -> list[Table]:
    ordered: list[str] = []
    remaining = sorted(schema.tables)
    while remaining:
        ready = [
            name
            for name in remaining
            if all(fk.table_to in ordered or fk.table_to == name for fk in schema.tables[name].foreign_keys)
        ] or remaining[:1]  # a cycle: start anywhere; nullable keys take NULL
        ordered.extend(ready)
        remaining = [name for name in remaining if name not in ready]
    return [schema.tables[name] for name in ordered]


def _candidates(conn: apsw.Connection, schema: Schema, table: str, number: int) -> list[dict[str, Any]]:
    columns = schema.tables[table].columns
    full = {name: _synthesize(column, number) for name, column in columns.items()}
    for fk in schema.tables[table].foreign_keys:
        parents = _rows(conn, fk.table_to, list(fk.columns_to))
        if parents:
            full.update(zip(fk.columns, parents[(number - 1) % len(parents)], strict=True))
        elif fk.table_to != table:
            full.update({c: None for c in fk.columns})
    with_defaults = {n: v for n, v in full.items() if columns[n].default is None}
    nullable = {
        n: (None if not columns[n].not_null and not columns[n].primary_key else v) for n, v in full.items()
    }
    both = {n: v for n, v in nullable.items() if columns[n].default is None}
    return [full, with_defaults, nullable, both]


def _synthesize(column: Column, number: int) -> Any:
    """A value of the column's affinity (https://sqlite.org/datatype3.html#determination_of_column_affinity)."""
    declared = column.type.upper()
    if "INT" in declared:
        return number
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return f"{column.name} {number}"
    if not declared or "BLOB" in declared:
        return f"{column.name} {number}".encode()
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return number + 0.5
    return number
