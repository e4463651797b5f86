"""compactor/handler.py's compact_handler against moto: real-shaped EventBridge events publish
Iceberg tables equal to scan(), a second run commits nothing, a failing table is reported while
the others compact and the handler then raises, the compaction lag is measured from the oldest
uncovered commit and printed as an EMF line, and tables are registered and kept current in Glue."""
import json
import time
import uuid

import pyarrow as pa
import pytest

import flussfs
from compactor import handler
from flussfs import paths, snapshots
from compactor.handler import CompactionFailedError, compact_handler, compaction_lag_s
from conftest import BUCKET, REGION
from helpers import create, events
from iceberg_readers import iceberg_properties, pyiceberg_rows

# What EventBridge Scheduler delivers: the Input configured on the schedule, verbatim.
SCHEDULER_INPUT = {"tables": []}
# What an EventBridge rule with a schedule expression delivers.
SCHEDULED_EVENT = {
    "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
    "source": "aws.events", "account": "123456789012", "time": "2026-11-24T12:00:00Z",
    "region": "us-east-1", "resources": ["arn:aws:events:us-east-1:123456789012:rule/flussfs-compactor"],
    "detail": {}}


@pytest.fixture
def env(monkeypatch, s3_options):
    """The handler's environment as terraform sets it, with moto's endpoint in the storage options."""
    for name in ("FLUSSFS_TABLES", "FLUSSFS_WORKER_FUNCTION", "FLUSSFS_FANOUT_SPILL_URI",
                 "FLUSSFS_FANOUT_CONCURRENCY", "FLUSSFS_GLUE_DATABASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLUSSFS_STORAGE_OPTIONS", json.dumps(s3_options))
    return monkeypatch


def rows(t: pa.Table) -> list[tuple]:
    return sorted(tuple(r.values()) for r in t.select(["id", "name", "score"]).to_pylist())


def pk_and_log(s3_uri, s3_options):
    pk = create(s3_uri + "/orders", primary_key=["id"], buckets=4, storage_options=s3_options)
    pk.upsert(events(range(300)))
    pk.delete(pa.table({"id": pa.array([3, 30, 300 - 1], pa.int64())}))
    pk.upsert(events(range(250, 320)))
    lg = create(s3_uri + "/clicks", buckets=2, storage_options=s3_options)
    lg.append(events(range(100)))
    lg.append(events(range(50)))
    return pk, lg


def printed(capsys) -> tuple[dict, list[dict]]:
    """(the summary line, the EMF lines) the handler printed."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return [d for d in lines if "tables" in d][-1], [d for d in lines if "_aws" in d]


def test_scheduler_input_publishes_iceberg_tables_equal_to_scan(env, s3_uri, s3_options, capsys):
    """A Scheduler input naming a primary-key and a log table compacts both; pyiceberg reads
    each published Iceberg table with exactly the rows of scan(); the summary is JSON."""
    pk, lg = pk_and_log(s3_uri, s3_options)
    out = compact_handler({**SCHEDULER_INPUT, "tables": [pk.uri, lg.uri]}, None)
    assert out["errors"] == [] and [e["uri"] for e in out["tables"]] == [pk.uri, lg.uri]
    assert json.loads(json.dumps(out)) == out
    assert printed(capsys)[0] == out
    for entry, table in zip(out["tables"], (pk, lg)):
        assert entry["committed"] and entry["snapshot"] == 1 and entry["lag_s"] == 0
        expected = rows(table.scan().to_arrow())
        assert len(expected) == (318 if table.primary_key else 150)
        assert rows(pyiceberg_rows(entry["metadata_location"], iceberg_properties(s3_options))) == expected


def test_scheduled_event_takes_tables_from_env_and_a_second_run_commits_nothing(env, s3_uri, s3_options):
    """An EventBridge "Scheduled Event" compacts the tables of FLUSSFS_TABLES; invoked again with
    the same event it commits nothing, reports the same metadata location, and the Iceberg rows
    are not doubled."""
    pk, lg = pk_and_log(s3_uri, s3_options)
    env.setenv("FLUSSFS_TABLES", json.dumps([pk.uri, lg.uri]))
    first = compact_handler(SCHEDULED_EVENT, None)
    second = compact_handler(SCHEDULED_EVENT, None)
    assert [e["committed"] for e in first["tables"]] == [True, True]
    assert [e["committed"] for e in second["tables"]] == [False, False]
    assert [e["changes"] for e in second["tables"]] == [0, 0]
    for a, b, table in zip(first["tables"], second["tables"], (pk, lg)):
        assert (b["snapshot"], b["metadata_location"]) == (a["snapshot"], a["metadata_location"])
        iceberg = pyiceberg_rows(b["metadata_location"], iceberg_properties(s3_options))
        assert rows(iceberg) == rows(table.scan().to_arrow())


def test_a_failing_table_is_reported_the_others_compact_and_the_handler_raises(
        env, s3_uri, s3_options, capsys):
    """A table URI that does not exist yields an error entry naming it; the tables before and
    after it still compact; the summary is printed and then the handler raises."""
    pk, lg = pk_and_log(s3_uri, s3_options)
    missing = f"s3://{BUCKET}/{uuid.uuid4().hex}/nothing-here"
    with pytest.raises(CompactionFailedError, match="nothing-here"):
        compact_handler({"tables": [pk.uri, missing, lg.uri]}, None)
    summary, emf = printed(capsys)
    assert [e["uri"] for e in summary["errors"]] == [missing]
    assert "NotFoundError" in summary["errors"][0]["error"]
    assert [(e["uri"], e["committed"]) for e in summary["tables"]] == [(pk.uri, True), (lg.uri, True)]
    assert [m["Table"] for m in emf] == [pk.uri, lg.uri]  # a table that cannot be read has no lag
    assert rows(pyiceberg_rows(summary["tables"][1]["metadata_location"],
                               iceberg_properties(s3_options))) == rows(lg.scan().to_arrow())


def test_each_table_prints_one_emf_lag_line(env, s3_uri, s3_options, capsys):
    """After each table the handler prints one CloudWatch EMF line: namespace flussfs, metric
    CompactionLagSeconds in Seconds, dimension Table = the URI, value = the summary's lag_s."""
    pk, lg = pk_and_log(s3_uri, s3_options)
    out = compact_handler({"tables": [pk.uri, lg.uri]}, None)
    _, emf = printed(capsys)
    assert len(emf) == 2
    for line, entry in zip(emf, out["tables"]):
        assert line["_aws"]["CloudWatchMetrics"] == [{
            "Namespace": "flussfs", "Dimensions": [["Table"]],
            "Metrics": [{"Name": "CompactionLagSeconds", "Unit": "Seconds"}]}]
        assert abs(line["_aws"]["Timestamp"] / 1000 - time.time()) < 60
        assert line["Table"] == entry["uri"] and line["CompactionLagSeconds"] == entry["lag_s"] == 0


