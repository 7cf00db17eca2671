"""Eager fleet migration over SQS: `plan` fans out one message per shard, `migrate_shard` works them.

Lazy migration on first open stays the default; this pair brings every counter file up to date ahead
of traffic, which no single 15-minute invocation could do for millions of files. A shard is a
first-level fan-out directory (`ROOT/ab/`, 1/256 of the fleet); a message names a range of it:
`{"prefix": "ab", "after": null | "<file name>", "until": null | "<file name>"}`, the files named
strictly after `after` up to and including `until`. A worker that hands work on splits its range at the
last file it finished, so a continuation and a redelivery never cover the same file. Migrating a file
twice is harmless (the second time is the fast path), so duplicates cost time, never correctness.

The same function answers `{"action": "status"}` (see `status_action`): the fleet status as
`python -m tools.migrations status --json` prints it, bounded, with a continuation.

boto3 is not a bundled dependency: the Lambda Python runtime ships it, and it is imported on the first
send only, so importing this module (and the API's cold start) never pays for it.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from counter_core import bundled_manifest, config
from counter_core.fleet import (
    FileMigration,
    MigrateOutcome,
    migrate_file,
    root_problem,
    survey_file,
    sweep_temporaries,
)
from counter_core.fleet_report import StatusReport
from counter_core.paths import is_counter_file_basename, is_shard_prefix, walk_fleet
from handlers import observability
from handlers.observability import MetricUnit, emit_metric

__all__ = ["BadFleetEvent", "FleetRootUnusable", "FleetSendFailed", "migrate_shard", "plan", "status_action"]

logger = observability.logger

# The worker's manifest, read at import: a bad bundle fails the cold start, not a shard. Tests
# point it at another migrations folder by replacing this attribute.
MANIFEST = bundled_manifest()

ALL_PREFIXES: tuple[str, ...] = tuple(f"{n:02x}" for n in range(256))
SQS_BATCH_LIMIT = 10  # SendMessageBatch takes at most 10 entries

# The SQS client's own limits, so a send that hangs cannot eat the time kept for it (botocore's
# defaults are 60 s per connect and per read). Standard retry mode backs off between attempts.
_SQS_CONNECT_TIMEOUT_S = 2
_SQS_READ_TIMEOUT_S = 5
_SQS_MAX_ATTEMPTS = 3
# Worst case of one SendMessageBatch: 3 attempts x (2 s connect + 5 s read) = 21 s, plus standard
# mode's backoff between attempts (a few seconds); rounded up.
_SEND_BUDGET_MS = 25_000
# Migrating one file once it is locked: a table rebuild copies every row of one counter (a small
# file; tools.bench measures first touch in milliseconds). 10 s covers a long history on a slow EFS.
_FILE_WORK_MS = 10_000
# plan retries entries that SQS reports as failed (throttling, internal errors) after these pauses.
PLAN_RETRY_DELAYS_S: tuple[float, ...] = (0.5, 2.0)


_RETRY = "-retry"


class BadFleetEvent(ValueError):
    """A plan event or a shard message is not of the documented shape."""


class FleetSendFailed(RuntimeError):
    """Messages could not be put on the fleet queue."""


def safety_margin_ms(busy_timeout_ms: int) -> int:
    """Time the worker keeps in hand before starting a file: one worst-case file, then the hand-off.

    A file can wait out the busy timeout at each of its three locking steps (the connection set-up
    pragmas, the header read, BEGIN EXCLUSIVE - see counter_core.connection and .migrate), then does
    its migration work; after it the continuation still has to reach SQS. With the default 5 s busy
    timeout this is 50 s of the worker's 900 s (template.yaml), a 6% cost only on the last stretch.
    """
    return 3 * busy_timeout_ms + _FILE_WORK_MS + _SEND_BUDGET_MS


# ---------------------------------------------------------------- plan


def plan(event: Mapping[str, Any] | None, context: Any) -> dict[str, int]:
    """Queue one shard message per prefix: all 256, or `{"prefixes": ["0a", "ff"]}`.

    Returns `{"sent": n}`. Raises BadFleetEvent for a malformed event (nothing is sent) and
    FleetSendFailed when SQS keeps refusing messages after retries; running plan again is safe,
    since a shard queued twice is only walked twice.
    """
    logger.append_keys(request_id=str(getattr(context, "aws_request_id", None) or "local"))
    prefixes = _planned_prefixes(event)
    queue_url = _queue_url()
    bodies = {prefix: _message(prefix, None, None) for prefix in prefixes}
    failed = _send(queue_url, bodies, retry_delays_s=PLAN_RETRY_DELAYS_S)
    if failed:
        by_reason: dict[str, list[str]] = {}
        for prefix, reason in sorted(failed.items()):
            by_reason.setdefault(reason, []).append(prefix)
        listed = "; ".join(f"{', '.join(group)}: {reason}" for reason, group in by_reason.items())
        raise FleetSendFailed(
            f"{len(failed)} of {len(prefixes)} shard message(s) were not queued ({listed})"
            " - run plan again with these prefixes (or with all: a shard queued twice is harmless)"
        )
    logger.info("fleet migration planned", extra={"sent": len(bodies)})
    emit_metric("FleetShardsPlanned", MetricUnit.Count, len(bodies))
    return {"sent": len(bodies)}


def _planned_prefixes(event: Mapping[str, Any] | None) -> tuple[str, ...]:
    if event is None:
        return ALL_PREFIXES
    if not isinstance(event, Mapping):
        raise BadFleetEvent(f"the plan event is a {type(event).__name__} - send a JSON object")
    unknown = sorted(str(key) for key in event if key != "prefixes")
    if unknown:
        raise BadFleetEvent(
            f"the plan event has unknown key(s) {', '.join(map(repr, unknown))}"
            ' - send {} for every shard or {"prefixes": ["0a", "ff"]}'
        )
    if "prefixes" not in event:
        return ALL_PREFIXES
    raw = event["prefixes"]
    if not isinstance(raw, list) or not raw:
        raise BadFleetEvent(
            "'prefixes' must be a non-empty list of two-hex-digit shard prefixes"
            ' such as ["0a", "ff"] - omit it to plan every shard'
        )
    bad = [item for item in raw if not isinstance(item, str) or not is_shard_prefix(item)]
    if bad:
        raise BadFleetEvent(
            f"'prefixes' has invalid shard prefix(es) {', '.join(map(repr, bad))}"
            ' - use two lowercase hex digits, "00" to "ff"'
        )
    return tuple(sorted(set(raw)))  # a prefix listed twice is queued once


# ---------------------------------------------------------------- migrate_shard


@dataclass(frozen=True)
class _Shard:
    prefix: str
    after: str | None
    until: str | None = None


@dataclass
class _Run:
    """What one record's walk did; `last_done` is None until a file is finished."""

    shard: _Shard
    last_done: str | None = None
    complete: bool = False
    counts: dict[MigrateOutcome, int] = field(default_factory=lambda: dict.fromkeys(MigrateOutcome, 0))
    failed: list[FileMigration] = field(default_factory=list)


