"""Diff two schemas into the smallest migration SQLite can run, and say what it would cost.

ALTER TABLE does what it can (RENAME TO, RENAME COLUMN, ADD COLUMN, DROP COLUMN); every other
change is the table rebuild of https://sqlite.org/lang_altertable.html#otheralter (new table, copy,
drop, rename, recreate indexes), bracketed by `PRAGMA foreign_keys=OFF/ON` as Drizzle Kit writes it
(the engine hoists those out of the transaction). Renames are never guessed: they are declared.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import apsw

from tools.migrations.introspect import REBUILD_PREFIX, introspect
from tools.migrations.render import (
    column_sql,
    create_index_sql,
    create_table_sql,
    dquote,
    quote,
    schema_statements,
    string_literal,
)
from tools.migrations.schema import (
    Column,
    Schema,
    SchemaError,
    Table,
    column_key,
    constraints_key,
    defaults_to_null,
    index_key,
    is_constant_default,
    tightenings,
)

_RENAME_PREFIX = "__rename_"  # a swap or chain of renames goes through these names


@dataclass(frozen=True)
class Renames:
    """Declared renames: tables old -> new; columns (table in the schema file, old column) -> new."""

    tables: dict[str, str] = field(default_factory=dict)
    columns: dict[tuple[str, str], str] = field(default_factory=dict)


@dataclass
class Plan:
    """A migration and its costs. Refusals block it always; data loss blocks it unless allowed."""

    statements: list[str] = field(default_factory=list)
    data_loss: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    renamed_tables: dict[str, str] = field(default_factory=dict)  # Drizzle Kit's `_meta` form
    renamed_columns: dict[str, str] = field(default_factory=dict)


def parse_renames(table_args: Sequence[str], column_args: Sequence[str]) -> Renames:
    """`--rename-table OLD=NEW` and `--rename TABLE.OLD=NEW` values; SchemaError for malformed ones."""
    problems: list[str] = []
    tables: dict[str, str] = {}
    columns: dict[tuple[str, str], str] = {}
    for arg in table_args:
        old, sep, new = arg.partition("=")
        if not (sep and old and new) or old == new:
            problems.append(f"--rename-table {arg!r}: expected OLD=NEW with two different table names")
        elif old in tables:
            problems.append(f"--rename-table {arg!r}: table `{old}` is renamed twice - declare it once")
        else:
            tables[old] = new
    for arg in column_args:
        target, sep, new = arg.partition("=")
        table, dot, old = target.partition(".")
        if not (sep and dot and table and old and new) or old == new:
            problems.append(
                f"--rename {arg!r}: expected TABLE.OLD=NEW, e.g. --rename counter_history.amount=delta"
            )
        elif (table, old) in columns:
            problems.append(f"--rename {arg!r}: column `{table}`.`{old}` is renamed twice - declare it once")
        else:
            columns[(table, old)] = new
    if problems:
        raise SchemaError(problems)
    # A column rename may name its table by the old or the new name; keep the new one.
    return Renames(tables, {(tables.get(table, table), old): new for (table, old), new in columns.items()})


def materialize(schema: Schema) -> apsw.Connection:
    """An in-memory database holding `schema` (no rows); the caller closes it."""
    conn = apsw.Connection(":memory:")
    for statement in schema_statements(schema):
        conn.execute(statement)
    return conn


def plan_migration(old: Schema, new: Schema, renames: Renames, *, schema_name: str) -> Plan:
    """The migration from `old` (the last snapshot) to `new` (the schema file). Pure: writes nothing."""
    plan = Plan()
    conn = materialize(old)
    try:
        _apply_renames(conn, old, new, renames, plan, schema_name=schema_name)
        # SQLite rewrote every reference to the renamed names (indexes, foreign keys, checks); diff
        # from what it holds now, so a rename alone never looks like a change.
        renamed = introspect(conn, source="the last snapshot")
    finally:
        conn.close()
    _diff(renamed, new, plan)
    return plan


def _apply_renames(
    conn: apsw.Connection, old: Schema, new: Schema, renames: Renames, plan: Plan, *, schema_name: str
) -> None:
    """Rename tables, then columns, as declared; SQLite rewrites every reference to them.

    A rename may take a name that another declared rename frees (a swap, a chain) or leave its old
    name to a new table or column (archive and recreate: `--rename-table users=legacy_users` with a
    new `users`); either is done in one step.
    """
    problems: list[str] = []
    tables: dict[str, str] = {}
    for before, after in renames.tables.items():
        flag = f"--rename-table {before}={after}"
        if before not in old.tables:
            problems.append(
                f"{flag}: table `{before}` is not in the last snapshot - tables there: {_names(old.tables)}"
            )
        elif after not in new.tables:
            problems.append(
                f"{flag}: table `{after}` is not in {schema_name} - tables there: {_names(new.tables)}"
            )
        elif after in old.tables and after not in renames.tables:
            problems.append(
                f"{flag}: table `{after}` is already in the last snapshot and keeps its name - to move it aside"
                f" in the same step, declare that too (--rename-table {after}=OTHER_NAME), else remove the flag"
            )
        else:
            tables[before] = after
            plan.renamed_tables[dquote(before)] = dquote(after)
    table_statements = _renamed(
        tables, set(old.tables), lambda a, b: f"ALTER TABLE {quote(a)} RENAME TO {quote(b)};"
    )
    _execute(conn, table_statements)
    current = introspect(conn, source="the last snapshot")
    columns: dict[str, dict[str, str]] = {}
    for (table, before), after in renames.columns.items():
        flag = f"--rename {table}.{before}={after}"
        if table not in current.tables or table not in new.tables:
            problems.append(
                f"{flag}: table `{table}` is not in both the last snapshot and {schema_name}"
                f" - tables in both: {_names(set(current.tables) & set(new.tables))}"
            )
            continue
        old_columns, new_columns = current.tables[table].columns, new.tables[table].columns
        if before not in old_columns:
            problems.append(
                f"{flag}: `{table}` has no column `{before}` in the last snapshot - columns: {_names(old_columns)}"
            )
        elif after not in new_columns:
            problems.append(
                f"{flag}: `{table}` has no column `{after}` in {schema_name} - columns: {_names(new_columns)}"
            )
        elif after in old_columns and (table, after) not in renames.columns:
            problems.append(
                f"{flag}: `{table}` already has a column `{after}` in the last snapshot and it keeps its name - to"
                f" move it aside in the same step, declare that too (--rename {table}.{after}=OTHER_NAME), else"
                " remove the flag"
            )
        else:
            columns.setdefault(table, {})[before] = after
            plan.renamed_columns[f"{dquote(table)}.{dquote(before)}"] = f"{dquote(table)}.{dquote(after)}"
    if problems:
        raise SchemaError(problems)
    column_statements: list[str] = []
    for table, pairs in columns.items():
        column_statements += _renamed(
            pairs, set(current.tables[table].columns), functools.partial(_rename_column, table)
        )
    _execute(conn, column_statements)
    plan.statements.extend(table_statements + column_statements)


def _rename_column(table: str, old: str, new: str) -> str:
    return f"ALTER TABLE {quote(table)} RENAME COLUMN {quote(old)} TO {quote(new)};"


def _renamed(pairs: dict[str, str], existing: set[str], statement: Callable[[str, str], str]) -> list[str]:
    """The statements renaming old -> new for every pair, through temporary names where one takes
    a name another frees (a swap or a chain: renaming in place would collide)."""
    if not any(new in existing for new in pairs.values()):
        return [statement(old, new) for old, new in pairs.items()]
    taken = existing | set(pairs.values())
    temporary = {}
    for old in pairs:
        name = f"{_RENAME_PREFIX}{old}"
        while name in taken:
            name += "_"
        taken.add(name)
        temporary[old] = name
    return [statement(old, temporary[old]) for old in pairs] + [
        statement(temporary[old], new) for old, new in pairs.items()
    ]


def _execute(conn: apsw.Connection, statements: list[str]) -> None:
    for statement in statements:
        try:
            conn.execute(statement)
        except apsw.SQLError as exc:
            raise SchemaError([f"{statement} fails: {exc} - check the declared renames"]) from exc


def _names(names: Iterable[str]) -> str:
    listed = sorted(names)
    return ", ".join(listed) if listed else "(none)"


@dataclass(frozen=True)
class _TableChange:
    added: list[str]
    dropped: list[str]
    rebuild: bool


def _diff(old: Schema, new: Schema, plan: Plan) -> None:
    dropped = sorted(set(old.tables) - set(new.tables))
    created = sorted(set(new.tables) - set(old.tables))
    kept = sorted(set(old.tables) & set(new.tables))
    changes = {name: _table_change(old.tables[name], new.tables[name], plan) for name in kept}
    statements = plan.statements
    # Indexes go first and come back last, so none is in the way of a DROP COLUMN or another
    # table's index of the same name.
    for name in kept:
        if not changes[name].rebuild:
            for index_name, index in sorted(old.tables[name].indexes.items()):
                target = new.tables[name].indexes.get(index_name)
                if target is None or index_key(target) != index_key(index):
                    statements.append(f"DROP INDEX {quote(index_name)};")
    referenced = {
        fk.table_to for table in old.tables.values() for fk in table.foreign_keys if fk.table_to != table.name
    }
    for name in dropped:
        plan.data_loss.append(f"table `{name}` would be dropped with all its rows")
        if name in referenced:  # with foreign keys on, DROP TABLE deletes every row first (and cascades)
            statements.extend(
                ["PRAGMA foreign_keys=OFF;", f"DROP TABLE {quote(name)};", "PRAGMA foreign_keys=ON;"]
            )
        else:
            statements.append(f"DROP TABLE {quote(name)};")
    statements.extend(create_table_sql(new.tables[name]) for name in created)
    new_indexes: list[str] = []
    for name in created:
        new_indexes.extend(create_index_sql(i, name) for _, i in sorted(new.tables[name].indexes.items()))
    for name in kept:
        before, after, change = old.tables[name], new.tables[name], changes[name]
        if change.rebuild:
            statements.extend(_rebuild(before, after))
            plan.data_loss.extend(
                f"rebuilding table `{name}` would discard column `{c}`" for c in change.dropped
            )
            new_indexes.extend(create_index_sql(i, name) for _, i in sorted(after.indexes.items()))
            continue
        for column in change.dropped:
            statements.append(f"ALTER TABLE {quote(name)} DROP COLUMN {quote(column)};")
            plan.data_loss.append(f"column `{name}`.`{column}` would be dropped")
        statements.extend(
            f"ALTER TABLE {quote(name)} ADD {column_sql(after.columns[c])};" for c in change.added
        )
        for index_name, index in sorted(after.indexes.items()):
            previous = before.indexes.get(index_name)
            if previous is None or index_key(previous) != index_key(index):
                new_indexes.append(create_index_sql(index, name))
    statements.extend(new_indexes)


def _table_change(before: Table, after: Table, plan: Plan) -> _TableChange:
    """Which columns come and go, and whether ALTER TABLE can do it or the table must be rebuilt."""
    name = after.name
    added = [c for c in after.columns if c not in before.columns]
    dropped = [c for c in before.columns if c not in after.columns]
    rebuild = constraints_key(before) != constraints_key(after)
    for column in after.columns.values():
        previous = before.columns.get(column.name)
        if previous is not None:
            rebuild = rebuild or column_key(previous) != column_key(column)
            _warn_column(name, previous, column, plan)
            continue
        if (
            column.not_null
            and defaults_to_null(column)
            and not (column.primary_key and column.type == "integer")
        ):
            plan.refusals.append(
                f"new column `{name}`.`{column.name}` is NOT NULL without a default, so the rows that already"
                f" exist would have no value for it - add a DEFAULT to `{column.name}` (or drop NOT NULL)"
                " in the schema file"
            )
        # https://sqlite.org/lang_altertable.html#altertabaddcol: what ADD COLUMN cannot add
        rebuild = rebuild or column.primary_key or not is_constant_default(column.default)
    unique_before = set(before.primary_key) | {c for u in before.uniques for c in u.columns}
    # https://sqlite.org/lang_altertable.html#altertabdropcol: what DROP COLUMN cannot drop
    rebuild = rebuild or any(before.columns[c].primary_key or c in unique_before for c in dropped)
    _warn_constraints(before, after, plan)
    return _TableChange(added, dropped, rebuild)


def _warn_column(table: str, before: Column, after: Column, plan: Plan) -> None:
    if before.type.lower() != after.type.lower():
        plan.warnings.append(
            f"column `{table}`.`{after.name}` changes type from `{before.type}` to `{after.type}`: the rebuild"
            " converts stored values to the new type's affinity"
        )


def _warn_constraints(before: Table, after: Table, plan: Plan) -> None:
    for tightening in tightenings(before, after):
        remedy = " - backfill it in a custom migration first" if "NOT NULL" in tightening.subject else ""
        plan.warnings.append(
            f"{tightening.subject}: the migration fails on databases {tightening.breaks_where}{remedy}"
        )


def _rebuild(before: Table, after: Table) -> list[str]:
    """SQLite's 12-step table rebuild, in Drizzle Kit's statement order (its indexes come back last)."""
    name = after.name
    temporary = REBUILD_PREFIX + name
    statements = ["PRAGMA foreign_keys=OFF;", create_table_sql(after, name=temporary)]
    copied = ", ".join(dquote(c) for c in after.columns if c in before.columns)
    if copied:
        statements.append(f"INSERT INTO {quote(temporary)}({copied}) SELECT {copied} FROM {quote(name)};")
    if _autoincrement(before) and _autoincrement(after):
        # Keep AUTOINCREMENT's high-water mark: without this, ids of deleted rows would be handed out
        # again (the copy only sets it to the largest id present). Drizzle Kit loses it.
        statements += [
            f"DELETE FROM sqlite_sequence WHERE name = {string_literal(temporary)};",
            f"INSERT INTO sqlite_sequence (name, seq) SELECT {string_literal(temporary)}, seq FROM sqlite_sequence"
            f" WHERE name = {string_literal(name)};",
        ]
    statements += [
        f"DROP TABLE {quote(name)};",
        f"ALTER TABLE {quote(temporary)} RENAME TO {quote(name)};",
        "PRAGMA foreign_keys=ON;",
    ]
    return statements


def _autoincrement(table: Table) -> bool:
    return any(c.autoincrement for c in table.columns.values())
