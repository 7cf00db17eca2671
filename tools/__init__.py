"""Build- and operations-time tools; never bundled into the Lambda.

The tools' messages print commands as `python -m tools.<name> ...`. Typed from the repository root
with an interpreter that lacks the project's packages (a system `python3`), such a command is handed
on here, unchanged, to the project's `.venv/bin/python`, so it runs as printed once any make target
has created `.venv`. An interpreter that has the packages (the venv itself, CI's) runs it directly.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

_VENV_PYTHON = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "python"
# Set on the hand-over, so a .venv that still lacks the packages is said once, never exec'd in a loop.
_HANDED_OVER = "COUNTERS_TOOLS_HANDED_OVER"
# Tools that need none of the project's packages: tools.client needs botocore only, as its users have.
_STANDALONE = ("tools.client",)


def _run_in_project_environment() -> None:
    if importlib.util.find_spec("apsw") is not None or "-m" not in sys.orig_argv:
        return  # the packages are here, or this is an import, not a command
    module = sys.orig_argv[sys.orig_argv.index("-m") + 1 :][:1]
    if module and module[0] in _STANDALONE:
        return
    handed_over = os.environ.get(_HANDED_OVER) == "1"
    if (
        not handed_over
        and _VENV_PYTHON.exists()
        and Path(sys.prefix).resolve() != _VENV_PYTHON.parent.parent.resolve()
    ):
        os.environ[_HANDED_OVER] = "1"
        os.execv(_VENV_PYTHON, [str(_VENV_PYTHON), *sys.orig_argv[1:]])  # noqa: S606 - the same argv, no shell
    sys.stderr.write(
        "error: this interpreter lacks the project's packages (apsw) and .venv cannot supply them"
        " - run `make test` or `make serve` once to create or sync .venv, then run the command again\n"
    )
    raise SystemExit(2)


_run_in_project_environment()
