"""The real local server (tools.serve) on a free port, for tests that speak HTTP to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    stdout: Path  # files, not pipes: a pipe nobody drains fills up and blocks the server
    stderr: Path

    def stop(self) -> int:
        """Ctrl-C, as a person would; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                return self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@contextmanager
def running_server(root: Path, *extra: str) -> Iterator[Server]:
    """Start `python -m tools.serve --port 0 --root ROOT [EXTRA...]`, yield it once it listens, stop it after."""
    logs = root.parent / f"{root.name}-server"
    logs.mkdir(parents=True, exist_ok=True)
    stdout, stderr = logs / "stdout.txt", logs / "stderr.txt"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.serve", "--port", "0", "--root", str(root), *extra],
            cwd=REPO,
            stdout=out,
            stderr=err,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    deadline = time.monotonic() + 30
    prefix = "Serving the counter API at "
    while not stdout.read_text().startswith(prefix):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"server did not start: {stdout.read_text()!r} {stderr.read_text()!r}")
        time.sleep(0.02)
    url = stdout.read_text().splitlines()[0][len(prefix) :].split(" ", 1)[0]
    server = Server(url, process, stdout, stderr)
    try:
        yield server
    finally:
        server.stop()
