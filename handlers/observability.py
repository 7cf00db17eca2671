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
    values = {"service": SERVICE, **dimensions}
    document = {
        "_aws": {
            "Timestamp": time.time_ns() // 1_000_000,
            "CloudWatchMetrics": [
                {
                    "Namespace": METRICS_NAMESPACE,
                    "Dimensions": [list(values)],
                    "Metrics": [{"Name": name, "Unit": unit.value}],
                }
            ],
        },
        **values,
        name: value,
    }
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    sys.stdout.flush()  # one write per line, as the Logger does: nothing waits in a buffer when Lambda freezes
