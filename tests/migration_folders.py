"""Build Drizzle Kit style migration folders in tests (the layout `tools.migrations.manifest` reads)."""

from __future__ import annotations

import shutil
from pathlib import Path

from counter_core.manifest import Manifest
from tools.migrations.folder import JournalEntry, write_journal
from tools.migrations.manifest import write_manifest

FIXTURES = Path(__file__).parent / "fixtures"
DRIZZLE_FOLDER = FIXTURES / "drizzle" / "migrations"
BASE_WHEN = 1_795_000_000_000


def make_folder(folder: Path, migrations: list[tuple[str, str]]) -> Manifest:
    """Write `NNNN_<tag>.sql` files and the journal for (name, sql) pairs, then the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for idx, (name, sql) in enumerate(migrations):
        tag = f"{idx:04d}_{name}"
        (folder / f"{tag}.sql").write_text(sql, encoding="utf-8")
        entries.append(JournalEntry(idx=idx, when=BASE_WHEN + idx * 1000, tag=tag, breakpoints=True))
    write_journal(folder, entries)
    return write_manifest(folder)


def copy_drizzle_folder(target: Path, *, keep: int | None = None) -> Manifest:
    """The real drizzle-kit fixture folder, optionally cut to its first `keep` journal entries."""
    import json

    shutil.copytree(DRIZZLE_FOLDER, target)
    if keep is not None:
        journal_file = target / "meta" / "_journal.json"
        journal = json.loads(journal_file.read_text())
        for entry in journal["entries"][keep:]:
            (target / f"{entry['tag']}.sql").unlink()
        journal["entries"] = journal["entries"][:keep]
        journal_file.write_text(json.dumps(journal, indent=2))
    return write_manifest(target)
