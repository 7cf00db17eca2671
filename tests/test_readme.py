"""README tables that could drift from the code are checked against it."""

from __future__ import annotations

import re
from pathlib import Path

from counter_core import config
from handlers.routes import ROUTES

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_route_table_lists_exactly_the_handlers_routes() -> None:
    documented = re.findall(r"^\| `(GET|PUT|POST|DELETE) (/[^`]*)` \|", README, flags=re.MULTILINE)
    assert sorted(documented) == sorted(ROUTES)


def test_the_configuration_table_lists_exactly_the_environment_the_code_reads() -> None:
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", README, flags=re.MULTILINE))
    read = {value for name, value in vars(config).items() if name.startswith("ENV_")}
    assert documented == read
    assert f"| {config.DEFAULT_BUSY_TIMEOUT_MS} |" in README
    assert f"| {config.DEFAULT_IDEMPOTENCY_TTL_S} |" in README
    assert f"| {config.DEFAULT_CONNECTION_CACHE_SIZE} |" in README
    assert f"| {config.DEFAULT_HISTORY_RETENTION_ROWS} |" in README


def test_the_readme_shows_the_two_commands() -> None:
    assert "make serve" in README and "make test" in README
