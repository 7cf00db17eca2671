"""The schema as the generator sees it: tables, columns, indexes and constraints, and what "equal" means.

One model serves the schema file (introspected by SQLite), Drizzle Kit snapshots and replayed
databases, so all three compare the same way. `canonical()` is the comparison: it ignores what
SQLite ignores (constraint names, column order, identifier case in expressions, whitespace).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tools.migrations.sqltext import tokens

# Column order is not compared: ADD COLUMN can only append, and Drizzle Kit ignores order too, so
# a schema file that lists a new column in the middle needs no table rebuild.


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # declared type, lower-cased as Drizzle Kit writes it ("" when none was declared)
    primary_key: bool = False  # single-column primary key; composite keys live on the table
    not_null: bool = False
    autoincrement: bool = False
    default: str | None = None  # SQL text of the default; expressions are kept in parentheses


@dataclass(frozen=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None  # the WHERE of a partial index, SQL text


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    table_to: str
    columns_to: tuple[str, ...]
    on_update: str = "no action"
    on_delete: str = "no action"


@dataclass(frozen=True)
class UniqueConstraint:
    name: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class CheckConstraint:
    name: str
    value: str  # the expression inside CHECK(...)


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Column]
    indexes: dict[str, Index] = field(default_factory=dict)
    foreign_keys: tuple[ForeignKey, ...] = ()
    primary_key: tuple[str, ...] = ()  # composite primary key (two or more columns), else ()
    uniques: tuple[UniqueConstraint, ...] = ()
    checks: tuple[CheckConstraint, ...] = ()


@dataclass(frozen=True)
class Schema:
    tables: dict[str, Table] = field(default_factory=dict)


class SchemaError(Exception):
    """A schema file or snapshot cannot be used; `problems` are `where: what - what to do` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def normalize_sql(text: str) -> str:
    """SQL text compared as SQLite reads it: no comments or spacing, identifiers case-folded."""
    return " ".join(tok if tok.startswith("'") else tok.upper() for tok in tokens(text))


def column_key(column: Column) -> dict[str, Any]:
    """What makes two column definitions the same; a difference needs a rebuild."""
    return {
        "type": " ".join(column.type.lower().split()),
        "primaryKey": column.primary_key,
        "notNull": column.not_null,
        "autoincrement": column.autoincrement,
        "default": None if column.default is None else normalize_sql(_unwrapped(column.default)),
    }


def index_key(index: Index) -> dict[str, Any]:
    return {
        "columns": list(index.columns),
        "unique": index.unique,
        "where": None if index.where is None else normalize_sql(index.where),
    }


def constraints_key(table: Table) -> dict[str, Any]:
    """Table-level constraints, by content (their names are only labels in SQLite)."""
    return {
        "primaryKey": list(table.primary_key),
        "foreignKeys": sorted(
            [list(fk.columns), fk.table_to, list(fk.columns_to), fk.on_update, fk.on_delete]
            for fk in table.foreign_keys
        ),
        "unique": sorted(list(u.columns) for u in table.uniques),
        "checks": sorted(normalize_sql(c.value) for c in table.checks),
    }


@dataclass(frozen=True)
class Tightening:
    """A rule a table gains that rows already stored may break: the migration fails where they do."""

    subject: str  # "column `t`.`a` becomes NOT NULL", "table `t` gains CHECK (a > 0)"
    breaks_where: str  # "where it holds NULL", "whose rows violate it"


