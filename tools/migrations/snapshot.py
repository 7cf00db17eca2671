"""Drizzle Kit's SQLite snapshots (`meta/NNNN_snapshot.json`, version "6"): read, write, chain.

Each migration has a snapshot of the schema after it; `prevId` links it to the one before, so the
history is a chain that starts at the zero UUID. The generator reads snapshots Drizzle Kit wrote
and writes ones Drizzle Kit can read, so either tool can continue the other's history.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tools.migrations.diff import materialize
from tools.migrations.folder import FolderError, JournalEntry
from tools.migrations.introspect import introspect
from tools.migrations.schema import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Schema,
    SchemaError,
    Table,
    UniqueConstraint,
    primary_key_name,
)

ZERO_ID = "00000000-0000-0000-0000-000000000000"
VERSION = "6"
_READABLE_VERSIONS = ("5", "6")
_INT_DEFAULT_LIMIT = 2**53  # JSON numbers beyond this lose precision in JavaScript (Drizzle Kit)


def snapshot_path(folder: Path, tag: str) -> Path:
    """Drizzle Kit names a snapshot by the tag's number: `0003_backfill` -> `meta/0003_snapshot.json`."""
    return folder / "meta" / f"{tag.split('_', 1)[0]}_snapshot.json"


def read_snapshot_chain(folder: Path, entries: list[JournalEntry]) -> list[dict[str, Any]]:
    """One snapshot per journal entry, checked to form the prevId chain; FolderError lists every break."""
    problems: list[str] = []
    snapshots: list[dict[str, Any]] = []
    expected_prev = ZERO_ID
    seen: set[str] = set()
    for entry in entries:
        path = snapshot_path(folder, entry.tag)
        name = f"meta/{path.name}"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            problems.append(
                f"{name}: missing for journal entry '{entry.tag}' - restore it from version control"
                " (every migration needs the snapshot of the schema after it)"
            )
            expected_prev = ""
            continue
        except json.JSONDecodeError as exc:
            problems.append(f"{name}:{exc.lineno}: not valid JSON ({exc.msg}) - restore the file")
            expected_prev = ""
            continue
        except UnicodeDecodeError:
            problems.append(f"{name}: not UTF-8 text - restore the file from version control")
            expected_prev = ""
            continue
        if (
            not isinstance(data, dict)
            or data.get("dialect") != "sqlite"
            or data.get("version") not in _READABLE_VERSIONS
        ):
            problems.append(f"{name}: not a Drizzle Kit sqlite snapshot of version 5 or 6 - restore the file")
            expected_prev = ""
            continue
        snapshot_id, prev_id = data.get("id"), data.get("prevId")
        if expected_prev and prev_id != expected_prev:
            problems.append(
                f"{name}: prevId is {prev_id!r}, expected {expected_prev!r} (the id of the snapshot before)"
                " - the snapshot chain is broken; restore the snapshots from version control"
            )
        if not isinstance(snapshot_id, str) or snapshot_id in seen or snapshot_id == ZERO_ID:
            problems.append(f"{name}: id {snapshot_id!r} is missing or not unique - restore the file")
        seen.add(str(snapshot_id))
        expected_prev = str(snapshot_id)
        snapshots.append(data)
    known = {snapshot_path(folder, e.tag).name for e in entries}
    for path in sorted((folder / "meta").glob("*_snapshot.json")):
        if path.name not in known:
            problems.append(
                f"meta/{path.name}: no journal entry has this snapshot - delete it or restore the entry"
            )
    if problems:
        raise FolderError(problems)
    return snapshots


def parse_snapshot(data: dict[str, Any], *, source: str) -> Schema:
    """The schema a snapshot describes; SchemaError names what this generator cannot represent."""
    try:
        if data.get("views"):
            raise SchemaError([f"{source}: has views, which are not supported - drop them from the schema"])
        expressions = [
            f"`{name}`"
            for name, index in ((data.get("internal") or {}).get("indexes") or {}).items()
            if any((c or {}).get("isExpression") for c in (index or {}).get("columns", {}).values())
        ]
        if expressions:
            raise SchemaError([f"{source}: expression indexes {', '.join(expressions)} are not supported"])
        return Schema({name: _table(raw, source=source) for name, raw in sorted(data["tables"].items())})
    except (KeyError, TypeError, AttributeError) as exc:
        raise SchemaError([f"{source}: malformed snapshot ({exc!r}) - restore the file"]) from exc


def snapshot_schema(data: dict[str, Any], *, source: str) -> Schema:
    """A snapshot's schema as SQLite reads it back, so it compares like a schema file or a database."""
    conn = materialize(parse_snapshot(data, source=source))
    try:
        return introspect(conn, source=source)
    finally:
        conn.close()


