"""handlers.fleet: `plan` and `migrate_shard` with real boto3 calls against moto's SQS, on real counter files.

The worker's manifest is pointed at a temporary migrations folder (v2: v1 plus an additive column), so
files made at v1 have one migration to take.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw
import boto3
import pytest
from moto import mock_aws

from counter_core import Manifest, counter_path, ensure_current, open_database
from counter_core.paths import counter_hash
from handlers import fleet
from tests.test_fleet import file_version as _version

SHARD = "ab"
OTHER_SHARD = "cd"
AMPLE_MS = 900_000  # the worker's Timeout in template.yaml
LOW_MS = 1_000


# ---------------------------------------------------------------- fixtures and helpers


@dataclass
class Queue:
    url: str
    client: Any
    batch_sizes: list[int] = field(default_factory=list)  # entries of each SendMessageBatch the handlers made

    def drain(self) -> list[dict[str, Any]]:
        """Every message now in the queue, received once each (moto hides them for 30 s after)."""
        messages: list[dict[str, Any]] = []
        while batch := self.client.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            messages.extend(batch)
        return messages

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(message["Body"]) for message in self.drain()]


class FakeContext:
    """A Lambda context whose remaining time is ample for the first `ample_calls` reads, then low."""

    aws_request_id = "req-fleet"

    def __init__(self, *, ample_calls: int | None = None) -> None:
        self.ample_calls = ample_calls
        self.calls = 0

    def get_remaining_time_in_millis(self) -> int:
        self.calls += 1
        return AMPLE_MS if self.ample_calls is None or self.calls <= self.ample_calls else LOW_MS


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and region, so no call can reach a real account; a fresh handler SQS client."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    sqs = fleet._sqs  # a test may replace it; the cache to clear is the real one's
    sqs.cache_clear()
    yield
    sqs.cache_clear()


@pytest.fixture
def fleet_queue(aws_credentials: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    """An empty SQS queue (moto) that FLEET_QUEUE_URL names; the handlers' batch sizes are recorded."""
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        url = client.create_queue(QueueName="counters-fleet")["QueueUrl"]
        monkeypatch.setenv("FLEET_QUEUE_URL", url)
        queue = Queue(url, client)
        fleet._sqs().meta.events.register(
            "provide-client-params.sqs.SendMessageBatch",
            lambda params, **_: queue.batch_sizes.append(len(params["Entries"])),
        )
        yield queue


@pytest.fixture
def counters_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, v2_manifest: Manifest) -> Path:
    """COUNTERS_ROOT at an empty directory; the worker migrates to v2; metrics are printed as EMF."""
    root = tmp_path / "counters"
    monkeypatch.setenv("COUNTERS_ROOT", str(root))
    monkeypatch.setattr(fleet, "MANIFEST", v2_manifest)
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED", raising=False)
    return root


def _ids_in_shard(prefix: str, count: int, *, tag: str) -> list[str]:
    ids: list[str] = []
    n = 0
    while len(ids) < count:
        if counter_hash(f"{tag}-{n}").startswith(prefix):
            ids.append(f"{tag}-{n}")
        n += 1
    return ids


def _counters(root: Path, prefix: str, count: int, manifest: Manifest, *, tag: str) -> list[Path]:
    """`count` counter files of shard `prefix` at the manifest's version, sorted as the worker walks them."""
    paths = []
    for counter_id in _ids_in_shard(prefix, count, tag=tag):
        path = counter_path(root, counter_id)
        conn = open_database(path, create=True, busy_timeout_ms=1000)
        ensure_current(conn, manifest, label=counter_id)
        conn.close()
        paths.append(path)
    return sorted(paths, key=lambda p: p.name)


@pytest.fixture
def v1_shard(counters_root: Path, v1_manifest: Manifest) -> list[Path]:
    """Six counter files of shard 'ab' at v1, sorted by name (and one of shard 'cd', also at v1)."""
    _counters(counters_root, OTHER_SHARD, 1, v1_manifest, tag="other")
    return _counters(counters_root, SHARD, 6, v1_manifest, tag="c")