def migrate_shard(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """SQS worker: migrate every counter file of each message's range; or answer `{"action": "status"}`.

    Before each file it checks `context.get_remaining_time_in_millis()` against
    `safety_margin_ms`; when time is short it queues a continuation `{"prefix", "after": <last file
    done>, "until": <the message's until>}` and stops, so a shard is never cut off half-done. If files
    of the part it walked failed, it also queues that part, `{"after": <the message's after>,
    "until": <last file done>}`, and reports the record done: the redelivered and continued work
    never overlap, and the failed part goes on to the dead-letter queue on its own. Records of the batch not reached in
    time are queued again unchanged, rather than reported as failures: a failure would wait out the
    queue's visibility timeout (six times the function's, template.yaml) and count towards
    maxReceiveCount, pushing a healthy shard towards the dead-letter queue.

    Returned in `batchItemFailures` (SQS redelivers them; after maxReceiveCount receives they land in
    the dead-letter queue for an operator, who finds the files in the logs or with
    `python -m tools.migrations status`):
    - a record whose range had files that failed to migrate, walked to its end (the others in it are
      migrated; the redelivery walks the range again, the migrated files at one header read each);
    - every record when COUNTERS_ROOT does not exist (the file system is not mounted): an operator
      error, so the shards reach the dead-letter queue instead of passing as empty;
    - a record whose body is malformed (logged with the reason);
    - a record whose continuation could not be queued (redelivery restarts from the message's own
      `after`; the files done since are the fast path);
    - every record when the invocation starts with less time than the margin (the function's timeout
      is too short: continuing would hand the same work on for ever).
    """
    logger.append_keys(request_id=str(getattr(context, "aws_request_id", None) or "local"))
    if "action" in event:
        return status_action(event, context)
    root = Path(config.counters_root())
    busy_timeout_ms = config.busy_timeout_ms()
    margin_ms = safety_margin_ms(busy_timeout_ms)
    records = list(event.get("Records") or [])

    def out_of_time() -> bool:
        return int(context.get_remaining_time_in_millis()) < margin_ms

    failures: list[str] = []
    runs: dict[str, _Run] = {}
    if out_of_time():
        logger.error(
            "fleet worker started with less time than its safety margin - raise the function's"
            " timeout; every record is reported failed",
            extra={
                "remaining_ms": context.get_remaining_time_in_millis(),
                "margin_ms": margin_ms,
            },
        )
        failures = [record["messageId"] for record in records]
        records = []
    problem = root_problem(root) if records else None
    if problem is not None:
        logger.error(
            "counters root unusable - every record is reported failed; mount the file system or fix"
            " COUNTERS_ROOT, then redrive the dead-letter queue",
            extra={"root": str(root), "reason": problem},
        )
        failures = [record["messageId"] for record in records]
        records = []
    for record in records:
        message_id = record["messageId"]
        try:
            shard = _parse_message(record.get("body"))
        except BadFleetEvent as exc:
            logger.error(
                "malformed fleet message - reported failed; it reaches the dead-letter queue after"
                " maxReceiveCount",
                extra={"message_id": message_id, "reason": str(exc), "body": str(record.get("body"))[:500]},
            )
            failures.append(message_id)
            continue
        run = _Run(shard)
        runs[message_id] = run
        try:
            _walk(run, root, busy_timeout_ms=busy_timeout_ms, out_of_time=out_of_time)
        except OSError as exc:  # listing the shard's directories failed (EFS unavailable, permissions)
            logger.error(
                "fleet shard could not be listed - reported failed",
                extra={"message_id": message_id, "prefix": shard.prefix, "reason": str(exc)},
            )
            failures.append(message_id)
            continue
        for failed in run.failed:
            logger.error(
                "counter file failed to migrate",
                extra={"message_id": message_id, "file": str(failed.path), "reason": failed.error},
            )
        if run.failed and run.complete:
            failures.append(message_id)
        if run.complete and run.shard.until is None:
            _sweep(root, run.shard.prefix, message_id)

    # Unfinished records hand on the rest of their range; one whose walked part had failures hands
    # that part on too, as its own message (see the docstring): entry IDs "<message id>" and
    # "<message id>-retry" (SendMessageBatch IDs allow letters, digits, '-' and '_').
    continuations: dict[str, str] = {}
    for message_id, run in runs.items():
        if run.complete:
            continue
        split = run.last_done or run.shard.after
        continuations[message_id] = _message(run.shard.prefix, split, run.shard.until)
        if run.failed:
            continuations[f"{message_id}{_RETRY}"] = _message(run.shard.prefix, run.shard.after, split)
    if continuations:
        not_sent = _send_continuations(continuations)
        failures.extend(dict.fromkeys(entry.removesuffix(_RETRY) for entry in not_sent))
    for message_id, run in runs.items():
        logger.info(
            "fleet shard walked",
            extra={
                "message_id": message_id,
                "prefix": run.shard.prefix,
                "after": run.shard.after,
                "complete": run.complete,
                "last_done": run.last_done,
                **{outcome.value: count for outcome, count in run.counts.items()},
            },
        )
    _emit_counts(runs.values(), continued=len(continuations))
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in dict.fromkeys(failures)]}


