from __future__ import annotations

from pathlib import Path

import pytest

from counter_core.manifest import Manifest
from tests.migration_folders import make_folder

PARENT_CHILD = """CREATE TABLE `parents` (`id` integer PRIMARY KEY NOT NULL, `name` text NOT NULL);
--> statement-breakpoint
CREATE TABLE `children` (
\t`id` integer PRIMARY KEY NOT NULL,
\t`parent_id` integer NOT NULL REFERENCES `parents`(`id`) ON DELETE cascade,
\t`label` text
);"""
ADD_NOTE = "ALTER TABLE `children` ADD `note` text;"


@pytest.fixture
def fresh_root(tmp_path: Path) -> Path:
    """An empty counters root that does not exist yet (as on a new file system)."""
    return tmp_path / "counters"


@pytest.fixture
def v1_manifest(tmp_path: Path) -> Manifest:
    """One migration: a parent table and a child table with ON DELETE CASCADE."""
    return make_folder(tmp_path / "v1", [("init", PARENT_CHILD)])


@pytest.fixture
def v2_manifest(tmp_path: Path) -> Manifest:
    """v1 plus an additive migration (a nullable column)."""
    return make_folder(tmp_path / "v2", [("init", PARENT_CHILD), ("add_note", ADD_NOTE)])


@pytest.fixture
def api_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """COUNTERS_ROOT pointed at an empty directory for the handler (its state follows the variable)."""
    root = tmp_path / "api-counters"
    monkeypatch.setenv("COUNTERS_ROOT", str(root))
    return root
