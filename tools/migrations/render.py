"""SQL text in Drizzle Kit's style: backtick-quoted names, tab-indented columns, breakpoint markers.

Mirrors drizzle-kit 0.31's SQLite convertors (see tests/fixtures/drizzle), so a history this project
continues from Drizzle Kit reads as one.
"""

from __future__ import annotations

from tools.migrations.schema import Column, Index, Schema, Table
from tools.migrations.sqltext import BREAKPOINT, requalify

CUSTOM_MIGRATION = "-- Custom SQL migration file, put your code below! --"


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def dquote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def string_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def column_sql(column: Column) -> str:
    parts = [quote(column.name)]
    if column.type:
        parts.append(column.type)
    if column.primary_key:
        parts.append("PRIMARY KEY")
    if column.autoincrement:
        parts.append("AUTOINCREMENT")
    if column.default is not None:
        parts.append(f"DEFAULT {column.default}")
    if column.not_null:
        parts.append("NOT NULL")
    return " ".join(parts)


def create_table_sql(table: Table, *, name: str | None = None) -> str:
    """CREATE TABLE ending in a newline, as Drizzle Kit writes it (its breakpoint then sits on its own line)."""
    lines = [f"\t{column_sql(column)}" for column in table.columns.values()]
    if table.primary_key:
        lines.append(f"\tPRIMARY KEY({', '.join(quote(c) for c in table.primary_key)})")
    for fk in sorted(table.foreign_keys, key=lambda fk: fk.name):
        lines.append(
            f"\tFOREIGN KEY ({','.join(quote(c) for c in fk.columns)}) REFERENCES {quote(fk.table_to)}"
            f"({','.join(quote(c) for c in fk.columns_to)}) ON UPDATE {fk.on_update} ON DELETE {fk.on_delete}"
        )
    for unique in sorted(table.uniques, key=lambda u: u.name):
        lines.append(
            f"\tCONSTRAINT {quote(unique.name)} UNIQUE({','.join(quote(c) for c in unique.columns)})"
        )
    for check in sorted(table.checks, key=lambda c: c.name):
        value = check.value if name is None else requalify(check.value, table.name, name, quote_name=dquote)
        lines.append(f"\tCONSTRAINT {dquote(check.name)} CHECK({value})")
    body = ",\n".join(lines)
    return f"CREATE TABLE {quote(name or table.name)} (\n{body}\n);\n"


def create_index_sql(index: Index, table: str) -> str:
    unique = "UNIQUE " if index.unique else ""
    where = f" WHERE {index.where}" if index.where is not None else ""
    columns = ",".join(quote(c) for c in index.columns)
    return f"CREATE {unique}INDEX {quote(index.name)} ON {quote(table)} ({columns}){where};"


def schema_statements(schema: Schema) -> list[str]:
    """Every CREATE TABLE (tables in name order, as Drizzle Kit sorts them), then every CREATE INDEX."""
    tables = [schema.tables[name] for name in sorted(schema.tables)]
    statements = [create_table_sql(table) for table in tables]
    for table in tables:
        statements.extend(create_index_sql(index, table.name) for _, index in sorted(table.indexes.items()))
    return statements


def render_migration(statements: list[str]) -> str:
    """A migration file as Drizzle Kit writes one: breakpoint after each statement, no final newline."""
    return (BREAKPOINT + "\n").join(statements).rstrip("\n")