def _walk(run: _Run, root: Path, *, busy_timeout_ms: int, out_of_time: Callable[[], bool]) -> None:
    shard = run.shard
    for entry in walk_fleet(root, prefixes=(shard.prefix,), after=shard.after):
        if shard.until is not None and entry.path.name > shard.until:
            break
        if entry.temporary:
            continue  # swept by _sweep
        if out_of_time():
            return
        result = migrate_file(entry.path, MANIFEST, busy_timeout_ms=busy_timeout_ms, regular=entry.regular)
        run.counts[result.outcome] += 1
        if result.outcome is MigrateOutcome.FAILED:
            run.failed.append(result)
        run.last_done = entry.path.name
    run.complete = True


def _sweep(root: Path, prefix: str, message_id: str) -> None:
    """Delete the shard's stray build files older than an hour (interrupted creations), logging each."""
    try:
        removed = sweep_temporaries(root, prefixes=(prefix,))
    except OSError as exc:
        logger.warning("stray build files not swept", extra={"prefix": prefix, "reason": str(exc)})
        return
    for path in removed:
        logger.info("stray build file swept", extra={"message_id": message_id, "file": str(path)})
    emit_metric("FleetStrayFilesSwept", MetricUnit.Count, len(removed))


def _send_continuations(continuations: dict[str, str]) -> list[str]:
    """Queue each unfinished record's continuation; return the entry keys that could not be."""
    try:
        queue_url = _queue_url()
    except FleetSendFailed as exc:
        logger.error("continuation not queued - reported failed", extra={"reason": str(exc)})
        return list(continuations)
    failed = _send(queue_url, continuations, retry_delays_s=())
    for message_id, body in continuations.items():
        if message_id in failed:
            logger.error(
                "continuation not queued - reported failed; redelivery restarts from the message's own"
                " position",
                extra={"message_id": message_id, "continuation": body, "reason": failed[message_id]},
            )
        else:
            logger.info(
                "out of time - continuation queued", extra={"message_id": message_id, "continuation": body}
            )
    return [message_id for message_id in continuations if message_id in failed]


