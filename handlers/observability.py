"""Structured logs and CloudWatch metrics shared by the Lambda entry points.

Logs are JSON lines from aws-lambda-powertools' Logger, built when the first line it will write is
logged (DeferredLogger). Metrics are CloudWatch embedded metric format
(EMF) lines on stdout, which CloudWatch turns into metrics without an API call
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
They are written here rather than through Powertools' Metrics, by measurement: every request emits
one, and Powertools' add/serialize/flush/clear cycle (with its environment reads and validation) was
a quarter of the handler's own CPU per request in a profile, and its import 8 ms of cold start
(tools.bench, figures 2 and 3). The format is one small, stable JSON shape.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from enum import StrEnum

from counter_core import config

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at cold start (figure 3)
if TYPE_CHECKING:
    from typing import Any

    from aws_lambda_powertools import Logger

__all__ = ["METRICS_NAMESPACE", "SERVICE", "DeferredLogger", "MetricUnit", "emit_metric", "logger"]

SERVICE = "counters"
METRICS_NAMESPACE = "DurableCounters"

# The levels Powertools' Logger takes from AWS Lambda's advanced logging controls (AWS_LAMBDA_LOG_LEVEL)
# or from its own settings, for which it sets nothing but that level: the ones a deferral reproduces.
_ALC_LEVELS = {
    "INFO": logging.INFO,
    "WARN": logging.WARNING,
    "ERROR": logging.ERROR,
    "FATAL": logging.CRITICAL,
}
_LEVELS = {
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


def _log_method(level: int, name: str) -> Callable[..., None]:
    """DeferredLogger's method `name`: Powertools' own, once a line at `level` will be written."""

    def log(self: DeferredLogger, msg: object, *args: Any, stacklevel: int = 2, **kwargs: Any) -> None:
        built = self._logger(level)
        if built is not None:
            # stacklevel + 1: the line's `location` names the caller, not this wrapper.
            getattr(built, name)(msg, *args, stacklevel=stacklevel + 1, **kwargs)

    log.__name__ = name
    return log


class DeferredLogger:
    """Powertools' Logger, imported and built when the first line it will write is logged.

    Importing aws_lambda_powertools and building its Logger was 30-60 ms of CPU of a 245 ms cold start
    (python -X importtime; tools.bench, figure 3), for a logger that writes nothing on an ordinary
    request (its lines are DEBUG or for failures). Until then, this object does what the Logger would
    do with its settings: it sets the same level on the same standard-library logger (named for the
    service), checks a call against it (so a level changed later, by setLevel or pytest's caplog,
    counts) and keeps appended keys for the Logger it builds. Settings it does not reproduce exactly
    (DEBUG, a sample rate, both level variables at once, POWERTOOLS_DEBUG) build the Logger at once.
    Every line is written by Powertools, so the log shape is Powertools' own.
    """

    def __init__(self, service: str, **options: Any) -> None:
        self._service = service
        # The Logger writes to the stream it finds when built; bind it now, as building at import did.
        self._options: dict[str, Any] = {"stream": sys.stdout, **options}
        self._keys: dict[str, Any] = {}
        self._built: Logger | None = None
        self._std = logging.getLogger(service)
        level = _deferrable_level(config.logger_environment())
        if level is None:
            self._build()
        else:
            self._std.setLevel(level)

    def _build(self) -> Logger:
        from aws_lambda_powertools.logging.logger import Logger

        deferred_level = self._std.level if self._built is None else None
        built = Logger(service=self._service, **self._options)
        if deferred_level:  # keep a level set since (setLevel, caplog) over the one the Logger re-applies
            self._std.setLevel(deferred_level)
        if self._keys:
            built.append_keys(**self._keys)
        self._built = built
        return built

    def _logger(self, level: int) -> Logger | None:
        """The Logger if a line at `level` is written, built if need be; None if it is not written."""
        if self._built is not None:
            return self._built
        if not self._std.isEnabledFor(level):
            return None
        return self._build()

    debug = _log_method(logging.DEBUG, "debug")
    info = _log_method(logging.INFO, "info")
    warning = _log_method(logging.WARNING, "warning")
    error = _log_method(logging.ERROR, "error")
    exception = _log_method(logging.ERROR, "exception")

    def append_keys(self, **keys: Any) -> None:
        if self._built is not None:
            self._built.append_keys(**keys)
        else:
            self._keys.update(keys)

    def __getattr__(self, name: str) -> Any:
        """Anything else (registered_formatter, remove_keys, ...) is the Logger's own."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._built or self._build(), name)


def _deferrable_level(settings: dict[str, str]) -> int | None:
    """The level Powertools' Logger would set, when that level is all it would do; else None."""
    alc = settings.get("AWS_LAMBDA_LOG_LEVEL")
    own = settings.get("POWERTOOLS_LOG_LEVEL") or settings.get("LOG_LEVEL")
    if "POWERTOOLS_LOGGER_SAMPLE_RATE" in settings or "POWERTOOLS_DEBUG" in settings or (alc and own):
        return None
    if alc is not None:
        return _ALC_LEVELS.get(alc)
    return _LEVELS.get(own.upper()) if own is not None else logging.INFO


# A logged exception's traceback goes in one field, `exception`, as the formatted text a person reads;
# serialize_stacktrace=False drops Powertools' second, structured copy of it (`stack_trace`, a list of
# frames), which doubled the line and split the traceback in two places.
logger = DeferredLogger(SERVICE, serialize_stacktrace=False)


class MetricUnit(StrEnum):
    """The CloudWatch units these metrics use."""

    Count = "Count"
    Milliseconds = "Milliseconds"


def emit_metric(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
    """Write one metric as one EMF line, with the `service` dimension and any others given."""
    if config.metrics_disabled():
        return
    head, tail = _emf_template(name, unit.value, tuple(dimensions.items()))
    # One line per request: only the timestamp and the value change, so the rest of the document is
    # serialised once per metric shape (tools.bench, figure 2: a quarter of the CPU the handler added).
    # An int (most metrics: counts) is its own JSON; a float goes through json (NaN, Infinity).
    number = str(value) if type(value) is int else json.dumps(value)
    sys.stdout.write(f"{head}{time.time_ns() // 1_000_000}{tail}{number}}}\n")
    sys.stdout.flush()  # one write per line, as the Logger does: nothing waits in a buffer when Lambda freezes


@functools.lru_cache(maxsize=256)
def _emf_template(name: str, unit: str, dimensions: tuple[tuple[str, str], ...]) -> tuple[str, str]:
    """The EMF document of one metric shape around its timestamp and value, as json.dumps writes it."""
    values = {"service": SERVICE, **dict(dimensions)}
    metrics = [
        {
            "Namespace": METRICS_NAMESPACE,
            "Dimensions": [list(values)],
            "Metrics": [{"Name": name, "Unit": unit}],
        }
    ]
    compact = functools.partial(json.dumps, separators=(",", ":"))
    head = '{"_aws":{"Timestamp":'
    tail = f',"CloudWatchMetrics":{compact(metrics)}}},{compact(values)[1:-1]},{compact(name)}:'
    return head, tail