def test_a_table_that_fails_to_compact_still_reports_its_lag(env, s3_uri, s3_options, capsys):
    """A readable table whose compaction fails (a corrupt commit in its log) still gets its EMF
    lag line, measured from its oldest uncovered commit, so the lag alarm sees a stuck compactor."""
    import s3fs
    pk, _ = pk_and_log(s3_uri, s3_options)
    fs = s3fs.S3FileSystem(**s3_options)
    fs.pipe_file(f"{pk.uri}/{paths.commit(0, 1)}", b"not a commit")
    with pytest.raises(CompactionFailedError, match="CorruptObjectError"):
        compact_handler({"tables": [pk.uri]}, None)
    summary, emf = printed(capsys)
    assert summary["tables"] == [] and [e["uri"] for e in summary["errors"]] == [pk.uri]
    oldest_s = min(pk.logs[b].read_commit(0).timestamp_ms for b in range(pk.buckets)) / 1000
    assert [m["Table"] for m in emf] == [pk.uri]
    assert 0 < emf[0]["CompactionLagSeconds"] <= time.time() - oldest_s + 0.01


def test_worker_function_setting_sends_tasks_to_lambda(env, s3_uri, s3_options, moto_lambda):
    """With FLUSSFS_WORKER_FUNCTION set, the handler sends its compaction tasks to that Lambda
    function (here moto's stub, which echoes the request, so the table fails with an
    InvocationError that names the function) and commits nothing."""
    name, _ = moto_lambda
    pk, _ = pk_and_log(s3_uri, s3_options)
    env.setenv("FLUSSFS_WORKER_FUNCTION", name)
    with pytest.raises(CompactionFailedError, match=f"InvocationError: {name} answered"):
        compact_handler({"tables": [pk.uri]}, None)
    assert snapshots.latest_number(pk.store) == 0


