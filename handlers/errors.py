"""The one mapping from failures to HTTP responses. Nothing else renders an error."""

from __future__ import annotations

from counter_core import errors as domain
from handlers.http import Response, json_response

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any

# Seconds a client should wait after a 503: a busy counter frees in milliseconds, a deployment in minutes.
RETRY_AFTER_BUSY_S = "1"
RETRY_AFTER_MIGRATION_S = "30"

_STATUS: tuple[tuple[type[domain.CounterError], int], ...] = (
    (domain.InvalidCounterId, 400),
    (domain.InvalidCursor, 400),
    (domain.CounterNotFound, 404),
    (domain.OutOfRange, 409),
    (domain.IdempotencyKeyReused, 422),
    (domain.StorageBusy, 503),
    (domain.StorageUnavailable, 503),
    (domain.MigrationError, 503),
    (domain.ManifestInvalid, 503),
    (domain.Misconfigured, 500),
)


class ApiError(Exception):
    """A request-level failure found in `handlers/` (routing, headers, body)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.details = details


def error_response(
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    headers: dict[str, str] | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    error: dict[str, Any] = {"code": code, "message": message, "request_id": request_id}
    if details is not None:
        error["details"] = details
    return json_response(status, {"error": error}, headers=headers)


def from_api_error(exc: ApiError, request_id: str) -> Response:
    return error_response(
        exc.status, exc.code, exc.message, request_id, headers=exc.headers, details=exc.details
    )


def from_domain_error(exc: domain.CounterError, request_id: str) -> Response:
    """Clients see `public_message` only: no path, SQL or traceback."""
    status = next((s for kind, s in _STATUS if isinstance(exc, kind)), 500)
    headers: dict[str, str] = {}
    if isinstance(exc, domain.StorageBusy):
        headers["retry-after"] = RETRY_AFTER_BUSY_S
    elif isinstance(exc, domain.MigrationQuarantined):
        headers["retry-after"] = str(exc.retry_after_s)
    elif status == 503:
        headers["retry-after"] = RETRY_AFTER_MIGRATION_S
    return error_response(status, exc.code, exc.public_message, request_id, headers=headers)


def internal_error(request_id: str) -> Response:
    return error_response(
        500,
        "internal",
        f"an unexpected error occurred - retry, and quote request ID {request_id} if it persists",
        request_id,
    )
