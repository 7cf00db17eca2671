"""The migration manifest: what the runtime knows of the migration history.

`generated/manifest.json` is built by `python -m tools.migrations manifest` from Drizzle Kit's folder
layout; the runtime only reads it. Reading goes through importlib.resources, so it works from a
directory, a zip, or a `sam build` artifact.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from counter_core.errors import ManifestInvalid

MANIFEST_FILE = "manifest.json"
BUNDLED_PACKAGE = "generated"
FORMAT: Literal[1] = 1

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Migration(BaseModel):
    """One migration, its statements already split (build time did the parsing)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    idx: Annotated[int, Field(ge=0)]
    tag: Annotated[str, Field(pattern=r"^[0-9]+_[A-Za-z0-9_-]+$", max_length=200)]
    when: Annotated[int, Field(ge=0)]
    sha256: Sha256
    additive: bool
    # Drizzle wraps table rebuilds in PRAGMA foreign_keys=OFF/ON. Those are no-ops inside a transaction,
    # so the builder strips them and sets this flag; the engine switches foreign keys off *before* BEGIN.
    foreign_keys_off: bool
    statements: tuple[str, ...]


class Manifest(BaseModel):
    """The ordered migration history of this bundle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1]
    migrations: tuple[Migration, ...]

    @model_validator(mode="after")
    def _ordered(self) -> Manifest:
        previous_when = -1
        for position, migration in enumerate(self.migrations):
            if migration.idx != position:
                raise ValueError(f"migrations[{position}].idx is {migration.idx}, expected {position}")
            if migration.when <= previous_when:
                raise ValueError(f"migrations[{position}].when must be greater than the previous entry's")
            previous_when = migration.when
        return self

    @property
    def version(self) -> int:
        """The user_version of a database that applied every migration of this manifest."""
        return len(self.migrations)


def parse_manifest(data: bytes, *, source: str) -> Manifest:
    """Validate manifest JSON; a malformed one raises ManifestInvalid naming `source` and the field."""
    try:
        return Manifest.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"field '{'.'.join(str(part) for part in err['loc']) or '<root>'}': {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise ManifestInvalid(
            f"{source} is malformed: {problems} - rebuild it with `python -m tools.migrations manifest`"
        ) from exc


def load_manifest(folder: Path) -> Manifest:
    """The manifest of a migrations folder on disk (tools' `--migrations DIR`)."""
    path = folder / MANIFEST_FILE
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestInvalid(
            f"{path} cannot be read ({exc.strerror}) - run `python -m tools.migrations manifest`"
        ) from exc
    return parse_manifest(data, source=str(path))


@functools.cache
def bundled_manifest() -> Manifest:
    """The manifest shipped in the `generated` package, read and validated once per process."""
    resource = importlib.resources.files(BUNDLED_PACKAGE).joinpath(MANIFEST_FILE)
    try:
        data = resource.read_bytes()
    except OSError as exc:
        raise ManifestInvalid(
            f"{BUNDLED_PACKAGE}/{MANIFEST_FILE} is missing from the bundle - rebuild with `sam build`"
        ) from exc
    return parse_manifest(data, source=f"{BUNDLED_PACKAGE}/{MANIFEST_FILE}")
