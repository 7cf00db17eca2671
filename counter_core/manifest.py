"""The migration manifest: what the runtime knows of the migration history.

`generated/manifest.json` is built by `python -m tools.migrations manifest` from Drizzle Kit's folder
layout; the runtime only reads it. Reading goes through the package's loader, so it works from a
directory, a zip, or a `sam build` artifact.

Validated by hand, with the standard library, not by pydantic: this module is read on every cold
start, and importing pydantic and building two models for it was about 45 ms of CPU of the 245 ms a
cold start took (python -X importtime; tools.bench, figure 3). pydantic still validates every request
body (counter_core.models); the manifest is this project's own build output, checked field by field.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import re

from counter_core.errors import ManifestInvalid
from counter_core.values import Value

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any, Literal

    from counter_core.paths import StrPath

MANIFEST_FILE = "manifest.json"
BUNDLED_PACKAGE = "generated"
FORMAT: Literal[1] = 1

_SHA256 = re.compile(r"[0-9a-f]{64}")
_TAG = re.compile(r"[0-9]+_[A-Za-z0-9_-]+")
_TAG_MAX_LENGTH = 200


class _FieldError(ValueError):
    """One field of the manifest is wrong: `loc` names it (dotted), the message says how."""

    def __init__(self, loc: str, problem: str) -> None:
        super().__init__(problem)
        self.loc = loc


# A migration's fields in manifest.json, in the order to_json writes them.
_MIGRATION_FIELDS = ("idx", "tag", "when", "sha256", "additive", "foreign_keys_off", "statements")


class Migration(Value):
    """One migration, its statements already split (build time did the parsing)."""

    __slots__ = ("additive", "foreign_keys_off", "idx", "sha256", "statements", "tag", "when")

    def __init__(
        self,
        idx: int,
        tag: str,
        when: int,
        sha256: str,
        additive: bool,
        foreign_keys_off: bool,
        statements: tuple[str, ...],
    ) -> None:
        self.idx = idx
        self.tag = tag
        self.when = when
        self.sha256 = sha256
        self.additive = additive
        # Drizzle wraps table rebuilds in PRAGMA foreign_keys=OFF/ON, no-ops inside a transaction: the
        # builder strips them and sets this flag; the engine switches foreign keys off *before* BEGIN.
        self.foreign_keys_off = foreign_keys_off
        self.statements = statements


def _check_migration(migration: Migration) -> None:
    for name in ("idx", "when"):
        value = getattr(migration, name)
        if not _is_int(value) or value < 0:
            raise _FieldError(name, "must be an integer of at least 0")
    if not isinstance(migration.tag, str) or not _TAG.fullmatch(migration.tag):
        raise _FieldError("tag", "must match NNNN_name (digits, '_', then letters, digits, '_' or '-')")
    if len(migration.tag) > _TAG_MAX_LENGTH:
        raise _FieldError("tag", f"must be at most {_TAG_MAX_LENGTH} characters long")
    if not isinstance(migration.sha256, str) or not _SHA256.fullmatch(migration.sha256):
        raise _FieldError("sha256", "must be 64 lowercase hexadecimal digits")
    for name in ("additive", "foreign_keys_off"):
        if not isinstance(getattr(migration, name), bool):
            raise _FieldError(name, "must be true or false")
    for position, statement in enumerate(migration.statements):
        if not isinstance(statement, str):
            raise _FieldError(f"statements.{position}", "must be a string")


class Manifest(Value):
    """The ordered migration history of this bundle."""

    __slots__ = ("format", "migrations")

    def __init__(self, format: Literal[1], migrations: tuple[Migration, ...]) -> None:
        self.format = format
        self.migrations = migrations

    @property
    def version(self) -> int:
        """The user_version of a database that applied every migration of this manifest."""
        return len(self.migrations)

    def to_json(self) -> dict[str, Any]:
        """The manifest as manifest.json holds it: JSON types, fields in declaration order."""
        return {
            "format": self.format,
            "migrations": [
                {**{name: getattr(m, name) for name in _MIGRATION_FIELDS}, "statements": list(m.statements)}
                for m in self.migrations
            ],
        }


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(value: object, loc: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object with exactly these fields."""
    if not isinstance(value, dict):
        raise _FieldError(loc or "<root>", "must be an object")
    for name in fields:
        if name not in value:
            raise _FieldError(f"{loc}.{name}" if loc else name, "is required")
    for name in value:
        if name not in fields:
            raise _FieldError(f"{loc}.{name}" if loc else name, "is not a field of the manifest")
    return value