def _table(raw: dict[str, Any], *, source: str) -> Table:
    name = raw["name"]
    columns: dict[str, Column] = {}
    for column in raw["columns"].values():
        if column.get("generated"):
            raise SchemaError([f"{source}: generated column `{name}`.`{column['name']}` is not supported"])
        columns[column["name"]] = Column(
            name=column["name"],
            type=column["type"],
            primary_key=column["primaryKey"],
            not_null=column["notNull"],
            autoincrement=column.get("autoincrement") or False,
            default=_default_from_json(column["default"]) if "default" in column else None,
        )
    primary_key: tuple[str, ...] = ()
    for pk in raw.get("compositePrimaryKeys", {}).values():
        if len(pk["columns"]) == 1:  # a one-column "composite" key is a column's primary key
            only = pk["columns"][0]
            columns[only] = dataclasses.replace(columns[only], primary_key=True)
        else:
            primary_key = tuple(pk["columns"])
    return Table(
        name=name,
        columns=columns,
        indexes={
            i["name"]: Index(i["name"], tuple(i["columns"]), i["isUnique"], i.get("where"))
            for i in raw.get("indexes", {}).values()
        },
        foreign_keys=tuple(
            ForeignKey(
                name=fk["name"],
                columns=tuple(fk["columnsFrom"]),
                table_to=fk["tableTo"],
                columns_to=tuple(fk["columnsTo"]),
                on_update=fk.get("onUpdate") or "no action",
                on_delete=fk.get("onDelete") or "no action",
            )
            for fk in raw.get("foreignKeys", {}).values()
        ),
        primary_key=primary_key,
        uniques=tuple(
            UniqueConstraint(u["name"], tuple(u["columns"]))
            for u in sorted(raw.get("uniqueConstraints", {}).values(), key=lambda u: u["name"])
        ),
        checks=tuple(
            CheckConstraint(c["name"], c["value"]) for c in raw.get("checkConstraints", {}).values()
        ),
    )


def _default_from_json(value: Any) -> str:
    # Drizzle Kit writes numbers and booleans as JSON values and SQL text (quoted strings,
    # `(expressions)`) as strings; all become the text that follows DEFAULT.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    raise TypeError(f"default {value!r} is neither SQL text nor a number")


def _default_to_json(text: str) -> Any:
    """The JSON value drizzle-kit writes for a default: booleans and numbers as JSON, SQL text as a string.

    drizzle-kit compares snapshot values, not SQL: `"false"` where it writes `false` is a changed
    default to it, and it answers with a table rebuild. Numbers become JSON only when JavaScript
    reads them back to the same value (`2`, `1.5`, `2.0`; not integers beyond 2**53, which it rounds).
    """
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        number = int(text)
    except ValueError:
        pass
    else:
        if str(number) == text and abs(number) < _INT_DEFAULT_LIMIT:
            return number
    try:
        real = float(text)
    except ValueError:
        return text
    return real if repr(real) == text else text


def snapshot_data(
    schema: Schema,
    *,
    snapshot_id: str,
    prev_id: str,
    renamed_tables: dict[str, str],
    renamed_columns: dict[str, str],
) -> dict[str, Any]:
    """A snapshot in Drizzle Kit's key order; `_meta` records declared renames the way it does."""
    return {
        "version": VERSION,
        "dialect": "sqlite",
        "id": snapshot_id,
        "prevId": prev_id,
        "tables": {name: _table_json(schema.tables[name]) for name in sorted(schema.tables)},
        "views": {},
        "enums": {},
        "_meta": {"schemas": {}, "tables": renamed_tables, "columns": renamed_columns},
        "internal": {"indexes": {}},
    }


def carry_over(previous: dict[str, Any] | None, *, snapshot_id: str) -> dict[str, Any]:
    """The snapshot of a custom migration: the schema is unchanged, only the chain moves on."""
    if previous is None:
        return snapshot_data(
            Schema(), snapshot_id=snapshot_id, prev_id=ZERO_ID, renamed_tables={}, renamed_columns={}
        )
    # id and prevId first, then the rest: what Drizzle Kit writes for `generate --custom`.
    rest = {k: v for k, v in previous.items() if k not in ("id", "prevId")}
    return {"id": snapshot_id, "prevId": previous["id"], **rest}


def render_snapshot(data: dict[str, Any]) -> str:
    """Drizzle Kit's formatting: two-space JSON without a final newline."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def _table_json(table: Table) -> dict[str, Any]:
    return {
        "name": table.name,
        "columns": {c.name: _column_json(c) for c in table.columns.values()},
        "indexes": {
            i.name: {
                "name": i.name,
                "columns": list(i.columns),
                "isUnique": i.unique,
                **({"where": i.where} if i.where is not None else {}),
            }
            for i in table.indexes.values()
        },
        "foreignKeys": {
            fk.name: {
                "name": fk.name,
                "tableFrom": table.name,
                "tableTo": fk.table_to,
                "columnsFrom": list(fk.columns),
                "columnsTo": list(fk.columns_to),
                "onDelete": fk.on_delete,
                "onUpdate": fk.on_update,
            }
            for fk in table.foreign_keys
        },
        "compositePrimaryKeys": (
            {
                primary_key_name(table.name, table.primary_key): {
                    "columns": list(table.primary_key),
                    "name": primary_key_name(table.name, table.primary_key),
                }
            }
            if table.primary_key
            else {}
        ),
        "uniqueConstraints": {
            u.name: {"name": u.name, "columns": list(u.columns)}
            for u in sorted(table.uniques, key=lambda u: u.name)
        },
        "checkConstraints": {c.name: {"name": c.name, "value": c.value} for c in table.checks},
    }


def _column_json(column: Column) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": column.name,
        "type": column.type,
        "primaryKey": column.primary_key,
        "notNull": column.not_null,
        "autoincrement": column.autoincrement,
    }
    if column.default is not None:
        data["default"] = _default_to_json(column.default)
    return data