def test_lag_counts_from_the_oldest_commit_the_snapshot_does_not_cover(s3_uri, s3_options):
    """compaction_lag_s is the age of the oldest commit past the snapshot in any bucket: it
    stays put while newer commits arrive, is 0 right after a compaction, and restarts from the
    first commit after it."""
    import compactor
    table = create(s3_uri, primary_key=["id"], buckets=4, storage_options=s3_options)
    assert compaction_lag_s(table, 0) == 0
    table.upsert(events(range(40)))  # commit 0 of every bucket
    oldest_ms = min(h.timestamp_ms for h in table.heads())
    now_s = oldest_ms / 1000 + 90
    assert compaction_lag_s(table, 0, now_s) == pytest.approx(90)
    table.upsert(events(range(40)))  # newer commits change nothing
    assert compaction_lag_s(table, 0, now_s) == pytest.approx(90)
    result = compactor.compact(s3_uri, storage_options=s3_options)
    assert compaction_lag_s(table, result.snapshot) == 0
    table.upsert(events([1]))
    newest_ms = max(h.timestamp_ms for h in table.heads())
    assert compaction_lag_s(table, result.snapshot, newest_ms / 1000 + 5) == pytest.approx(5)


# ---- AWS Glue ----------------------------------------------------------------------------
@pytest.fixture
def glue(env, s3_endpoint, s3_options):
    """A fresh Glue database on moto (which serves Glue on the S3 endpoint); the handler reaches
    it through AWS_ENDPOINT_URL_GLUE, as any AWS client does. Yields a reader of Glue tables."""
    import boto3
    from pyiceberg.catalog.glue import GlueCatalog

    database = f"flussfs_{uuid.uuid4().hex[:12]}"
    boto3.client("glue", endpoint_url=s3_endpoint, region_name=REGION).create_database(
        DatabaseInput={"Name": database})
    env.setenv("FLUSSFS_GLUE_DATABASE", database)
    env.setenv("AWS_ENDPOINT_URL_GLUE", s3_endpoint)
    catalog = GlueCatalog("test", **{"glue.endpoint": s3_endpoint, "glue.region": REGION,
                                     "glue.access-key-id": "testing",
                                     "glue.secret-access-key": "testing",
                                     **iceberg_properties(s3_options)})
    return database, catalog


def test_glue_registers_then_follows_new_versions(glue, s3_uri, s3_options):
    """The first compaction registers the table in Glue; a later one points Glue at the new
    metadata (previous_metadata_location kept); a run with nothing new leaves it; pyiceberg's
    Glue catalog reads the rows of scan() each time."""
    database, catalog = glue
    pk, _ = pk_and_log(s3_uri, s3_options)
    first = compact_handler({"tables": [pk.uri]}, None)["tables"][0]
    assert first["glue"] == "registered"
    assert rows(catalog.load_table((database, "orders")).scan().to_arrow()) == rows(pk.scan().to_arrow())
    pk.upsert(events(range(400, 450)))
    second = compact_handler({"tables": [pk.uri]}, None)["tables"][0]
    assert second["glue"] == "updated" and second["snapshot"] == 2
    table = catalog.load_table((database, "orders"))
    assert table.metadata_location == second["metadata_location"]
    params = table.catalog.glue.get_table(DatabaseName=database, Name="orders")["Table"]["Parameters"]
    assert params["table_type"] == "ICEBERG"
    assert params["previous_metadata_location"] == first["metadata_location"]
    assert rows(table.scan().to_arrow()) == rows(pk.scan().to_arrow())
    assert compact_handler({"tables": [pk.uri]}, None)["tables"][0]["glue"] == "unchanged"


def test_glue_name_held_by_another_table_is_not_taken_over(glue, s3_uri, s3_options):
    """A table whose Glue name is taken by another table's registration compacts, but Glue keeps
    pointing at the first table and the handler reports the clash and raises."""
    database, catalog = glue
    first, _ = pk_and_log(s3_uri, s3_options)
    other, _ = pk_and_log(f"s3://{BUCKET}/{uuid.uuid4().hex}", s3_options)
    compact_handler({"tables": [first.uri]}, None)
    with pytest.raises(CompactionFailedError, match="not the Iceberg table of"):
        compact_handler({"tables": [other.uri]}, None)
    assert handler.glue_table_name(other.uri) == "orders"
    location = catalog.load_table((database, "orders")).metadata_location
    assert location.startswith(first.uri + "/metadata/")
    assert snapshots.latest_number(other.store) == 1  # the clash is Glue's only: it compacted


def test_fanout_concurrency_comes_from_the_environment(env):
    """FLUSSFS_FANOUT_CONCURRENCY (the worker's reserved concurrency) bounds the invocations in
    flight; unset it is 32; anything but a whole number >= 1 is an error naming the variable."""
    assert handler.fanout_concurrency() == 32
    env.setenv("FLUSSFS_FANOUT_CONCURRENCY", "8")
    assert handler.fanout_concurrency() == 8
    for bad in ("0", "-3", "eight", "2.5"):
        env.setenv("FLUSSFS_FANOUT_CONCURRENCY", bad)
        with pytest.raises(flussfs.FlussError, match=f"FLUSSFS_FANOUT_CONCURRENCY={bad!r}"):
            handler.fanout_concurrency()