def _manifest(data: object) -> Manifest:
    document = _object(data, "", ("format", "migrations"))
    listed = document["migrations"]
    if not isinstance(listed, list):
        raise _FieldError("migrations", "must be an array")
    migrations = []
    for position, item in enumerate(listed):
        loc = f"migrations.{position}"
        fields = _object(item, loc, _MIGRATION_FIELDS)
        statements = fields["statements"]
        if not isinstance(statements, list):
            raise _FieldError(f"{loc}.statements", "must be an array of strings")
        migration = Migration(**{**fields, "statements": tuple(statements)})
        try:
            _check_migration(migration)
        except _FieldError as exc:
            raise _FieldError(f"{loc}.{exc.loc}", str(exc)) from None
        migrations.append(migration)
    if not _is_int(document["format"]) or document["format"] != FORMAT:
        raise _FieldError("format", f"must be {FORMAT}")
    previous_when = -1
    for position, migration in enumerate(migrations):
        if migration.idx != position:
            raise _FieldError("<root>", f"migrations[{position}].idx is {migration.idx}, expected {position}")
        if migration.when <= previous_when:
            raise _FieldError(
                "<root>", f"migrations[{position}].when must be greater than the previous entry's"
            )
        previous_when = migration.when
    return Manifest(format=FORMAT, migrations=tuple(migrations))


def runtime_refusal(manifest: Manifest) -> tuple[str, str] | None:
    """Why parse_manifest would refuse `manifest` once written, as (field, problem) such as
    ("migrations.0.when", "must be an integer of at least 0"); None if it would load. Read-only.

    A Manifest checks nothing when built (the parser checks, see _check_migration): the builder asks
    this before writing, so no manifest.json is written that every cold start would then refuse.
    """
    try:
        _manifest(manifest.to_json())
    except _FieldError as exc:
        return exc.loc, str(exc)
    return None


def parse_manifest(data: bytes, *, source: str) -> Manifest:
    """Validate manifest JSON; a malformed one raises ManifestInvalid naming `source` and the field."""
    try:
        return _manifest(json.loads(data))
    except _FieldError as exc:
        problem = f"field '{exc.loc}': {exc}"
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        problem = f"field '<root>': not JSON ({exc})"
    raise ManifestInvalid(
        f"{source} is malformed: {problem} - rebuild it with `python -m tools.migrations manifest`"
    )


def load_manifest(folder: StrPath) -> Manifest:
    """The manifest of a migrations folder on disk (tools' `--migrations DIR`)."""
    path = os.path.join(folder, MANIFEST_FILE)
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ManifestInvalid(
            f"{path} cannot be read ({exc.strerror}) - run `python -m tools.migrations manifest`"
        ) from exc
    return parse_manifest(data, source=path)


@functools.cache
def bundled_manifest() -> Manifest:
    """The manifest shipped in the `generated` package, read and validated once per process."""
    # The package's own loader reads the file (what pkgutil.get_data and importlib.resources end up
    # calling), so it works from a directory or a zip. Importing importlib.resources (zipfile,
    # tempfile, inspect) cost 22-29 ms of CPU and pkgutil 2.5-3.6 ms in a fresh CPython 3.13 whose
    # request path loads neither (tools.bench, figure 3); the Lambda runtime preloads neither.
    try:
        package = importlib.import_module(BUNDLED_PACKAGE)
        loader = package.__spec__.loader if package.__spec__ is not None else None
        if loader is None or package.__file__ is None or not hasattr(loader, "get_data"):
            raise ImportError(f"{BUNDLED_PACKAGE} is not a package loaded from files")
        data = loader.get_data(os.path.join(os.path.dirname(package.__file__), MANIFEST_FILE))
    except (OSError, ImportError) as exc:
        raise ManifestInvalid(
            f"{BUNDLED_PACKAGE}/{MANIFEST_FILE} is missing from the bundle - rebuild with `sam build`"
        ) from exc
    return parse_manifest(data, source=f"{BUNDLED_PACKAGE}/{MANIFEST_FILE}")
