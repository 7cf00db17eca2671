"""The bench's baselines and inputs: raw APSW doing the project's SQL, handler events, migration folders.

A baseline is what a careful programmer would write with APSW alone for the same job: the same
statements, the same durability settings (rollback journal in DELETE mode, `synchronous=FULL`), the
same busy timeout, on the same disk. Whatever the project costs beyond it is what the project adds.

Importing this module is cheap (no apsw, no pydantic at import), because the cold-start figure runs
in processes whose import time is the thing measured.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import apsw

    from counter_core.manifest import Manifest

REPO = Path(__file__).resolve().parents[2]
SCHEMA_SQL = REPO / "counter_core" / "schema.sql"
# The one statement of the fleet figure's extra migration: additive (a nullable column), so older code
# keeps serving files it has reached. Named so that it cannot collide with a real migration's column.
FLEET_STATEMENT = "ALTER TABLE `counter_metadata` ADD `bench_note` text;"
FLEET_TAG_NAME = "bench_note"


def ddl_statements(manifest: Manifest) -> list[str]:
    """Every statement of every migration, in order: what the baseline runs to create a counter file."""
    return [statement for migration in manifest.migrations for statement in migration.statements]


# The increment transaction, its SQL shape copied from counter_core/store.py (`CounterStore.apply`
# with `Increment`, no idempotency key): read the row, upsert it, append a history row, all in
# BEGIN IMMEDIATE. Copied, not imported, so the baseline stays raw APSW; re-check it when the store's
# SQL changes.
READ_SQL = "SELECT value, metadata, created_at, updated_at FROM counter_metadata WHERE id = 1"
UPSERT_SQL = (
    "INSERT INTO counter_metadata (id, name, value, metadata, created_at, updated_at) VALUES (1, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET value = excluded.value, metadata = excluded.metadata,"
    " updated_at = excluded.updated_at"
)
# The store records the request's ID in each history row; the baseline writes one of the same length.
REQUEST_ID = "00000000-0000-4000-8000-000000000000"
HISTORY_SQL = "INSERT INTO counter_history (op, amount, value_after, at, request_id) VALUES (?, ?, ?, ?, ?)"


def increment_statements(conn: apsw.Connection, counter_id: str, by: int, now_ms: int) -> int:
    row = conn.execute(READ_SQL).fetchone()
    value, metadata, created_at = (int(row[0]), str(row[1]), int(row[2])) if row else (0, "{}", now_ms)
    new_value = value + by
    conn.execute(UPSERT_SQL, (counter_id, new_value, metadata, created_at, now_ms))
    conn.execute(HISTORY_SQL, ("increment", by, new_value, now_ms, REQUEST_ID))
    return new_value


def raw_increment(conn: apsw.Connection, counter_id: str, *, now_ms: int, by: int = 1) -> int:
    """One increment in its own BEGIN IMMEDIATE transaction; returns the new value."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        value = increment_statements(conn, counter_id, by, now_ms)
        conn.execute("COMMIT")
    except BaseException:
        if not conn.get_autocommit():
            conn.execute("ROLLBACK")
        raise
    return value


class LambdaContext:
    """The attributes of a Lambda context object that handlers and Powertools read."""

    function_name = "counters-bench"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:counters-bench"
    memory_limit_in_mb = 512
    log_group_name = "/aws/lambda/counters-bench"
    log_stream_name = "bench"

    def __init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def increment_event(counter_id: str, *, by: int | None = 1) -> dict[str, Any]:
    """`POST /counters/{id}/increment` as an HTTP API payload 2.0 event (sam local generate-event's shape)."""
    return counter_event("POST", counter_id, "/increment", None if by is None else json.dumps({"by": by}))


def counter_event(method: str, counter_id: str, action: str = "", body: str | None = None) -> dict[str, Any]:
    """`METHOD /counters/{id}ACTION` as an HTTP API payload 2.0 event (sam local generate-event's shape)."""
    from urllib.parse import quote

    raw_path = f"/counters/{quote(counter_id, safe='')}{action}"
    route_key = f"{method} /counters/{{id}}{action}"
    request_id = str(uuid.uuid4())
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            "content-type": "application/json",
            "content-length": str(len(body or "")),
            "host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "user-agent": "counters-bench",
            "x-forwarded-for": "192.0.2.10",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "counters-bench",
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": "25/Nov/2025:03:00:00 +0000",
            "timeEpoch": 1764039600000,
        },
        "pathParameters": {"id": counter_id},
        "body": body,
        "isBase64Encoded": False,
    }


@dataclass(frozen=True)
class Folders:
    """The migrations folders one bench run uses, and where the base one came from."""

    base: Path  # what every counter file is migrated to (the bundle, or a stand-in built from schema.sql)
    fleet: Path  # base plus one additive migration (figure 6)
    base_source: str
    bundled_has_migrations: bool


def prepare_folders(work: Path) -> Folders:
    """The bundled `generated` folder if it holds migrations, else one built from schema.sql in `work`.

    The stand-in exists so the engine figures can run before `generated/` is filled; it goes through
    the project's own manifest builder, so its statements are split and checked like the real ones.
    """
    from counter_core.manifest import load_manifest
    from tools.migrations.folder import DEFAULT_FOLDER, JournalEntry, read_journal, write_journal
    from tools.migrations.manifest import write_manifest
    from tools.migrations.sqltext import BREAKPOINT, split_statements

    bundled = load_manifest(DEFAULT_FOLDER)
    if bundled.version > 0:
        base, source = (
            DEFAULT_FOLDER,
            f"bundled {DEFAULT_FOLDER.relative_to(REPO)}/ ({bundled.version} migrations)",
        )
    else:
        base = work / "migrations-from-schema"
        base.mkdir(parents=True)
        statements = [s.text for s in split_statements(SCHEMA_SQL.read_text(encoding="utf-8"))]
        (base / "0000_init.sql").write_text(f"\n{BREAKPOINT}\n".join(statements) + "\n", encoding="utf-8")
        write_journal(base, [JournalEntry(idx=0, when=1_795_000_000_000, tag="0000_init", breakpoints=True)])
        write_manifest(base)
        source = "stand-in 0000_init built from counter_core/schema.sql (generated/ holds no migrations yet)"
    fleet = work / "migrations-fleet"
    fleet.mkdir(parents=True)
    entries = read_journal(base)
    for entry in entries:
        shutil.copyfile(base / f"{entry.tag}.sql", fleet / f"{entry.tag}.sql")
    tag = f"{len(entries):04d}_{FLEET_TAG_NAME}"
    (fleet / f"{tag}.sql").write_text(FLEET_STATEMENT + "\n", encoding="utf-8")
    when = entries[-1].when + 1000 if entries else 1_795_000_000_000
    write_journal(fleet, [*entries, JournalEntry(idx=len(entries), when=when, tag=tag, breakpoints=True)])
    write_manifest(fleet)
    return Folders(base=base, fleet=fleet, base_source=source, bundled_has_migrations=bundled.version > 0)