def _emit_counts(runs: Iterable[_Run], *, continued: int) -> None:
    totals = dict.fromkeys(MigrateOutcome, 0)
    for run in runs:
        for outcome, count in run.counts.items():
            totals[outcome] += count
    emit_metric("FleetFilesMigrated", MetricUnit.Count, totals[MigrateOutcome.MIGRATED])
    emit_metric("FleetFilesAlreadyCurrent", MetricUnit.Count, totals[MigrateOutcome.ALREADY_CURRENT])
    emit_metric("FleetFilesFailed", MetricUnit.Count, totals[MigrateOutcome.FAILED])
    emit_metric("FleetContinuations", MetricUnit.Count, continued)


def _parse_message(body: object) -> _Shard:
    if not isinstance(body, str):
        raise BadFleetEvent("the message has no body - send a JSON object")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadFleetEvent(f"the body is not JSON ({exc.msg}) - send a JSON object") from None
    if not isinstance(data, dict):
        raise BadFleetEvent(f"the body is a JSON {type(data).__name__} - send a JSON object")
    unknown = sorted(key for key in data if key not in ("prefix", "after", "until"))
    if unknown:
        raise BadFleetEvent(
            f"the body has unknown key(s) {', '.join(map(repr, unknown))}"
            " - send only 'prefix', 'after' and 'until'"
        )
    prefix = data.get("prefix")
    if not isinstance(prefix, str) or not is_shard_prefix(prefix):
        raise BadFleetEvent(f'\'prefix\' is {prefix!r} - use two lowercase hex digits, "00" to "ff"')
    bounds = {key: data.get(key) for key in ("after", "until")}
    for key, bound in bounds.items():
        if bound is not None and (
            not isinstance(bound, str) or not is_counter_file_basename(bound) or not bound.startswith(prefix)
        ):
            raise BadFleetEvent(
                f"{key!r} is {bound!r} - use null or the name of a counter file of shard {prefix!r}"
            )
    return _Shard(prefix, bounds["after"], bounds["until"])


# ---------------------------------------------------------------- status


# One status page surveys at most this many files and lists at most STATUS_LISTED of them;
# `next_after` continues. At about 14 ms per file on EFS (27 round trips, tools.bench figure 5e) a
# full page outlasts most timeouts, so a page also ends early when the invocation's time runs short.
STATUS_PAGE_FILES = 20_000
STATUS_LISTED = 100
# Time kept in hand when surveying: one survey waits at most fleet.SURVEY_BUSY_TIMEOUT_MS for a lock.
_STATUS_MARGIN_MS = 10_000


class FleetRootUnusable(RuntimeError):
    """COUNTERS_ROOT does not exist or is not a readable directory (the file system is not mounted)."""


