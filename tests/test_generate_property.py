"""Property: random schemas evolved over several generations replay to their target and keep data.

Each example starts from nothing and runs GENERATIONS rounds. A round changes the schema (new,
dropped and renamed tables; added, dropped, renamed and retyped columns; defaults, NOT NULL,
indexes), writes it, runs `generate` with the renames declared, and applies the new migration to
ONE database file that lives through the whole history, through the real engine. The test keeps
its own model of the schema and of every row it inserted, and after each round the file must
match both: the tables, columns, types and indexes of the model, and every value of every row
except those whose column changed type.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counter_core.migrate import MIGRATIONS_TABLE, ensure_current
from tests.generate_support import empty_folder, run
from tools.migrations.diff import Renames
from tools.migrations.generate import Request, generate
from tools.migrations.manifest import build_manifest

GENERATIONS = 5
TABLE_NAMES = ["alpha", "beta", "gamma", "delta", "epsilon"]
COLUMN_NAMES = ["c1", "c2", "c3", "c4", "c5", "c6"]
TYPES = ["integer", "text", "real"]
UNKNOWN = object()  # a value converted by a type change: not compared


@dataclass
class Col:
    type: str
    not_null: bool = False
    default: Any = None


@dataclass
class Tab:
    columns: dict[str, Col] = field(default_factory=dict)
    indexes: dict[str, str] = field(default_factory=dict)  # index name -> column
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)  # id -> column -> value


@dataclass
class Model:
    tables: dict[str, Tab] = field(default_factory=dict)
    next_id: int = 1
    next_index: int = 1

    def sql(self) -> str:
        parts = []
        for name, table in self.tables.items():
            columns = ['    "id" INTEGER PRIMARY KEY NOT NULL']
            for column_name, column in table.columns.items():
                text = f'    "{column_name}" {column.type.upper()}'
                if column.not_null:
                    text += " NOT NULL"
                if column.default is not None:
                    text += f" DEFAULT {literal(column.default)}"
                columns.append(text)
            parts.append(f'CREATE TABLE "{name}" (\n' + ",\n".join(columns) + "\n);")
            parts.extend(f'CREATE INDEX "{i}" ON "{name}" ("{c}");' for i, c in table.indexes.items())
        return "\n".join(parts) + "\n"


def literal(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def value_of(type_: str) -> st.SearchStrategy[Any]:
    if type_ == "integer":
        return st.integers(-(2**63), 2**63 - 1)
    if type_ == "real":
        return st.floats(allow_nan=False, allow_infinity=False)
    return st.text(max_size=6)


def default_of(type_: str) -> st.SearchStrategy[Any]:
    if type_ == "integer":
        return st.integers(-5, 5)
    if type_ == "real":
        return st.sampled_from([0.5, -1.25])
    return st.sampled_from(["", "x", "it"])


def draw_column(data: st.DataObject, *, existing_rows: bool) -> Col:
    type_ = data.draw(st.sampled_from(TYPES))
    not_null = data.draw(st.booleans())
    # NOT NULL without a default on a table with rows is refused (tests/test_generate_refusals.py).
    needs_default = not_null and existing_rows
    default = data.draw(default_of(type_) if needs_default else st.none() | default_of(type_))
    return Col(type_, not_null, default)


def evolve(model: Model, data: st.DataObject) -> Renames:
    """Change the model for one generation; one operation per table, renames declared."""
    renamed_tables: dict[str, str] = {}
    renamed_columns: dict[tuple[str, str], str] = {}
    touched: set[str] = set()
    for _ in range(data.draw(st.integers(1, 3))):
        unused = [n for n in TABLE_NAMES if n not in model.tables and n not in touched]
        candidates = sorted(n for n in model.tables if n not in touched)
        # Column changes are listed twice: they are where rebuilds happen.
        kinds = (
            ["column", "add_column", "column", "add_index", "rename_table", "drop_index", "drop_table"]
            if candidates
            else []
        ) + (["add_table"] if unused else [])
        if not kinds:
            break
        kind = data.draw(st.sampled_from(kinds))
        if kind == "add_table":
            name = data.draw(st.sampled_from(unused))
            count = data.draw(st.integers(1, 4))
            model.tables[name] = Tab(
                {c: draw_column(data, existing_rows=False) for c in COLUMN_NAMES[:count]}
            )
            touched.add(name)
            continue
        name = data.draw(st.sampled_from(candidates))
        touched.add(name)
        table = model.tables[name]
        if kind == "drop_table":
            del model.tables[name]
        elif kind == "rename_table" and unused:
            new = data.draw(st.sampled_from(unused))
            model.tables[new] = model.tables.pop(name)
            renamed_tables[name] = new
            touched.add(new)
        elif kind == "add_column":
            free = [c for c in COLUMN_NAMES if c not in table.columns]
            if free:
                column_name = data.draw(st.sampled_from(free))
                column = table.columns[column_name] = draw_column(data, existing_rows=True)
                for row in table.rows.values():
                    row[column_name] = column.default
        elif kind == "add_index" and table.columns:
            table.indexes[f"ix{model.next_index}"] = data.draw(st.sampled_from(sorted(table.columns)))
            model.next_index += 1
        elif kind == "drop_index" and table.indexes:
            del table.indexes[data.draw(st.sampled_from(sorted(table.indexes)))]
        elif kind == "column" and table.columns:
            change_column(table, name, data, renamed_columns)
    return Renames(renamed_tables, renamed_columns)


def change_column(
    table: Tab, table_name: str, data: st.DataObject, renames: dict[tuple[str, str], str]
) -> None:
    column_name = data.draw(st.sampled_from(sorted(table.columns)))
    column = table.columns[column_name]
    change = data.draw(st.sampled_from(["type", "rename", "drop", "default", "nullable"]))
    if change == "drop":
        del table.columns[column_name]
        table.indexes = {i: c for i, c in table.indexes.items() if c != column_name}
        for row in table.rows.values():
            del row[column_name]
    elif change == "rename":
        free = [c for c in COLUMN_NAMES if c not in table.columns]
        new = data.draw(st.sampled_from(free))
        table.columns = {new if c == column_name else c: col for c, col in table.columns.items()}
        table.indexes = {i: new if c == column_name else c for i, c in table.indexes.items()}
        for row in table.rows.values():
            row[new] = row.pop(column_name)
        renames[(table_name, column_name)] = new
    elif change == "type":
        column.type = data.draw(st.sampled_from([t for t in TYPES if t != column.type]))
        column.default = data.draw(st.none() | default_of(column.type))
        for row in table.rows.values():
            row[column_name] = UNKNOWN
    elif change == "default":
        column.default = data.draw(st.none() | default_of(column.type))
    else:
        column.not_null = False


def assert_database_matches(conn: apsw.Connection, model: Model) -> None:
    tables = {
        name
        for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        if not name.startswith("sqlite_") and name != MIGRATIONS_TABLE
    }
    assert tables == set(model.tables)
    for name, table in model.tables.items():
        columns = {
            n: t.lower() for n, t in conn.execute("SELECT name, type FROM pragma_table_info(?)", (name,))
        }
        assert columns == {"id": "integer"} | {c: col.type for c, col in table.columns.items()}
        indexes = {
            n: c
            for n, c in conn.execute(
                "SELECT il.name, ii.name FROM pragma_index_list(?) AS il, pragma_index_info(il.name) AS ii"
                " WHERE il.origin = 'c'",
                (name,),
            )
        }
        assert indexes == table.indexes
        names = list(table.columns)
        select = ", ".join(['"id"', *(f'"{c}"' for c in names)])
        stored = {
            row[0]: dict(zip(names, row[1:], strict=True))
            for row in conn.execute(f'SELECT {select} FROM "{name}"')
        }
        assert set(stored) == set(table.rows)
        for row_id, expected in table.rows.items():
            for column_name, value in expected.items():
                if value is not UNKNOWN:
                    assert stored[row_id][column_name] == value, (name, row_id, column_name)


def insert_rows(conn: apsw.Connection, model: Model, data: st.DataObject) -> None:
    for name, table in model.tables.items():
        values = {c: data.draw(value_of(col.type)) for c, col in table.columns.items()}
        row_id = model.next_id
        model.next_id += 1
        columns = ", ".join(['"id"', *(f'"{c}"' for c in values)])
        marks = ", ".join("?" * (len(values) + 1))
        conn.execute(f'INSERT INTO "{name}" ({columns}) VALUES ({marks})', (row_id, *values.values()))
        table.rows[row_id] = values


@settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_random_histories_replay_to_their_schema_and_keep_data(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = empty_folder(root / "migrations")
        schema = root / "schema.sql"
        model = Model()
        conn = apsw.Connection(str(root / "counter.sqlite3"))
        conn.execute("PRAGMA foreign_keys=ON")
        try:
            for generation in range(GENERATIONS):
                renames = evolve(model, data)
                schema.write_text(model.sql(), encoding="utf-8")
                request = Request(folder, schema, f"g{generation}", renames=renames, allow_data_loss=True)
                assert generate(request) == 0
                ensure_current(conn, build_manifest(folder), label="property")
                assert_database_matches(conn, model)
                insert_rows(conn, model, data)
        finally:
            conn.close()


def test_property_harness_sees_the_real_check(tmp_path: Path, capsys: Any) -> None:
    """The model's SQL is a schema the generator accepts, and `check` agrees after generating it."""
    model = Model({"alpha": Tab({"c1": Col("text", True, "x")}, {"ix1": "c1"})})
    schema = tmp_path / "schema.sql"
    schema.write_text(model.sql())
    folder = empty_folder(tmp_path / "migrations")
    assert generate(Request(folder, schema, "init")) == 0
    assert run(capsys, "check", "--schema", schema, "--migrations", folder).code == 0
