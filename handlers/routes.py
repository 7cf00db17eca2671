"""The route table: the one list of what the API serves (the template and OpenAPI derive from it)."""

from __future__ import annotations

from collections.abc import Callable

from handlers.http import Request
from handlers.plain_bodies import plain_set, plain_step

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any

    from pydantic import BaseModel


class Route:
    """One route of the API (a plain class with __slots__: see counter_core.values)."""

    __slots__ = (
        "body",
        "body_required",
        "errors",
        "method",
        "mutation",
        "operation_id",
        "path",
        "plain_body",
        "response",
        "success",
        "summary",
    )

    def __init__(
        self,
        method: str,
        path: str,
        operation_id: str,
        summary: str,
        *,
        body: str | None = None,
        body_required: bool = False,
        plain_body: Callable[[object], dict[str, Any] | None] | None = None,
        success: int = 200,
        response: str | None = None,
        mutation: bool = False,
        errors: tuple[int, ...] = (),
    ) -> None:
        self.method = method
        self.path = path
        self.operation_id = operation_id
        self.summary = summary
        # Models are named, not imported: counter_core.models imports pydantic, which only a request
        # with a body plain_body does not settle (or the history query, or the
        # OpenAPI document) needs. model() resolves a name.
        self.body = body
        self.body_required = body_required
        # The body's JSON form when it is plainly valid, checked without pydantic
        # (handlers.plain_bodies); None from it, or no function, sends the body to the model. A request
        # without an optional body is read as `{}`, which it settles too: no pydantic for it either.
        self.plain_body = plain_body
        self.success = success
        self.response = response
        self.mutation = mutation
        self.errors = errors


def model(name: str) -> type[BaseModel]:
    """The pydantic model of counter_core.models called `name` (imported on first use)."""
    from counter_core import models

    found: type[BaseModel] = getattr(models, name)
    return found


TABLE: tuple[Route, ...] = (
    Route(
        "GET",
        "/counters/{id}",
        "getCounter",
        "Read a counter",
        response="CounterView",
        errors=(400, 404, 503),
    ),
    Route(
        "PUT",
        "/counters/{id}",
        "setCounter",
        "Create or overwrite a counter's value (201 created, 200 replaced)",
        body="SetCounter",
        body_required=True,
        plain_body=plain_set,
        response="CounterView",
        mutation=True,
        errors=(400, 404, 409, 413, 415, 422, 503),
    ),
    Route(
        "DELETE",
        "/counters/{id}",
        "deleteCounter",
        "Delete a counter and its history",
        success=204,
        mutation=True,
        errors=(400, 404, 422, 503),
    ),
    Route(
        "POST",
        "/counters/{id}/increment",
        "incrementCounter",
        "Add `by` (default 1); creates the counter at 0 first if needed",
        body="Step",
        plain_body=plain_step,
        response="CounterView",
        mutation=True,
        errors=(400, 404, 409, 413, 415, 422, 503),
    ),
    Route(
        "POST",
        "/counters/{id}/decrement",
        "decrementCounter",
        "Subtract `by` (default 1); creates the counter at 0 first if needed",
        body="Step",
        plain_body=plain_step,
        response="CounterView",
        mutation=True,
        errors=(400, 404, 409, 413, 415, 422, 503),
    ),
    Route(
        "POST",
        "/counters/{id}/reset",
        "resetCounter",
        "Set the value back to 0; 404 if the counter does not exist (a reset never creates one)",
        response="CounterView",
        mutation=True,
        errors=(400, 404, 422, 503),
    ),
    Route(
        "GET",
        "/counters/{id}/history",
        "getCounterHistory",
        "The counter's operations, newest first, a page at a time",
        response="HistoryPage",
        errors=(400, 404, 422, 503),
    ),
    Route("GET", "/openapi.json", "getOpenApi", "This API's OpenAPI document"),
)

# (method, path) pairs: what template.yaml must route to this function, and nothing else.
ROUTES: tuple[tuple[str, str], ...] = tuple((route.method, route.path) for route in TABLE)


class NoRoute(Exception):
    """No route has this path."""


class WrongMethod(Exception):
    """The path exists, not with this method."""

    def __init__(self, allow: list[str]) -> None:
        super().__init__(", ".join(allow))
        self.allow = allow


class BadPathEncoding(Exception):
    """A path segment does not decode to UTF-8."""


# Each template split once, at import, not per request.
_TEMPLATES: tuple[tuple[Route, tuple[str, ...]], ...] = tuple(
    (route, tuple(route.path.strip("/").split("/"))) for route in TABLE
)
# API Gateway's route keys ("POST /counters/{id}/increment") and the parameter names of each route.
_BY_KEY: dict[str, tuple[Route, tuple[str, ...]]] = {
    f"{route.method} {route.path}": (route, tuple(p[1:-1] for p in parts if p.startswith("{")))
    for route, parts in _TEMPLATES
}


def resolve(request: Request) -> tuple[Route, dict[str, str]]:
    """The route and its path parameters, as API Gateway matched and decoded them when the event says
    (its route key and pathParameters: never decoded again); else matched here on the path.

    Raises NoRoute, WrongMethod or BadPathEncoding.
    """
    if request.route_key is not None and request.path_parameters is not None:
        found = _BY_KEY.get(request.route_key)
        if found is not None and found[0].method == request.method:
            route, names = found
            if all(name in request.path_parameters for name in names):
                return route, {name: request.path_parameters[name] for name in names}
    segments = request.segments()
    if segments is None:
        raise BadPathEncoding(request.path)
    return match(request.method, segments)


def match(method: str, segments: list[str]) -> tuple[Route, dict[str, str]]:
    """The route and its path parameters for decoded path segments; NoRoute or WrongMethod otherwise."""
    allowed: list[str] = []
    for route, parts in _TEMPLATES:
        params = _bind(parts, segments)
        if params is None:
            continue
        if route.method == method:
            return route, params
        allowed.append(route.method)
    if allowed:
        raise WrongMethod(allowed)
    raise NoRoute("/".join(segments))


def _bind(parts: tuple[str, ...], segments: list[str]) -> dict[str, str] | None:
    if len(parts) != len(segments):
        return None
    params: dict[str, str] = {}
    for part, segment in zip(parts, segments, strict=True):
        if part[0] == "{":
            params[part[1:-1]] = segment
        elif part != segment:
            return None
    return params
