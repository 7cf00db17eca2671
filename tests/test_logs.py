"""Log lines an operator reads: creations are not migrations, and a 500 keeps its traceback in one field."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

import handlers.api
from counter_core import MigrationReport
from handlers.api import handler
from tests.api_events import http_event


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    formatter = handlers.api.logger.registered_formatter
    return [json.loads(formatter.format(record)) for record in caplog.records]


def test_a_new_counter_is_logged_as_a_creation_at_debug_only(
    api_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN the default level, INFO
    caplog.set_level(logging.INFO, logger="counters")
    # WHEN a thousand new counters are created
    for i in range(1000):
        assert handler(http_event("POST", f"/counters/new-{i}/increment"), None)["statusCode"] == 200
    # THEN not one line is logged for them
    assert _lines(caplog) == []
    # AND at DEBUG a creation says it is one
    caplog.set_level(logging.DEBUG, logger="counters")
    handler(http_event("POST", "/counters/one-more/increment"), None)
    [created] = [line for line in _lines(caplog) if line["message"] != "request"]
    assert (created["level"], created["message"], created["counter_id"]) == (
        "DEBUG",
        "counter created",
        "one-more",
    )


def test_an_existing_file_brought_up_to_date_is_logged_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="counters")
    report = MigrationReport(from_version=1, to_version=2, applied=("0001_add_owner",), seconds=0.002)
    handlers.api._migrated("old", report)
    [line] = _lines(caplog)
    assert (line["level"], line["message"], line["applied"]) == (
        "INFO",
        "counter database migrated",
        ["0001_add_owner"],
    )


def test_a_500_logs_its_traceback_in_one_readable_field(
    api_root: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a store that fails in a way nobody planned for
    handler(http_event("PUT", "/counters/x", body={"value": 1}), None)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(handlers.api._current_state().store, "get", broken)
    # WHEN a request hits it
    assert handler(http_event("GET", "/counters/x", request_id="req-500"), None)["statusCode"] == 500
    # THEN one line, with the whole traceback as text in `exception`, and no second copy of it
    [line] = [entry for entry in _lines(caplog) if entry["message"] == "unexpected error"]
    assert line["request_id"] == "req-500"
    assert line["exception"].startswith("Traceback (most recent call last):\n")
    assert line["exception"].endswith("RuntimeError: the disk caught fire")
    assert line["exception_name"] == "RuntimeError"
    assert "stack_trace" not in line
    record = next(r for r in caplog.records if r.getMessage() == "unexpected error")
    assert "\n" not in handlers.api.logger.registered_formatter.format(record)