def status_action(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """`{"action": "status", "after"?: "<file name>", "limit"?: n}`: one page of the fleet status.

    The same JSON as `python -m tools.migrations status --json` (counter_core.fleet_report), over the
    counter files in hash order strictly after `after`: at most `limit` files (and as many as the
    invocation's time allows), at most STATUS_LISTED of them listed (`attention_left_off` counts the
    rest). `next_after` is null when the walk reached the end; otherwise send it as `after` for the
    next page. Read-only: files are opened read-only and trial migrations run on in-memory copies.
    """
    after, limit = _parse_status(event)
    root = Path(config.counters_root())
    problem = root_problem(root)
    if problem is not None:
        raise FleetRootUnusable(f"{problem} (COUNTERS_ROOT of this function)")
    report = StatusReport(root, MANIFEST.version, attention_limit=STATUS_LISTED)
    last: str | None = None
    next_after: str | None = None
    temporaries: list[str] = []
    # One walk for both (paths.walk_fleet): a page lists the build files among the files it surveyed.
    for entry in walk_fleet(root, after=after):
        if entry.temporary:
            temporaries.append(str(entry.path.relative_to(root)))
            continue
        if report.files >= limit or int(context.get_remaining_time_in_millis()) < _STATUS_MARGIN_MS:
            next_after = last or after
            break
        report.add(survey_file(entry.path, MANIFEST, regular=entry.regular))
        last = entry.path.name
    if next_after is not None:  # build files of counters past this page belong to the next one
        temporaries = [t for t in temporaries if Path(t).name[: len(next_after)] <= next_after]
    document = report.to_json(stray_temporaries=temporaries, next_after=next_after)
    logger.info(
        "fleet status page",
        extra={"after": after, "files": report.files, "problems": report.problems, "next_after": next_after},
    )
    return document


def _parse_status(event: Mapping[str, Any]) -> tuple[str | None, int]:
    unknown = sorted(str(key) for key in event if key not in ("action", "after", "limit"))
    if event.get("action") != "status" or unknown:
        raise BadFleetEvent(
            f"unknown action {event.get('action')!r} or key(s) {unknown}"
            ' - send {"action": "status"}, with "after": <next_after> to continue'
        )
    after = event.get("after")
    if after is not None and (not isinstance(after, str) or not is_counter_file_basename(after)):
        raise BadFleetEvent(f"'after' is {after!r} - use null or the next_after of the previous page")
    limit = event.get("limit", STATUS_PAGE_FILES)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= STATUS_PAGE_FILES:
        raise BadFleetEvent(f"'limit' is {limit!r} - use a whole number from 1 to {STATUS_PAGE_FILES}")
    return after, limit


# ---------------------------------------------------------------- SQS


def _message(prefix: str, after: str | None, until: str | None) -> str:
    return json.dumps({"prefix": prefix, "after": after, "until": until})


def _queue_url() -> str:
    url = config.fleet_queue_url()
    if url is None:
        raise FleetSendFailed(
            f"{config.ENV_FLEET_QUEUE_URL} is not set - deploy with template.yaml, which sets it to the"
            " fleet queue, or set it to a queue URL"
        )
    return url


@functools.cache
def _sqs() -> Any:
    """The SQS client, made on first use: importing boto3 costs a few hundred milliseconds."""
    import boto3  # type: ignore[import-untyped]
    from botocore.config import Config  # type: ignore[import-untyped]

    return boto3.client(
        "sqs",
        config=Config(
            connect_timeout=_SQS_CONNECT_TIMEOUT_S,
            read_timeout=_SQS_READ_TIMEOUT_S,
            retries={"mode": "standard", "total_max_attempts": _SQS_MAX_ATTEMPTS},
        ),
    )


def _send(queue_url: str, bodies: Mapping[str, str], *, retry_delays_s: tuple[float, ...]) -> dict[str, str]:
    """SendMessageBatch in chunks of 10, keyed by entry ID; returns {entry ID: reason} of those not sent.

    SendMessageBatch succeeds as a call even when some entries fail, so `Failed` is checked every
    time. Entries failed through the sender's fault (SenderFault) are not retried: sending them again
    cannot help.
    """
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    pending = dict(bodies)
    failed: dict[str, str] = {}
    for delay_s in (None, *retry_delays_s):
        if not pending:
            break
        if delay_s is not None:
            time.sleep(delay_s)
        retry: dict[str, str] = {}
        ids = list(pending)
        for start in range(0, len(ids), SQS_BATCH_LIMIT):
            chunk = ids[start : start + SQS_BATCH_LIMIT]
            try:
                response = _sqs().send_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": entry_id, "MessageBody": pending[entry_id]} for entry_id in chunk],
                )
            except (BotoCoreError, ClientError) as exc:
                reason = f"SendMessageBatch failed: {exc}"
                retry.update((entry_id, pending[entry_id]) for entry_id in chunk)
                failed.update(dict.fromkeys(chunk, reason))
                continue
            for entry in response.get("Successful", []):
                failed.pop(entry["Id"], None)
            for entry in response.get("Failed", []):
                entry_id = entry["Id"]
                failed[entry_id] = f"{entry.get('Code', 'unknown')}: {entry.get('Message', '')}".strip()
                if not entry.get("SenderFault", False):
                    retry[entry_id] = pending[entry_id]
        pending = retry
    return failed
