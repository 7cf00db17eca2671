"""Durable counters: one SQLite database per counter, migrated exactly once on first open.

The public surface is re-exported here; everything else is private to the package.
"""

from counter_core.connection import ConnectionCache, open_database
from counter_core.errors import (
    AdoptionRefused,
    CounterError,
    CounterFileDamaged,
    CounterNotFound,
    InvalidCounterId,
    ManifestInvalid,
    MigrationDrift,
    MigrationError,
    MigrationFailed,
    MigrationQuarantined,
    NotACounterDatabase,
    SchemaTooNew,
    StorageBusy,
    StorageUnavailable,
)
from counter_core.manifest import Manifest, Migration, bundled_manifest, load_manifest, parse_manifest
from counter_core.migrate import APPLICATION_ID, MigrationReport, ensure_current
from counter_core.paths import counter_path, iter_counter_files, validate_counter_id
from counter_core.quarantine import Quarantine

__all__ = [
    "APPLICATION_ID",
    "AdoptionRefused",
    "ConnectionCache",
    "CounterError",
    "CounterFileDamaged",
    "CounterNotFound",
    "InvalidCounterId",
    "Manifest",
    "ManifestInvalid",
    "Migration",
    "MigrationDrift",
    "MigrationError",
    "MigrationFailed",
    "MigrationQuarantined",
    "MigrationReport",
    "NotACounterDatabase",
    "Quarantine",
    "SchemaTooNew",
    "StorageBusy",
    "StorageUnavailable",
    "bundled_manifest",
    "counter_path",
    "ensure_current",
    "iter_counter_files",
    "load_manifest",
    "open_database",
    "parse_manifest",
    "validate_counter_id",
]
