"""Run one per-file job over many counter files in worker processes, and never wait on a dead one.

`multiprocessing.Pool` waits forever when a worker dies mid-task (the task is simply lost), and its
result thread dies on a result that cannot be unpickled; both hung `migrate`. Here each worker gets a
small batch of paths and answers once per batch, and before each file it writes the file's position
in the batch to a shared integer (a memory write, no system call), so the parent always knows which
file a worker is on. A worker that dies (a crash, the OOM killer, a SIGKILL) is reported against
that one file, with its exit code; the other files of its batches go back to the queue (running a
job twice is harmless: a second migration is the fast path) and a fresh worker takes its place.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

# Paths handed to a worker at a time: enough to amortise the pipe round trip, few enough that work
# stays balanced across workers at the end of a run.
BATCH = 16

# An item names one file: a path, or a paths.FleetEntry (the path and its type from the walk).
Job = Callable[[Any, Any], Any]  # (item, the worker's context) -> a picklable result
Setup = Callable[[Any], Any]  # (argument) -> the worker's context, built once per worker
Died = Callable[[Any, str], Any]  # (item, why) -> the result to report for a file whose worker died


class _Position(Protocol):
    value: int


def _worker(setup: Setup, argument: Any, job: Job, conn: Connection, position: _Position) -> None:
    context = setup(argument)
    while (paths := conn.recv()) is not None:
        results = []
        for index, path in enumerate(paths):
            position.value = index
            results.append(job(path, context))
        position.value = -1
        conn.send(results)


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    position: _Position
    # Batches sent and not yet answered, oldest first; the worker works them in that order.
    assigned: deque[list[Any]] = field(default_factory=deque)
    stopped: bool = False


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"the worker process was killed by {name} while on this file"
    return f"the worker process exited with code {exitcode} while on this file"


def run(
    paths: list[Any], *, workers: int, setup: Setup, argument: Any, job: Job, died: Died
) -> Iterator[Any]:
    """Yield one result per path, in completion order; `died(path, why)` stands in for a lost one.

    With one worker the job runs in this process (no pickling, no start-up cost). Workers are spawned,
    not forked: a forked child would inherit whatever SQLite handles the parent holds.
    """
    if workers <= 1:
        context = setup(argument)
        for path in paths:
            yield job(path, context)
        return
    todo: deque[Any] = deque(paths)
    spawn = multiprocessing.get_context("spawn")
    pool: list[_Worker] = []

    def start() -> _Worker:
        parent, child = spawn.Pipe()
        position = spawn.RawValue("i", -1)
        process = spawn.Process(target=_worker, args=(setup, argument, job, child, position), daemon=True)
        process.start()
        child.close()
        return _Worker(process, parent, position)

    def feed(worker: _Worker) -> None:
        # Keep a second batch queued behind the one in hand, so a worker never idles on the pipe.
        while todo and len(worker.assigned) < 2:
            batch = [todo.popleft() for _ in range(min(BATCH, len(todo)))]
            worker.assigned.append(batch)
            worker.conn.send(batch)
        if not todo and not worker.assigned and not worker.stopped:
            worker.conn.send(None)
            worker.stopped = True

    try:
        for _ in range(min(workers, len(todo))):
            worker = start()
            pool.append(worker)
            feed(worker)
        while any(w.assigned for w in pool):
            busy = [w for w in pool if w.assigned]
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                # Liveness first: whatever a dead worker sent before dying is then all in the pipe.
                alive = worker.process.is_alive()
                while worker.assigned and worker.conn.poll():
                    try:
                        results = worker.conn.recv()
                    except (EOFError, OSError):
                        break  # the worker died; handled below
                    worker.assigned.popleft()
                    yield from results
                    feed(worker)
                if worker.assigned and not alive:
                    worker.process.join()
                    batch = worker.assigned.popleft()
                    # -1: it died outside a job (starting up): charge the batch's first file, so a
                    # worker that cannot start costs one file per attempt instead of looping.
                    culprit = max(0, worker.position.value)
                    yield died(batch[culprit], _death(worker.process.exitcode))
                    rest = [*batch[:culprit], *batch[culprit + 1 :], *(p for b in worker.assigned for p in b)]
                    todo.extendleft(reversed(rest))
                    worker.assigned.clear()
                    worker.conn.close()
                    pool.remove(worker)
                    if todo:
                        replacement = start()
                        pool.append(replacement)
                        feed(replacement)
    finally:
        for worker in pool:
            if worker.assigned or not worker.stopped:
                worker.process.kill()  # interrupted (an exception, Ctrl-C): stop mid-file; SQLite rolls back
            worker.process.join()
            worker.conn.close()
