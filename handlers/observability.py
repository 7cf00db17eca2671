"""Structured logs and CloudWatch metrics shared by the Lambda entry points (Powertools).

Logs are JSON lines; metrics are embedded metric format (EMF) lines on stdout, which CloudWatch turns
into metrics without an API call. Each function runs in its own process on Lambda, so sharing one
Logger and one Metrics object here costs nothing and keeps names and namespace in one place.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

__all__ = ["METRICS_NAMESPACE", "SERVICE", "MetricUnit", "emit_metric", "logger", "metrics"]

SERVICE = "counters"
METRICS_NAMESPACE = "DurableCounters"

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)


def emit_metric(name: str, unit: MetricUnit, value: float, **dimensions: str) -> None:
    """One CloudWatch metric in embedded metric format, flushed at once with its own dimensions.

    Flushed one by one because each needs a different dimension set (route and status for requests,
    none for migrations). Powertools' `single_metric` ignores POWERTOOLS_METRICS_DISABLED, so this
    goes through `Metrics`, which honours it.
    """
    for key, dimension in dimensions.items():
        metrics.add_dimension(name=key, value=dimension)
    metrics.add_metric(name=name, unit=unit, value=value)
    metrics.flush_metrics()
    metrics.clear_metrics()  # flush skips its own clear when metrics are disabled
