"""Per-process quarantine of counters whose migration failed: do not hammer a broken file.

Without it, a counter whose pending migration fails (a constraint its rows violate) is migrated again
on every request: `BEGIN EXCLUSIVE`, every statement, a rollback - a burst of exclusive locks and
writes on the network file system per request, for as long as the deployment lasts. After a failure
the counter is answered `MigrationQuarantined` (503 `migration_failed` with Retry-After) without
touching its file until a back-off window passes; then one request tries again. The window doubles
with each consecutive failure, up to a cap, and a success forgets the counter.

Per process, in memory: each Lambda instance learns on its own (one failed attempt per instance per
window), nothing is shared or persisted, and a new deployment (which may fix the migration) starts
clean. `python -m tools.migrations status` lists the files in this state ("failing").
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from counter_core.errors import MigrationFailed, MigrationQuarantined

BASE_BACKOFF_S = 30.0
MAX_BACKOFF_S = 900.0
# Counters remembered at most (oldest forgotten first): a bound on memory, not a policy.
CAPACITY = 10_000

FailureListener = Callable[[str, MigrationFailed], None]


class _Entry:
    __slots__ = ("error", "failures", "until")

    def __init__(self, failures: int, until: float, error: MigrationFailed) -> None:
        self.failures = failures
        self.until = until
        self.error = error


class Quarantine:
    """Counter IDs whose migration failed, each with the time its back-off window ends."""

    def __init__(
        self,
        *,
        base_s: float = BASE_BACKOFF_S,
        max_s: float = MAX_BACKOFF_S,
        clock: Callable[[], float] = time.monotonic,
        on_failure: FailureListener | None = None,
    ) -> None:
        self._base_s = base_s
        self._max_s = max_s
        self._clock = clock
        self._on_failure = on_failure
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def check(self, counter_id: str) -> None:
        """Raise MigrationQuarantined while the counter's back-off window lasts; touches no file."""
        entry = self._entries.get(counter_id)
        if entry is None:
            return
        left = entry.until - self._clock()
        if left <= 0:
            return  # the window is over: this request tries the migration again
        raise MigrationQuarantined(
            f"{entry.error} (not retried for {left:.0f} s more: {entry.failures} consecutive failure(s))",
            public=entry.error.public_message,
            tag=entry.error.tag,
            retry_after_s=math.ceil(left),
        )

    def record(self, counter_id: str, error: MigrationFailed) -> None:
        """A migration of the counter failed: start (or double) its back-off window."""
        previous = self._entries.pop(counter_id, None)
        failures = 1 if previous is None else previous.failures + 1
        window = min(self._max_s, self._base_s * 2 ** (failures - 1))
        self._entries[counter_id] = _Entry(failures, self._clock() + window, error)
        while len(self._entries) > CAPACITY:
            self._entries.popitem(last=False)
        if self._on_failure is not None:
            self._on_failure(counter_id, error)

    def release(self, counter_id: str) -> None:
        """The counter's file is current now: forget it."""
        self._entries.pop(counter_id, None)

    def __contains__(self, counter_id: object) -> bool:
        return counter_id in self._entries
