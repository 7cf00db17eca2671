"""Drizzle Kit's migrations folder for SQLite: `NNNN_<tag>.sql`, `meta/_journal.json`, snapshots.

Read and written here only; `tools.migrations.manifest` turns a folder into the runtime manifest.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import generated

JOURNAL = Path("meta") / "_journal.json"
JOURNAL_VERSION = "7"
ENTRY_VERSION = "6"
DEFAULT_FOLDER = Path(generated.__file__).resolve().parent


class FolderError(Exception):
    """A migrations folder is inconsistent; `problems` are `file:line: what - what to do` lines.

    `next_step`, when set, is the one thing to do (the CLI's last line); else "fix them".
    """

    def __init__(self, problems: list[str], next_step: str | None = None) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.next_step = next_step

    def __reduce__(self) -> tuple[type[FolderError], tuple[list[str], str | None]]:
        return (type(self), (self.problems, self.next_step))


@dataclass(frozen=True)
class JournalEntry:
    idx: int
    when: int
    tag: str
    breakpoints: bool
    version: str = ENTRY_VERSION
    line: int = 0  # where the entry sits in the journal, for messages

    def as_json(self) -> dict[str, Any]:
        # Key order as Drizzle Kit writes it, so our journals diff cleanly against its own.
        return {
            "idx": self.idx,
            "version": self.version,
            "when": self.when,
            "tag": self.tag,
            "breakpoints": self.breakpoints,
        }


def journal_path(folder: Path) -> Path:
    return folder / JOURNAL


def folder_option(folder: Path) -> str:
    """` --migrations DIR` for a command a message prints about `folder`; empty for the project's own."""
    return "" if folder.resolve() == DEFAULT_FOLDER.resolve() else f" --migrations {shlex.quote(str(folder))}"


def start_command(folder: Path) -> str:
    """The command that starts a history in `folder`."""
    return f"`python -m tools.migrations generate --name init --migrations {folder}`"


def require_folder(folder: Path) -> None:
    """FolderError if `folder` exists and is not a directory (a missing one starts a new history)."""
    if folder.exists() and not folder.is_dir():
        raise FolderError(
            [
                f"{folder}: a file, not a migrations folder - pass the folder that holds {JOURNAL}"
                " (the project's is generated)"
            ]
        )


def no_history(folder: Path, start: str) -> FolderError:
    """The error of a command that needs a history where none has begun; `start` is the command to run."""
    return FolderError(
        [f"{folder}: no migration history yet (no {JOURNAL})"],
        next_step=f"Start one with {start}, then run this command again.",
    )


def is_new_history(folder: Path) -> bool:
    """True when no history has begun in `folder`: no journal, no migration file, no snapshot.

    A missing folder, an empty one and one with an empty `meta/` all qualify; a folder that lost
    only its journal does not (its files would be orphaned by a new one). Read-only.
    """
    return not (
        journal_path(folder).exists()
        or any(folder.glob("*.sql"))
        or any((folder / "meta").glob("*_snapshot.json"))
    )


def read_journal(folder: Path) -> list[JournalEntry]:
    """The journal's entries in file order; a malformed journal raises FolderError naming the line."""
    path = journal_path(folder)
    name = str(JOURNAL)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if is_new_history(folder):
            raise no_history(folder, start_command(folder)) from None
        migrations = len(list(folder.glob("*.sql")))
        snapshots = len(list((folder / "meta").glob("*_snapshot.json")))
        raise FolderError(
            [
                f"{name}: missing, but the folder holds {migrations} migration file(s) and {snapshots} snapshot(s)"
                " - restore the journal from version control"
            ]
        ) from None
    except UnicodeDecodeError:
        raise FolderError([f"{name}: not UTF-8 text - restore the file from version control"]) from None
    except OSError as exc:  # a directory where the journal should be, no permission to read it
        raise FolderError([f"{name}: cannot be read ({exc.strerror}) - restore the file"]) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FolderError([f"{name}:{exc.lineno}: not valid JSON ({exc.msg}) - fix the file"]) from exc
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise FolderError([f"{name}:1: expected an object with an 'entries' list"])
    if data.get("dialect") != "sqlite":
        raise FolderError([f"{name}:1: dialect is {data.get('dialect')!r}, expected 'sqlite'"])
    entries: list[JournalEntry] = []
    problems: list[str] = []
    for position, raw in enumerate(data["entries"]):
        line = _line_of_entry(text, raw, position)
        try:
            entry = JournalEntry(
                idx=_typed(raw, "idx", int),
                when=_typed(raw, "when", int),
                tag=_typed(raw, "tag", str),
                breakpoints=_typed(raw, "breakpoints", bool),
                version=_typed(raw, "version", str),
                line=line,
            )
        except (KeyError, TypeError) as exc:
            problems.append(f"{name}:{line}: entry {position} {exc.args[0]} - fix the entry")
            continue
        if not re.fullmatch(r"[0-9]+_[A-Za-z0-9_-]+", entry.tag):
            problems.append(f"{name}:{line}: tag {entry.tag!r} is not NNNN_name - rename the entry and file")
        entries.append(entry)
    if problems:
        raise FolderError(problems)
    return entries


def write_journal(folder: Path, entries: list[JournalEntry]) -> None:
    """Write the journal as Drizzle Kit does (2-space JSON, its key order)."""
    data = {"version": JOURNAL_VERSION, "dialect": "sqlite", "entries": [e.as_json() for e in entries]}
    path = journal_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def sql_files(folder: Path) -> dict[str, Path]:
    """Migration SQL files by tag (file name without `.sql`)."""
    return {path.stem: path for path in sorted(folder.glob("*.sql"))}


def _typed(raw: Any, key: str, kind: type) -> Any:
    if not isinstance(raw, dict) or key not in raw:
        raise KeyError(f"has no {key!r}")
    value = raw[key]
    # bool is an int in Python; an idx of `true` is still wrong.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TypeError(f"field {key!r} should be {kind.__name__}, not {type(value).__name__}")
    return value


def _line_of_entry(text: str, raw: Any, position: int) -> int:
    """1-based journal line of an entry: where its tag appears, else its position-th `{` after entries."""
    tag = raw.get("tag") if isinstance(raw, dict) else None
    if isinstance(tag, str):
        found = re.search(r'"tag"\s*:\s*' + re.escape(json.dumps(tag)), text)
        if found:
            return text.count("\n", 0, found.start()) + 1
    start = text.find('"entries"')
    for _ in range(position + 1):
        start = text.find("{", start + 1)
        if start < 0:
            return 1
    return text.count("\n", 0, start) + 1