def tightenings(
    before: Table, after: Table, *, renamed_columns: Mapping[str, str] | None = None
) -> list[Tightening]:
    """What `after` demands of existing rows that `before` did not. Pure.

    Compared by content, not by name: a unique index recreated under a new name (a table rename)
    or a check that merely moved demands nothing new. `renamed_columns` maps a column of `after` to
    its name in `before` when the two are not already aligned.
    """
    old = dict(renamed_columns or {})

    def was(columns: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(old.get(c, c) for c in columns)

    def null_in_every_row(columns: set[str]) -> bool:
        """Only new columns without a default: every existing row holds NULL there, which passes
        UNIQUE (NULLs are distinct), FOREIGN KEY and CHECK (NULL is not false)."""
        return bool(columns) and all(
            old.get(c, c) not in before.columns and defaults_to_null(after.columns[c]) for c in columns
        )

    found: list[Tightening] = []
    for column in after.columns.values():
        previous = before.columns.get(old.get(column.name, column.name))
        if previous is not None and column.not_null and not previous.not_null:
            found.append(
                Tightening(f"column `{after.name}`.`{column.name}` becomes NOT NULL", "where it holds NULL")
            )
    unique_before = {(u.columns, None) for u in before.uniques} | {
        (i.columns, None if i.where is None else normalize_sql(i.where))
        for i in before.indexes.values()
        if i.unique
    }
    unique_before |= {(key, None) for key in [_primary_key(before)] if key}
    gained = [(f"unique constraint ({', '.join(u.columns)})", u.columns, None) for u in after.uniques] + [
        (f"unique index `{i.name}` ({', '.join(i.columns)})", i.columns, i.where)
        for i in after.indexes.values()
        if i.unique
    ]
    for what, columns, where in gained:
        if null_in_every_row(set(columns)):
            continue
        if (was(columns), None if where is None else normalize_sql(where)) not in unique_before:
            found.append(Tightening(f"table `{after.name}` gains {what}", "where two rows share a value"))
    checks_before = {normalize_sql(c.value) for c in before.checks}
    by_lower = {c.lower(): c for c in after.columns}  # identifiers ignore case; tokens() upper-cases words
    for c in after.checks:
        if normalize_sql(c.value) in checks_before:
            continue
        read = {by_lower[t.lower()] for t in tokens(c.value) if t.lower() in by_lower}
        new_only = bool(read) and all(old.get(name, name) not in before.columns for name in read)
        # Columns the migration adds hold their default in every existing row: a check that reads only
        # those, and holds for the defaults, holds for every row there is.
        if new_only and _holds_on_defaults(c.value, [after.columns[name] for name in sorted(read)]):
            continue
        found.append(Tightening(f"table `{after.name}` gains CHECK ({c.value})", "whose rows violate it"))
    keys_before = {(fk.columns, fk.table_to, fk.columns_to) for fk in before.foreign_keys}
    found.extend(
        Tightening(
            f"table `{after.name}` gains FOREIGN KEY ({', '.join(fk.columns)}) REFERENCES"
            f" `{fk.table_to}` ({', '.join(fk.columns_to)})",
            "with rows that have no parent",
        )
        for fk in after.foreign_keys
        if not null_in_every_row(set(fk.columns))
        and (was(fk.columns), fk.table_to, fk.columns_to) not in keys_before
        and (was(fk.columns), before.name if fk.table_to == after.name else fk.table_to, fk.columns_to)
        not in keys_before
    )
    key = _primary_key(after)
    if key and was(key) != _primary_key(before):
        found.append(
            Tightening(
                f"table `{after.name}` gains PRIMARY KEY ({', '.join(key)})", "with duplicate or NULL keys"
            )
        )
    return found


def _holds_on_defaults(check: str, columns: list[Column]) -> bool:
    """Whether CHECK (`check`) holds (true or NULL) for a row holding each column's default, as SQLite
    evaluates it, on a one-row table in memory; False when SQLite cannot evaluate it there."""
    import apsw

    defined = ", ".join(
        f'"{c.name}" {c.type}' + ("" if defaults_to_null(c) else f" DEFAULT {c.default}") for c in columns
    )
    conn = apsw.Connection(":memory:")
    try:
        conn.execute(f"CREATE TABLE probe ({defined}, CHECK ({check}))")
        conn.execute("INSERT INTO probe DEFAULT VALUES")
    except apsw.Error:  # the check fails for the defaults, or reads what this table does not have
        return False
    finally:
        conn.close()
    return True


def defaults_to_null(column: Column) -> bool:
    """No default, or DEFAULT NULL: a row that does not set the column holds NULL."""
    return column.default is None or column.default.upper() == "NULL"


def _primary_key(table: Table) -> tuple[str, ...]:
    return table.primary_key or tuple(c.name for c in table.columns.values() if c.primary_key)


def canonical(schema: Schema) -> dict[str, Any]:
    """JSON-able form in which two schemas are equal exactly when SQLite would treat them alike."""
    return {
        name: {
            "columns": {c.name: column_key(c) for c in table.columns.values()},
            **constraints_key(table),
            "indexes": {i.name: index_key(i) for i in table.indexes.values()},
        }
        for name, table in sorted(schema.tables.items())
    }


def foreign_key_name(table: str, columns: tuple[str, ...], table_to: str, columns_to: tuple[str, ...]) -> str:
    # Drizzle Kit's naming, so snapshots of the same schema agree with the ones it writes.
    return f"{table}_{'_'.join(columns)}_{table_to}_{'_'.join(columns_to)}_fk"


def unique_name(table: str, columns: tuple[str, ...]) -> str:
    return f"{table}_{'_'.join(columns)}_unique"


def primary_key_name(table: str, columns: tuple[str, ...]) -> str:
    return f"{table}_{'_'.join(columns)}_pk"


_LITERAL = re.compile(
    r"""[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?0[xX][0-9a-fA-F]+|'(?:[^']|'')*'|[xX]'[0-9a-fA-F]*'
      |(?i:null|true|false|current_time|current_date|current_timestamp)""",
    re.VERBOSE,
)


_DOUBLE_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def default_sql(text: str) -> str:
    """A default as SQLite reports it (pragma table_xinfo), written back as it follows DEFAULT.

    SQLite reports `DEFAULT (1+2)` as `1+2` (one pair of parentheses dropped), which is not valid
    after DEFAULT: every expression gets one pair back, so `DEFAULT ((x))` stays `((x))`, as
    drizzle-kit writes it. Literals and CURRENT_* keywords stay bare. A legacy double-quoted string,
    `DEFAULT "abc"` (SQLite takes it for 'abc'), becomes the string literal it is: re-emitted as
    written, or in parentheses, SQLite would reject it as "not constant".
    """
    text = text.strip()
    if _DOUBLE_QUOTED.fullmatch(text):
        return "'" + text[1:-1].replace('""', '"').replace("'", "''") + "'"
    if _LITERAL.fullmatch(text):
        return text
    return f"({text})"


def _unwrapped(text: str) -> str:
    """A default without redundant outer parentheses: `(('x'))`, `('x')` and `'x'` are one value."""
    text = text.strip()
    while text.startswith("(") and _balanced_outer(text):
        text = text[1:-1].strip()
    return text


def is_constant_default(text: str | None) -> bool:
    """True for defaults ALTER TABLE ADD COLUMN accepts (https://sqlite.org/lang_altertable.html#altertabaddcol)."""
    if text is None:
        return True
    return bool(_LITERAL.fullmatch(text)) and text.lower() not in (
        "current_time",
        "current_date",
        "current_timestamp",
    )


def _balanced_outer(text: str) -> bool:
    """True when the first "(" closes at the very end: `(a) + (b)` is not wrapped, `(a + b)` is."""
    depth = 0
    quote = ""
    for position, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return position == len(text) - 1
    return False