def _applied(path: Path) -> list[int]:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return [row[0] for row in conn.execute("SELECT idx FROM __migrations ORDER BY idx")]
    finally:
        conn.close()


def _record(message_id: str, body: str | dict[str, Any]) -> dict[str, Any]:
    """One record as the SQS event source delivers it."""
    text = body if isinstance(body, str) else json.dumps(body)
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": text,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1795000000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:counters-fleet",
        "awsRegion": "us-east-1",
    }


def _event(*records: dict[str, Any]) -> dict[str, Any]:
    return {"Records": list(records)}


def _from_queue(messages: list[dict[str, Any]]) -> dict[str, Any]:
    return _event(*(_record(m["MessageId"], m["Body"]) for m in messages))


def _metrics(capsys: pytest.CaptureFixture[str]) -> dict[str, float]:
    """Fleet metrics printed as EMF since the last read, summed by name."""
    totals: dict[str, float] = {}
    for line in capsys.readouterr().out.splitlines():
        if not line.startswith("{"):
            continue
        blob = json.loads(line)
        if "_aws" not in blob:
            continue
        for metric in blob["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            if metric["Name"].startswith("Fleet"):
                value = blob[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + sum(
                    value if isinstance(value, list) else [value]
                )
    return totals


def _logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [json.loads(fleet.logger.registered_formatter.format(record)) for record in caplog.records]


# ---------------------------------------------------------------- plan


def test_plan_queues_one_message_per_shard_in_batches_of_ten(fleet_queue: Queue) -> None:
    # WHEN the whole fleet is planned
    result = fleet.plan({}, FakeContext())
    # THEN 256 messages went out in 26 SendMessageBatch calls of at most 10, one per prefix from the start
    assert result == {"sent": 256}
    assert fleet_queue.batch_sizes == [10] * 25 + [6]
    bodies = fleet_queue.bodies()
    assert sorted(body["prefix"] for body in bodies) == [f"{n:02x}" for n in range(256)]
    assert all(body == {"prefix": body["prefix"], "after": None, "until": None} for body in bodies)


def test_plan_without_an_event_plans_every_shard(fleet_queue: Queue) -> None:
    assert fleet.plan(None, FakeContext()) == {"sent": 256}


def test_plan_queues_only_the_prefixes_asked_for(fleet_queue: Queue) -> None:
    # GIVEN a subset, one prefix listed twice
    result = fleet.plan({"prefixes": ["ff", "0a", "ff"]}, FakeContext())
    # THEN each is queued once
    assert result == {"sent": 2}
    assert fleet_queue.batch_sizes == [2]
    assert sorted(fleet_queue.bodies(), key=lambda b: b["prefix"]) == [
        {"prefix": "0a", "after": None, "until": None},
        {"prefix": "ff", "after": None, "until": None},
    ]


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"prefixes": ["0a", "0A", "zz", 7]},
            "'prefixes' has invalid shard prefix(es) '0A', 'zz', 7 - use two lowercase hex digits, \"00\" to \"ff\"",
        ),
        (
            {"prefixes": "ab"},
            '\'prefixes\' must be a non-empty list of two-hex-digit shard prefixes such as ["0a", "ff"]'
            " - omit it to plan every shard",
        ),
        (
            {"prefixes": []},
            '\'prefixes\' must be a non-empty list of two-hex-digit shard prefixes such as ["0a", "ff"]'
            " - omit it to plan every shard",
        ),
        (
            {"prefix": ["ab"]},
            'the plan event has unknown key(s) \'prefix\' - send {} for every shard or {"prefixes": ["0a", "ff"]}',
        ),
        (["ab"], "the plan event is a list - send a JSON object"),
    ],
)
def test_plan_refuses_a_malformed_event_and_sends_nothing(
    fleet_queue: Queue, event: Any, message: str
) -> None:
    with pytest.raises(fleet.BadFleetEvent) as raised:
        fleet.plan(event, FakeContext())
    assert str(raised.value) == message
    assert fleet_queue.batch_sizes == []
    assert fleet_queue.drain() == []


