"""The API under real processes: contention, delete against a warm peer, and SIGKILL mid-stream."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import apsw

from counter_core.paths import counter_path as file_of
from tests.api_events import http_event, invoke
from tests.processes import increment_many, serve_commands

REPO = Path(__file__).resolve().parent.parent


def test_many_processes_incrementing_one_counter_lose_nothing(api_root: Path) -> None:
    processes, times = 6, 40
    context = multiprocessing.get_context("spawn")
    barrier = context.Manager().Barrier(processes)
    with context.Pool(processes) as pool:
        results = pool.starmap(increment_many, [(str(api_root), "shared", times, barrier)] * processes)
    assert all(status == 200 for statuses in results for status in statuses), results
    counter = invoke(http_event("GET", "/counters/shared")).json
    assert counter["value"] == processes * times
    conn = apsw.Connection(str(file_of(api_root, "shared")))
    assert conn.execute("SELECT count(*) FROM counter_history").fetchone() == (processes * times,)


def test_a_delete_never_swallows_a_write_from_a_process_holding_a_cached_connection(api_root: Path) -> None:
    # GIVEN another warm process that has counter "shared" open in its connection cache
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    peer = context.Process(target=serve_commands, args=(str(api_root), "shared", child))
    peer.start()
    try:
        parent.send("1")
        assert parent.recv() == (200, 1)
        # WHEN this process deletes the counter, and the peer then increments through its cached connection
        assert invoke(http_event("DELETE", "/counters/shared")).status == 204
        parent.send("2")
        acknowledged = parent.recv()
        # THEN the peer's acknowledged write is what everyone sees: it started again from 0
        assert acknowledged == (200, 1)
        assert invoke(http_event("GET", "/counters/shared")).json["value"] == 1
        parent.send("3")
        assert parent.recv() == (200, 2)
        assert invoke(http_event("GET", "/counters/shared")).json["value"] == 2
        parent.send("stop")
    finally:
        peer.join(timeout=30)
        if peer.is_alive():
            peer.kill()


def test_sigkill_mid_stream_loses_no_acknowledged_increment(api_root: Path) -> None:
    # GIVEN a process streaming increments, printing each one the handler acknowledged
    code = f"from tests.processes import stream_increments; stream_increments({str(api_root)!r}, 'crash')"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acknowledged = 0
    deadline = time.monotonic() + 60
    while acknowledged < 150 and time.monotonic() < deadline:
        acknowledged = int(proc.stdout.readline())
    # WHEN it is killed without warning, mid-stream
    os.kill(proc.pid, signal.SIGKILL)
    for line in proc.stdout:  # acknowledgements already written before the kill
        acknowledged = int(line)
    proc.wait()
    assert acknowledged >= 150
    # THEN every acknowledged increment is on disk, and the file is sound
    conn = apsw.Connection(str(file_of(api_root, "crash")))
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    (value,) = conn.execute("SELECT value FROM counter_metadata").fetchone()
    assert value >= acknowledged
    assert conn.execute("SELECT count(*) FROM counter_history").fetchone() == (value,)
