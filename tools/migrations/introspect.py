"""Read a schema out of SQLite itself: load SQL into an in-memory database, then ask its pragmas.

SQLite parses the SQL, so the generator agrees with SQLite about every column and key. What the
pragmas do not report (CHECK constraints, AUTOINCREMENT, the WHERE of a partial index) is read from
the stored `sqlite_schema.sql` with a small lexer. Features the Drizzle Kit snapshot format cannot
carry (views, triggers, collations, generated columns, ...) are refused rather than silently lost.
Read-only for the database it is given.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw

from counter_core.migrate import DRIZZLE_TABLE, MIGRATIONS_TABLE
from tools.migrations.schema import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Schema,
    SchemaError,
    Table,
    UniqueConstraint,
    default_sql,
    foreign_key_name,
    unique_name,
)
from tools.migrations.sqltext import split_statements, tokens

# Names the engine and table rebuilds use; a schema file must not define them.
RESERVED_TABLES = (MIGRATIONS_TABLE, DRIZZLE_TABLE)
REBUILD_PREFIX = "__new_"

_LEX = re.compile(
    r"""
    (?P<space>\s+|--[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>'(?:[^']|'')*'?)
  | (?P<quoted>"(?:[^"]|"")*"?|`(?:[^`]|``)*`?|\[[^\]]*\]?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_SUPPORTED_HINT = (
    "the generator supports tables, columns, indexes, primary, foreign, unique and check constraints"
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    start: int
    end: int

    def word(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


def load_schema_file(path: Path) -> Schema:
    """The schema a declarative SQL file describes; SchemaError lists every problem with its line."""
    try:
        sql = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SchemaError(
            [f"{path}: cannot be read ({exc.strerror}) - pass the schema file with --schema"]
        ) from exc
    except UnicodeDecodeError as exc:
        raise SchemaError([f"{path}: not UTF-8 text - save it as UTF-8"]) from exc
    return load_schema(sql, source=str(path))


def load_schema(sql: str, *, source: str) -> Schema:
    """Run CREATE TABLE/INDEX statements in a fresh in-memory database and introspect the result."""
    conn = apsw.Connection(":memory:")
    try:
        problems: list[str] = []
        for statement in split_statements(sql):
            problem = _refuse_statement(tokens(statement.text))
            if problem is None:
                try:
                    conn.execute(statement.text)
                except apsw.Error as exc:
                    problem = f"{exc} - fix the statement"
            if problem is not None:
                problems.append(f"{source}:{statement.line}: {problem}")
        for (name,) in conn.execute(
            f"SELECT name FROM sqlite_schema WHERE type = 'table' AND name IN ({', '.join('?' * len(RESERVED_TABLES))})",
            RESERVED_TABLES,
        ):
            problems.append(
                f"{source}: table name `{name}` is reserved for the migration engine - rename the table"
            )
        if problems:
            raise SchemaError(problems)
        return introspect(conn, source=source)
    finally:
        conn.close()


def _refuse_statement(head: list[str]) -> str | None:
    words = [t for t in head[:6] if t not in ("IF", "NOT", "EXISTS", "UNIQUE")]
    if words[:2] in (["CREATE", "TABLE"], ["CREATE", "INDEX"]):
        return None
    if head[:1] == ["CREATE"]:
        what = " ".join(head[:3] if head[1:2] in (["TEMP"], ["TEMPORARY"], ["VIRTUAL"]) else head[:2])
        return f"{what} is not supported - {_SUPPORTED_HINT}"
    return (
        f"{head[0] if head else '?'} does not belong in the schema file: it holds only CREATE TABLE and CREATE INDEX statements"
        " - put data changes in a custom migration (`python -m tools.migrations generate --custom --name NAME`)"
    )


def introspect(conn: apsw.Connection, *, source: str) -> Schema:
    """The user tables of `conn` (engine bookkeeping and sqlite_* tables left out). Read-only."""
    problems: list[str] = []
    names: list[str] = []
    for name, kind, without_rowid, strict in conn.execute(
        "SELECT name, type, wr, strict FROM pragma_table_list WHERE schema = 'main' ORDER BY name"
    ):
        if name.startswith("sqlite_") or name in RESERVED_TABLES:
            continue
        if kind != "table":
            problems.append(f"{source}: {kind} `{name}` is not supported - {_SUPPORTED_HINT}")
        elif without_rowid or strict:
            option = "WITHOUT ROWID" if without_rowid else "STRICT"
            problems.append(f"{source}: table `{name}` is {option}, which is not supported - remove {option}")
        elif name.startswith(REBUILD_PREFIX):
            problems.append(
                f"{source}: table name `{name}` starts with `{REBUILD_PREFIX}`, which table rebuilds use"
                " - rename the table"
            )
        else:
            names.append(name)
    for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger' ORDER BY name"):
        problems.append(f"{source}: trigger `{name}` is not supported - {_SUPPORTED_HINT}")
    tables: dict[str, Table] = {}
    for name in names:
        table, found = _table(conn, name, set(names), source=source)
        tables[name] = table
        problems.extend(found)
    if not problems:
        try:
            conn.execute("PRAGMA foreign_key_check").fetchall()
        except apsw.SQLError as exc:  # "foreign key mismatch": the parent key is not unique
            problems.append(
                f"{source}: {exc} - a foreign key must reference the parent's primary key or unique columns"
            )
    if problems:
        raise SchemaError(problems)
    return Schema(tables)


def _rows(conn: apsw.Connection, sql: str, *bindings: Any) -> list[tuple[Any, ...]]:
    return conn.execute(sql, bindings).fetchall()


def _value(conn: apsw.Connection, sql: str, *bindings: Any) -> Any:
    row = conn.execute(sql, bindings).fetchone()
    return None if row is None else row[0]


def _table(conn: apsw.Connection, name: str, all_tables: set[str], *, source: str) -> tuple[Table, list[str]]:
    problems: list[str] = []
    where = f"{source}: table `{name}`"
    sql = _value(conn, "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", name)
    parsed = _parse_table(sql, name)
    problems.extend(f"{where}: {p}" for p in parsed.problems)
    xinfo = _rows(
        conn,
        'SELECT name, type, "notnull", dflt_value, pk, hidden FROM pragma_table_xinfo(?) ORDER BY cid',
        name,
    )
    pk_columns = [row[0] for row in sorted((r for r in xinfo if r[4]), key=lambda r: r[4])]
    columns: dict[str, Column] = {}
    for column, declared, not_null, default, pk, hidden in xinfo:
        if hidden:
            problems.append(
                f"{where}: generated column `{column}` is not supported - store the value instead"
            )
            continue
        columns[column] = Column(
            name=column,
            type=declared.lower(),
            primary_key=bool(pk) and len(pk_columns) == 1,
            not_null=bool(not_null),
            autoincrement=bool(pk) and parsed.autoincrement,
            default=None if default is None else default_sql(default),
        )
    foreign_keys, found = _foreign_keys(conn, name, all_tables)
    problems.extend(f"{where}: {p}" for p in found)
    indexes: dict[str, Index] = {}
    uniques: list[UniqueConstraint] = []
    created = dict(
        _rows(conn, "SELECT name, rowid FROM sqlite_schema WHERE type = 'index' AND tbl_name = ?", name)
    )
    for index_name, unique, origin, partial in _rows(
        conn, 'SELECT name, "unique", origin, partial FROM pragma_index_list(?)', name
    ):
        keys = _rows(
            conn,
            'SELECT name, "desc", coll, cid FROM pragma_index_xinfo(?) WHERE key ORDER BY seqno',
            index_name,
        )
        plain = all(cid >= 0 and not desc and coll.upper() == "BINARY" for _, desc, coll, cid in keys)
        if origin == "c" and not plain:  # constraints' DESC and COLLATE are reported by _parse_table
            problems.append(
                f"{where}: index `{index_name}` uses an expression, DESC or COLLATE, which the generator does not"
                " support"
                " - index plain columns"
            )
            continue
        index_columns = tuple(row[0] for row in keys)
        if origin == "u":
            uniques.append(UniqueConstraint(unique_name(name, index_columns), index_columns))
        elif origin == "c":
            index_sql = _value(conn, "SELECT sql FROM sqlite_schema WHERE name = ?", index_name)
            indexes[index_name] = Index(
                index_name, index_columns, bool(unique), _index_where(index_sql) if partial else None
            )
    table = Table(
        name=name,
        columns=columns,
        # Indexes, foreign keys and checks in the order they were declared, as drizzle-kit lists
        # them in snapshots (SQL files sort them by name; comparisons ignore order).
        indexes=dict(sorted(indexes.items(), key=lambda item: created[item[0]])),
        foreign_keys=tuple(reversed(foreign_keys)),  # pragma_foreign_key_list numbers them last first
        primary_key=tuple(pk_columns) if len(pk_columns) > 1 else (),
        uniques=tuple(sorted(uniques, key=lambda u: u.name)),
        checks=parsed.checks,
    )
    return table, problems


def _foreign_keys(
    conn: apsw.Connection, name: str, all_tables: set[str]
) -> tuple[list[ForeignKey], list[str]]:
    grouped: dict[int, list[tuple[str, str, str | None, str, str]]] = {}
    for fk_id, table_to, column, column_to, on_update, on_delete in conn.execute(
        'SELECT id, "table", "from", "to", on_update, on_delete FROM pragma_foreign_key_list(?) ORDER BY id, seq',
        (name,),
    ):
        grouped.setdefault(fk_id, []).append((table_to, column, column_to, on_update, on_delete))
    by_lower = {t.lower(): t for t in all_tables}
    result: list[ForeignKey] = []
    problems: list[str] = []
    for rows in grouped.values():
        table_to = by_lower.get(rows[0][0].lower())
        if table_to is None:
            problems.append(
                f"foreign key references table `{rows[0][0]}`, which the schema does not define - add it"
            )
            continue
        parent = {
            r[0].lower(): r[0] for r in conn.execute("SELECT name FROM pragma_table_xinfo(?)", (table_to,))
        }
        if rows[0][2] is None:  # REFERENCES parent without columns: the parent's primary key
            to = tuple(
                r[0]
                for r in conn.execute(
                    "SELECT name FROM pragma_table_xinfo(?) WHERE pk ORDER BY pk", (table_to,)
                )
            )
        else:
            to = tuple(parent.get(str(r[2]).lower(), str(r[2])) for r in rows)
        columns = tuple(r[1] for r in rows)
        result.append(
            ForeignKey(
                name=foreign_key_name(name, columns, table_to, to),
                columns=columns,
                table_to=table_to,
                columns_to=to,
                on_update=rows[0][3].lower(),
                on_delete=rows[0][4].lower(),
            )
        )
    return result, problems


@dataclass(frozen=True)
class _ParsedTable:
    checks: tuple[CheckConstraint, ...]
    autoincrement: bool
    problems: tuple[str, ...]


def _lex(sql: str) -> list[_Tok]:
    return [
        _Tok(m.lastgroup or "", m.group(), m.start(), m.end())
        for m in _LEX.finditer(sql)
        if m.lastgroup != "space"
    ]


def _unquote(tok: _Tok) -> str:
    if tok.kind != "quoted":
        return tok.text
    inner = tok.text[1:-1]
    return inner.replace(tok.text[0] * 2, tok.text[0]) if tok.text[0] in '"`' else inner


def _closing(toks: list[_Tok], opening: int) -> int:
    """Index of the ")" matching the "(" at `opening`."""
    depth = 0
    for position in range(opening, len(toks)):
        if toks[position].text == "(" and toks[position].kind == "other":
            depth += 1
        elif toks[position].text == ")" and toks[position].kind == "other":
            depth -= 1
            if depth == 0:
                return position
    return len(toks) - 1


def _definitions(toks: list[_Tok]) -> Iterator[list[_Tok]]:
    """The column definitions and table constraints between CREATE TABLE's outer parentheses."""
    opening = next(i for i, t in enumerate(toks) if t.text == "(" and t.kind == "other")
    closing = _closing(toks, opening)
    depth = 0
    current: list[_Tok] = []
    for tok in toks[opening + 1 : closing]:
        if tok.kind == "other" and tok.text in "()":
            depth += 1 if tok.text == "(" else -1
        if depth == 0 and tok.kind == "other" and tok.text == ",":
            yield current
            current = []
        else:
            current.append(tok)
    if current:
        yield current


_TABLE_CONSTRAINT = {"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"}


def _parse_table(sql: str, table: str) -> _ParsedTable:
    toks = _lex(sql)
    checks: list[tuple[str | None, str, str | None]] = []  # (name, expression, column)
    autoincrement = False
    problems: list[str] = []
    for definition in _definitions(toks):
        column = None if definition[0].word() in _TABLE_CONSTRAINT else _unquote(definition[0])
        depth = 0
        words: list[str] = []
        for position, tok in enumerate(definition):
            if tok.kind == "other" and tok.text in "()":
                depth += 1 if tok.text == "(" else -1
            if depth == 0 or column is None:
                words.append(tok.word())
            if tok.word() == "CHECK" and depth == 0 and position + 1 < len(definition):
                end = _closing(definition, position + 1)
                expression = sql[definition[position + 1].end : definition[end].start].strip()
                named = position >= 2 and definition[position - 2].word() == "CONSTRAINT"
                checks.append((_unquote(definition[position - 1]) if named else None, expression, column))
        autoincrement = autoincrement or "AUTOINCREMENT" in words
        unsupported = sorted(
            {w for w in words if w in ("COLLATE", "DEFERRABLE", "ASC", "DESC")}
            | ({"ON CONFLICT"} if " ON CONFLICT " in f" {' '.join(words)} " else set())
        )
        # Words inside CHECK(...) of a table constraint are expression words, not options.
        if column is None and definition[0].word() in ("CHECK", "CONSTRAINT") and "CHECK" in words:
            unsupported = []
        if unsupported:
            subject = f"column `{column}`" if column is not None else "a table constraint"
            problems.append(
                f"{subject} uses {' and '.join(unsupported)}, which the generator does not support - remove it"
            )
    return _ParsedTable(_name_checks(table, checks), autoincrement, tuple(problems))


def _name_checks(table: str, found: list[tuple[str | None, str, str | None]]) -> tuple[CheckConstraint, ...]:
    """Unnamed checks get `<table>_<column>_check` or `<table>_check`, made unique with a number."""
    taken = {name for name, _, _ in found if name}
    result: list[CheckConstraint] = []
    for name, expression, column in found:
        if not name:
            base = f"{table}_{column}_check" if column is not None else f"{table}_check"
            name, number = base, 1
            while name in taken:
                number += 1
                name = f"{base}_{number}"
            taken.add(name)
        result.append(CheckConstraint(name, expression))
    return tuple(result)


def _index_where(sql: str) -> str | None:
    toks = _lex(sql)
    depth = 0
    for tok in toks:
        if tok.kind == "other" and tok.text in "()":
            depth += 1 if tok.text == "(" else -1
        elif depth == 0 and tok.word() == "WHERE":
            return sql[tok.end :].strip().rstrip(";").strip()
    return None