class RefusingClient:
    """The handler's real (moto) client, except that SQS reports some entries in `Failed`, as it does
    under throttling, in a call that otherwise succeeds."""

    def __init__(self, real: Any, *, refuse: set[str], times: int) -> None:
        self.real = real
        self.refuse = refuse
        self.times = times  # how many calls see each refused entry refused
        self.refused: dict[str, int] = {}
        self.calls = 0

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.calls += 1
        failed, kept = [], []
        for entry in Entries:
            if entry["Id"] in self.refuse and self.refused.get(entry["Id"], 0) < self.times:
                self.refused[entry["Id"]] = self.refused.get(entry["Id"], 0) + 1
                failed.append(
                    {"Id": entry["Id"], "SenderFault": False, "Code": "InternalError", "Message": "try again"}
                )
            else:
                kept.append(entry)
        response = self.real.send_message_batch(QueueUrl=QueueUrl, Entries=kept) if kept else {}
        return {"Successful": response.get("Successful", []), "Failed": response.get("Failed", []) + failed}


def test_plan_retries_entries_that_sqs_reports_failed(
    fleet_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SQS refuses the entry of shard '07' once
    monkeypatch.setattr(fleet, "PLAN_RETRY_DELAYS_S", (0.0, 0.0))
    client = RefusingClient(fleet._sqs(), refuse={"07"}, times=1)
    monkeypatch.setattr(fleet, "_sqs", lambda: client)
    # WHEN the fleet is planned
    result = fleet.plan({}, FakeContext())
    # THEN the refused entry was sent again on its own, and every shard is queued exactly once
    assert result == {"sent": 256}
    assert client.calls == 27 and fleet_queue.batch_sizes[-1] == 1
    assert sorted(body["prefix"] for body in fleet_queue.bodies()) == [f"{n:02x}" for n in range(256)]


def test_plan_raises_when_sqs_keeps_refusing_entries(
    fleet_queue: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN SQS refuses '07' and '08' every time
    monkeypatch.setattr(fleet, "PLAN_RETRY_DELAYS_S", (0.0, 0.0))
    client = RefusingClient(fleet._sqs(), refuse={"07", "08"}, times=99)
    monkeypatch.setattr(fleet, "_sqs", lambda: client)
    # WHEN shards 00..0f are planned
    prefixes = [f"{n:02x}" for n in range(16)]
    with pytest.raises(fleet.FleetSendFailed) as raised:
        fleet.plan({"prefixes": prefixes}, FakeContext())
    # THEN it says which shards are missing, why, and what to do; the others are queued
    assert str(raised.value) == (
        "2 of 16 shard message(s) were not queued (07, 08: InternalError: try again)"
        " - run plan again with these prefixes (or with all: a shard queued twice is harmless)"
    )
    assert client.calls == 2 + 2  # the first pass in two batches, then one retry per delay
    assert sorted(body["prefix"] for body in fleet_queue.bodies()) == sorted(set(prefixes) - {"07", "08"})


def test_plan_without_a_queue_url_says_what_to_set(
    aws_credentials: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLEET_QUEUE_URL", raising=False)
    with pytest.raises(fleet.FleetSendFailed) as raised:
        fleet.plan({}, FakeContext())
    assert str(raised.value) == (
        "FLEET_QUEUE_URL is not set - deploy with template.yaml, which sets it to the fleet queue,"
        " or set it to a queue URL"
    )


def test_importing_the_module_does_not_import_boto3() -> None:
    # boto3 is in the Lambda runtime but costs a few hundred milliseconds; only a send pays for it.
    code = "import sys, handlers.fleet; print('boto3' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------- migrate_shard


def test_worker_migrates_every_file_of_its_shard_and_nothing_else(
    fleet_queue: Queue, counters_root: Path, v1_shard: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN six counters of shard 'ab' and one of shard 'cd', all at v1
    [other] = sorted((counters_root / OTHER_SHARD).rglob("*.sqlite3"))
    capsys.readouterr()
    # WHEN the message for shard 'ab' is worked
    result = fleet.migrate_shard(_event(_record("m-1", {"prefix": SHARD, "after": None})), FakeContext())
    # THEN every file of 'ab' took the new migration, once; 'cd' was not touched; nothing was re-queued
    assert result == {"batchItemFailures": []}
    assert [_version(path) for path in v1_shard] == [2] * 6
    assert all(_applied(path) == [0, 1] for path in v1_shard)
    assert _version(other) == 1
    assert fleet_queue.drain() == []
    metrics = _metrics(capsys)
    assert metrics["FleetFilesMigrated"] == 6
    assert metrics["FleetFilesAlreadyCurrent"] == 0
    assert metrics["FleetFilesFailed"] == 0
    assert metrics["FleetContinuations"] == 0


def test_worker_counts_already_current_files(
    fleet_queue: Queue,
    counters_root: Path,
    v1_manifest: Manifest,
    v2_manifest: Manifest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN shard 'ab' with two files at v1 and three already at v2
    behind = _counters(counters_root, SHARD, 2, v1_manifest, tag="old")
    current = _counters(counters_root, SHARD, 3, v2_manifest, tag="new")
    capsys.readouterr()
    # WHEN the shard is worked
    result = fleet.migrate_shard(_event(_record("m-1", {"prefix": SHARD, "after": None})), FakeContext())
    # THEN two are counted migrated and three already current
    assert result == {"batchItemFailures": []}
    assert [_version(path) for path in behind + current] == [2] * 5
    metrics = _metrics(capsys)
    assert (metrics["FleetFilesMigrated"], metrics["FleetFilesAlreadyCurrent"]) == (2, 3)


def test_worker_hands_on_a_continuation_when_time_runs_short_and_resuming_finishes_the_shard(
    fleet_queue: Queue, v1_shard: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a worker whose remaining time drops below the safety margin partway through the shard
    context = FakeContext(ample_calls=4)
    capsys.readouterr()
    # WHEN it works the shard
    result = fleet.migrate_shard(_event(_record("m-1", {"prefix": SHARD, "after": None})), context)
    # THEN it migrated a leading run of files, stopped, and queued where it stopped; the record succeeded
    assert result == {"batchItemFailures": []}
    done = [path for path in v1_shard if _version(path) == 2]
    assert 0 < len(done) < len(v1_shard)
    assert done == v1_shard[: len(done)]
    [continuation] = fleet_queue.drain()
    assert json.loads(continuation["Body"]) == {"prefix": SHARD, "after": done[-1].name, "until": None}
    first = _metrics(capsys)
    assert first["FleetFilesMigrated"] == len(done)
    assert first["FleetContinuations"] == 1

    # WHEN the continuation is worked with ample time
    result = fleet.migrate_shard(_from_queue([continuation]), FakeContext())
    # THEN the rest of the shard is migrated, no file twice, and nothing more is queued
    assert result == {"batchItemFailures": []}
    assert [_version(path) for path in v1_shard] == [2] * 6
    assert all(_applied(path) == [0, 1] for path in v1_shard)
    second = _metrics(capsys)
    assert second["FleetFilesMigrated"] == len(v1_shard) - len(done)
    assert second["FleetFilesAlreadyCurrent"] == 0
    assert fleet_queue.drain() == []


def test_worker_requeues_records_it_did_not_reach_in_time(
    fleet_queue: Queue, counters_root: Path, v1_shard: list[Path]
) -> None:
    # GIVEN two records, and time for only part of the first
    [other] = sorted((counters_root / OTHER_SHARD).rglob("*.sqlite3"))
    event = _event(
        _record("m-ab", {"prefix": SHARD, "after": None}),
        _record("m-cd", {"prefix": OTHER_SHARD, "after": None}),
    )
    # WHEN the batch is worked
    result = fleet.migrate_shard(event, FakeContext(ample_calls=3))
    # THEN the first hands on where it stopped, the second is queued again unchanged, and neither failed
    assert result == {"batchItemFailures": []}
    done = [path for path in v1_shard if _version(path) == 2]
    assert 0 < len(done) < len(v1_shard)
    assert _version(other) == 1
    assert sorted(fleet_queue.bodies(), key=lambda b: b["prefix"]) == [
        {"prefix": SHARD, "after": done[-1].name, "until": None},
        {"prefix": OTHER_SHARD, "after": None, "until": None},
    ]


@pytest.mark.parametrize("bad_file", ["foreign database", "text file"])
def test_worker_reports_the_record_whose_shard_has_a_failed_file(
    fleet_queue: Queue,
    counters_root: Path,
    v1_shard: list[Path],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    bad_file: str,
) -> None:
    # GIVEN shard 'ab' also holds, under a counter's file name, a foreign SQLite database or a text
    # file (corrupt: not a database at all)
    [foreign_id] = _ids_in_shard(SHARD, 1, tag="foreign")
    foreign = counter_path(counters_root, foreign_id)
    foreign.parent.mkdir(parents=True, exist_ok=True)
    if bad_file == "text file":
        foreign.write_text("not a database " * 100)
    else:
        apsw.Connection(str(foreign)).execute("CREATE TABLE accounts (id integer)").close()
    foreign_bytes = foreign.read_bytes()
    [other] = sorted((counters_root / OTHER_SHARD).rglob("*.sqlite3"))
    capsys.readouterr()
    event = _event(
        _record("m-ab", {"prefix": SHARD, "after": None}),
        _record("m-cd", {"prefix": OTHER_SHARD, "after": None}),
    )
    # WHEN a batch with a record for 'ab' and one for 'cd' is worked
    result = fleet.migrate_shard(event, FakeContext())
    # THEN only the 'ab' record is reported failed (SQS retries it, then the dead-letter queue keeps it),
    # every good file of both shards is migrated, and the foreign file is untouched and logged
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-ab"}]}
    assert [_version(path) for path in [*v1_shard, other]] == [2] * 7
    assert foreign.read_bytes() == foreign_bytes
    [logged] = [log for log in _logs(caplog) if log["message"] == "counter file failed to migrate"]
    assert logged["message_id"] == "m-ab" and logged["file"] == str(foreign)
    assert "not a counter database" in logged["reason"]
    metrics = _metrics(capsys)
    assert (metrics["FleetFilesMigrated"], metrics["FleetFilesFailed"]) == (7, 1)
    assert fleet_queue.drain() == []


def test_worker_short_of_time_after_a_failed_file_splits_its_range_so_no_file_is_walked_twice(
    fleet_queue: Queue, counters_root: Path, v1_shard: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a foreign database among the shard's files, and time that runs short just after it
    [foreign_id] = _ids_in_shard(SHARD, 1, tag="foreign")
    foreign = counter_path(counters_root, foreign_id)
    foreign.parent.mkdir(parents=True, exist_ok=True)
    apsw.Connection(str(foreign)).execute("CREATE TABLE accounts (id integer)").close()
    walked = sorted([*v1_shard, foreign], key=lambda p: p.name)
    stop_after = walked.index(foreign) + 1  # the files that fit in the time, the foreign one last
    assert stop_after < len(walked), "the IDs' hashes are fixed: the foreign file is not the shard's last"
    split = walked[stop_after - 1].name
    # WHEN the shard is worked (one remaining-time read at the start, then one before each file)
    result = fleet.migrate_shard(
        _event(_record("m-1", {"prefix": SHARD, "after": None})), FakeContext(ample_calls=1 + stop_after)
    )
    # THEN the rest goes on as a continuation and the walked part, with its failed file, as its own
    # message; the record itself is done, so no redelivery walks what the continuation walks
    assert result == {"batchItemFailures": []}
    messages = fleet_queue.drain()
    assert sorted((json.loads(m["Body"]) for m in messages), key=lambda b: b["after"] is None) == [
        {"prefix": SHARD, "after": split, "until": None},
        {"prefix": SHARD, "after": None, "until": split},
    ]
    # WHEN both are worked
    caplog.clear()
    retry = next(m for m in messages if json.loads(m["Body"])["until"] == split)
    rest = next(m for m in messages if m is not retry)
    opened: list[str] = []
    real = fleet.migrate_file

    def recording(
        path: Path, manifest: Manifest, *, busy_timeout_ms: int, regular: bool | None = None
    ) -> fleet.FileMigration:
        opened.append(path.name)
        return real(path, manifest, busy_timeout_ms=busy_timeout_ms, regular=regular)

    fleet.migrate_file = recording  # type: ignore[assignment]
    try:
        retried = fleet.migrate_shard(_from_queue([retry]), FakeContext())
        continued = fleet.migrate_shard(_from_queue([rest]), FakeContext())
    finally:
        fleet.migrate_file = real  # type: ignore[assignment]
    # THEN the part with the failed file fails alone (towards the dead-letter queue), the rest succeeds,
    # and every file was walked exactly once across the two
    assert retried == {"batchItemFailures": [{"itemIdentifier": retry["MessageId"]}]}
    assert continued == {"batchItemFailures": []}
    assert sorted(opened) == [p.name for p in walked]
    assert [_version(path) for path in v1_shard] == [2] * 6
    assert fleet_queue.drain() == []


def test_worker_walks_only_up_to_a_message_s_until(fleet_queue: Queue, v1_shard: list[Path]) -> None:
    body = {"prefix": SHARD, "after": v1_shard[0].name, "until": v1_shard[3].name}
    assert fleet.migrate_shard(_event(_record("m-1", body)), FakeContext()) == {"batchItemFailures": []}
    assert [_version(path) for path in v1_shard] == [1, 2, 2, 2, 1, 1]


def test_worker_fails_every_record_when_the_root_does_not_exist(
    fleet_queue: Queue, counters_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN COUNTERS_ROOT names a directory that does not exist (the file system is not mounted)
    assert not counters_root.exists()
    event = _event(
        _record("m-ab", {"prefix": SHARD, "after": None}),
        _record("m-cd", {"prefix": OTHER_SHARD, "after": None}),
    )
    # WHEN a batch is worked
    result = fleet.migrate_shard(event, FakeContext())
    # THEN every record fails (they reach the dead-letter queue), with the reason logged
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-ab"}, {"itemIdentifier": "m-cd"}]}
    [logged] = [log for log in _logs(caplog) if log["message"].startswith("counters root unusable")]
    assert (
        logged["reason"] == f"{counters_root} does not exist - check the path (is the file system mounted?)"
    )
    assert fleet_queue.drain() == []


def test_worker_sweeps_old_stray_build_files_of_a_finished_shard(
    fleet_queue: Queue, counters_root: Path, v1_shard: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    from counter_core.paths import temporary_name

    old = Path(temporary_name(v1_shard[0], pid=4242, token="0badc0de"))
    young = Path(temporary_name(v1_shard[1], pid=4243, token="0badc0df"))
    old.write_bytes(b"half-built")
    young.write_bytes(b"half-built")
    hour_ago = time.time() - 3700
    os.utime(old, (hour_ago, hour_ago))
    assert fleet.migrate_shard(_event(_record("m-1", {"prefix": SHARD, "after": None})), FakeContext()) == {
        "batchItemFailures": []
    }
    assert not old.exists() and young.exists()
    [logged] = [log for log in _logs(caplog) if log["message"] == "stray build file swept"]
    assert logged["file"] == str(old)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "the body is not JSON (Expecting value) - send a JSON object"),
        ('["ab"]', "the body is a JSON list - send a JSON object"),
        (
            '{"prefix": "AB", "after": null}',
            "'prefix' is 'AB' - use two lowercase hex digits, \"00\" to \"ff\"",
        ),
        ('{"after": null}', '\'prefix\' is None - use two lowercase hex digits, "00" to "ff"'),
        (
            '{"prefix": "ab", "afterr": null}',
            "the body has unknown key(s) 'afterr' - send only 'prefix', 'after' and 'until'",
        ),
        (
            '{"prefix": "ab", "after": "../../etc/passwd"}',
            "'after' is '../../etc/passwd' - use null or the name of a counter file of shard 'ab'",
        ),
        (
            '{"prefix": "ab", "after": "' + "cd" + "0" * 62 + '.sqlite3"}',
            f"'after' is '{'cd' + '0' * 62}.sqlite3' - use null or the name of a counter file of shard 'ab'",
        ),
    ],
)
def test_worker_reports_a_malformed_message_and_works_the_others(
    fleet_queue: Queue,
    v1_shard: list[Path],
    caplog: pytest.LogCaptureFixture,
    body: str,
    reason: str,
) -> None:
    event = _event(_record("m-bad", body), _record("m-ab", {"prefix": SHARD, "after": None}))
    result = fleet.migrate_shard(event, FakeContext())
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-bad"}]}
    assert [_version(path) for path in v1_shard] == [2] * 6
    [logged] = [log for log in _logs(caplog) if log["message"].startswith("malformed fleet message")]
    assert (logged["message_id"], logged["reason"]) == ("m-bad", reason)


def test_worker_resumes_strictly_after_the_file_a_message_names(
    fleet_queue: Queue, v1_shard: list[Path]
) -> None:
    body = {"prefix": SHARD, "after": v1_shard[2].name}
    assert fleet.migrate_shard(_event(_record("m-1", body)), FakeContext()) == {"batchItemFailures": []}
    assert [_version(path) for path in v1_shard] == [1, 1, 1, 2, 2, 2]


def test_worker_reports_a_record_whose_continuation_cannot_be_queued(
    fleet_queue: Queue,
    v1_shard: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN FLEET_QUEUE_URL names a queue that does not exist, and time runs short mid-shard
    monkeypatch.setenv("FLEET_QUEUE_URL", fleet_queue.url.replace("counters-fleet", "gone"))
    # WHEN the shard is worked
    result = fleet.migrate_shard(
        _event(_record("m-1", {"prefix": SHARD, "after": None})), FakeContext(ample_calls=3)
    )
    # THEN the record is reported failed, so SQS redelivers it and the shard is not cut off
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-1"}]}
    [logged] = [log for log in _logs(caplog) if log["message"].startswith("continuation not queued")]
    assert logged["message_id"] == "m-1" and "NonExistentQueue" in logged["reason"]
    # AND the redelivered message finishes the shard, the files done before being the fast path
    assert fleet.migrate_shard(_event(_record("m-1", {"prefix": SHARD, "after": None})), FakeContext()) == {
        "batchItemFailures": []
    }
    assert all(_applied(path) == [0, 1] for path in v1_shard)


def test_worker_started_with_less_time_than_its_margin_fails_every_record_and_touches_nothing(
    fleet_queue: Queue, v1_shard: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a function whose timeout is shorter than the safety margin (continuing would loop for ever)
    event = _event(
        _record("m-ab", {"prefix": SHARD, "after": None}),
        _record("m-cd", {"prefix": OTHER_SHARD, "after": None}),
    )
    result = fleet.migrate_shard(event, FakeContext(ample_calls=0))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-ab"}, {"itemIdentifier": "m-cd"}]}
    assert [_version(path) for path in v1_shard] == [1] * 6
    assert fleet_queue.drain() == []
    assert any(log["message"].startswith("fleet worker started with less time") for log in _logs(caplog))


def test_safety_margin_covers_a_worst_case_file_and_the_hand_off() -> None:
    # Three busy-timeout waits for one file, its migration work, then a SendMessageBatch with retries;
    # with the default busy timeout it stays a small share of the worker's 900 s.
    assert fleet.safety_margin_ms(5000) == 50_000
    assert fleet.safety_margin_ms(5000) < AMPLE_MS // 10
