"""Structured logs and CloudWatch metrics shared by the Lambda entry points.

Logs are JSON lines from aws-lambda-powertools' Logger. Metrics are CloudWatch embedded metric format
(EMF) lines on stdout, which CloudWatch turns into metrics without an API call
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
They are written here rather than through Powertools' Metrics, by measurement: every request emits
one, and Powertools' add/serialize/flush/clear cycle (with its environment reads and validation) was
a quarter of the handler's own CPU per request in a profile, and its import 8 ms of cold start
(tools.bench, figures 2 and 7). The format is one small, stable JSON shape.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from enum import StrEnum

from aws_lambda_powertools import Logger

from counter_core import config

__all__ = ["METRICS_NAMESPACE", "SERVICE", "MetricUnit", "emit_metric", "logger"]

SERVICE = "counters"
METRICS_NAMESPACE = "DurableCounters"

# A logged exception's traceback goes in one field, `exception`, as the formatted text a person reads;
# serialize_stacktrace=False drops Powertools' second, structured copy of it (`stack_trace`, a list of
# frames), which doubled the line and split the traceback in two places.
logger = Logger(service=SERVICE, serialize_stacktrace=False)


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
    sys.stdout.write(f"{head}{time.time_ns() // 1_000_000}{tail}{json.dumps(value)}}}\n")
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
