"""Domain errors. One root, narrow children; `handlers/` maps them to HTTP.

`str(error)` is the full story for logs and operators (it may name files and SQLite's message);
`public_message` is what a client may see: the cause and the remedy, never a path or SQL.
Each class carries a stable snake_case `code`.
"""

from __future__ import annotations


class CounterError(Exception):
    """Root of every error this library raises on purpose."""

    code = "counter_error"

    @property
    def public_message(self) -> str:
        return str(self)


class Misconfigured(CounterError):
    """An environment setting holds a value the service cannot use; `str()` names it for the log."""

    code = "misconfigured"

    @property
    def public_message(self) -> str:
        return (
            "the service is misconfigured - its operator must fix a setting (the log names it); retry later"
        )


class InvalidCounterId(CounterError):
    """A counter ID is empty, too long, or holds control characters."""

    code = "invalid_counter_id"


class CounterNotFound(CounterError):
    """The counter does not exist (reads never create its file)."""

    code = "not_found"

    @property
    def public_message(self) -> str:
        return "the counter does not exist - create it with PUT or an increment"


class StorageBusy(CounterError):
    """Another writer held the counter's lock past the busy timeout."""

    code = "busy"

    @property
    def public_message(self) -> str:
        return "the counter is busy with other writers - retry after the delay in Retry-After"


class StorageUnavailable(CounterError):
    """The file system refused an operation (full, read-only, not permitted, an I/O error); nothing changed."""

    code = "storage_unavailable"

    @property
    def public_message(self) -> str:
        return (
            "the counter's storage refused the operation (full, read-only, not permitted or failing) -"
            " nothing changed; retry later (an operator must free space or fix the file system)"
        )


class ManifestInvalid(CounterError):
    """The bundled migration manifest is malformed; the bundle cannot serve."""

    code = "manifest_invalid"

    @property
    def public_message(self) -> str:
        return "this deployment's migration manifest is invalid - redeploy a bundle built by `sam build`"


class MigrationError(CounterError):
    """Root of the reasons a counter database could not be brought up to date; it is left unchanged."""

    code = "migration_error"

    def __init__(self, message: str, *, public: str) -> None:
        super().__init__(message)
        self._public = public

    @property
    def public_message(self) -> str:
        return self._public

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (fleet workers): Exception's default reduce calls
        # cls(*args) and would lose the keyword-only `public` (and raise TypeError while unpickling).
        return (_rebuild, (type(self), self.args, self.__dict__))


class NotACounterDatabase(MigrationError):
    """The file is an SQLite database of some other application; it is never migrated."""

    code = "not_a_counter_database"


class CounterFileDamaged(MigrationError):
    """The counter's file is empty or cut short: new files only ever appear complete, so it was damaged."""

    code = "counter_file_damaged"


class MigrationDrift(MigrationError):
    """An applied migration's recorded sha256 differs from the bundle's copy of it."""

    code = "migration_drift"


class SchemaTooNew(MigrationError):
    """The database applied migrations this bundle does not know, and not all of them are additive."""

    code = "schema_too_new"


class AdoptionRefused(MigrationError):
    """A database migrated by Drizzle's migrator does not match this bundle's history."""

    code = "adoption_refused"


class MigrationFailed(MigrationError):
    """A migration statement failed; the whole transaction was rolled back."""

    code = "migration_failed"

    def __init__(self, message: str, *, public: str, tag: str = "", statement: int | None = None) -> None:
        super().__init__(message, public=public)
        # Which migration failed, and at which statement (1-based; None for the foreign key check
        # after all statements): fleet tools report them as fields.
        self.tag = tag
        self.statement = statement


class MigrationQuarantined(MigrationFailed):
    """The counter's migration failed recently; this process does not retry it until its back-off ends."""

    code = "migration_failed"

    def __init__(self, message: str, *, public: str, tag: str = "", retry_after_s: int) -> None:
        super().__init__(message, public=public, tag=tag)
        self.retry_after_s = retry_after_s


class OutOfRange(CounterError):
    """The operation would take the value outside a signed 64-bit integer; nothing changed."""

    code = "out_of_range"


class IdempotencyKeyReused(CounterError):
    """An Idempotency-Key was sent again with a different request."""

    code = "idempotency_key_reused"


class InvalidCursor(CounterError):
    """A history cursor was not one this service issued."""

    code = "invalid_cursor"


def _rebuild(cls: type[MigrationError], args: tuple[object, ...], state: dict[str, object]) -> MigrationError:
    """Unpickle a MigrationError without calling its __init__ (its keyword arguments live in `state`)."""
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error
