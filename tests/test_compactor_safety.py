"""Compactor safety (format_spec section 20.4, 20.7, 20.10): a crash at any write of a
compaction leaves a readable table that the next run completes; garbage is collected only past
retention; other executors (Dask processes) and the CLI give the in-process result."""
import json
import random
import subprocess
import sys
import time

import pyarrow as pa
import pytest

import compactor
import flussfs
from compactor import gc
from compactor.job import compact_table
from flussfs import paths, snapshots
from flussfs.storage import PutOutcome
from flussfs.storage.wrappers import _Delegate
from helpers import over, run
from iceberg_readers import pyiceberg_rows
from test_compactor import SCHEMA, batch, random_round, rows_of

WRITES = ("put", "put_if_absent", "delete")


class Crash(BaseException):
    """The process dying: nothing in the library catches it."""


class CrashingStore(_Delegate):
    """Counts writes; at write number `at` (0-based) dies before it, or with `after`, just after
    it reached the store (a lost response followed by death)."""

    def __init__(self, inner, at=None, after=False):
        super().__init__(inner)
        self.at, self.after, self.writes = at, after, 0

    def _write(self, call):
        n, self.writes = self.writes, self.writes + 1
        if n == self.at and not self.after:
            raise Crash(f"crash before write {n}")
        result = call()
        if n == self.at:
            raise Crash(f"crash after write {n}")
        return result

    def put(self, key, data):
        return self._write(lambda: self.inner.put(key, data))

    def put_if_absent(self, key, data):
        return self._write(lambda: self.inner.put_if_absent(key, data))

    def delete(self, key):
        return self._write(lambda: self.inner.delete(key))


def stored(table) -> set[str]:
    """Every snapshot data file and changelog piece in the table's store."""
    return {i.key for prefix in (paths.DATA_DIR, paths.ROOT + "changelog/")
            for i in table.store.list(prefix)}


def published_rows(uri):
    """The rows of the Iceberg table the version hint points at (None before any)."""
    try:
        n = int(open(f"{uri}/{paths.VERSION_HINT}").read())
    except FileNotFoundError:
        return None
    return rows_of(pyiceberg_rows(f"{uri}/{paths.iceberg_metadata(n)}"))


def compacted_once(uri):
    """A table compacted once, then changed (upserts, partial updates, deletes), always the
    same: (the table, its snapshot's rows, its latest rows). Iceberg metadata names absolute
    locations, so a crash test builds a table per run rather than copying one."""
    t = flussfs.create_table(uri, SCHEMA, primary_key=["k"], buckets=2)
    rng = random.Random(9)
    t.upsert(batch(rng, list(range(300))))
    compactor.compact(uri)
    before = rows_of(t.scan().to_arrow())
    random_round(rng, [t], 320, 30)
    return t, before, rows_of(t.scan().to_arrow())


@pytest.mark.parametrize("after", [False, True], ids=["before-write", "after-write"])
def test_a_crash_at_every_write_leaves_a_readable_table_that_the_next_run_completes(tmp_path, after):
    """For every write a compaction makes (data, delete and changelog files, snapshot manifest,
    Iceberg manifests, manifest list, metadata, version hint): dying just before or just after
    it leaves scan() exact and the published Iceberg table a complete past state; the next
    compaction then publishes the latest state."""
    probe, _, _ = compacted_once(str(tmp_path / "probe"))
    counter = CrashingStore(probe.store)
    compact_table(over(probe, counter))
    assert counter.writes >= 10, counter.writes
    for at in range(counter.writes):
        uri = str(tmp_path / f"at{at}")
        table, snapshot_rows, latest = compacted_once(uri)
        with pytest.raises(Crash):
            compact_table(over(table, CrashingStore(table.store, at, after)))
        fresh = flussfs.open_table(uri)
        assert rows_of(fresh.scan().to_arrow()) == latest, f"scan wrong after a crash at write {at}"
        assert published_rows(uri) in (snapshot_rows, latest), f"Iceberg half-published at write {at}"
        result = compactor.compact(uri)
        assert published_rows(uri) == latest == rows_of(fresh.scan().to_arrow()), f"crash at write {at}"
        assert result.snapshot == 2


def test_garbage_is_collected_only_past_retention(tmp_path):
    """Files a rewrite replaced and files of a compaction that died stay until retention and
    grace have passed, then go; the table and its Iceberg view read the same throughout."""
    uri = str(tmp_path / "t")
    t = flussfs.create_table(uri, SCHEMA, primary_key=["k"], buckets=1)
    rng = random.Random(4)
    t.upsert(batch(rng, list(range(200))))
    compactor.compact(uri)
    for _ in range(3):  # each round changes half the keys: the bucket is rewritten every time
        random_round(rng, [t], 200, 100)
        result = compactor.compact(uri)
    random_round(rng, [t], 200, 20)
    with pytest.raises(Crash):  # a compaction dies after writing its first data file
        compact_table(over(t, CrashingStore(t.store, at=1, after=True)))
    expected = rows_of(t.scan().to_arrow())
    current = t.snapshot()
    removed_by = {n: set(snapshots.load(t.store, n).removed) for n in range(2, current.number + 1)}
    replaced = set().union(*removed_by.values())
    orphans = stored(t) - current.live_keys() - replaced
    assert replaced and orphans
    assert gc.collect(t.store, current, gc.RETENTION_MS_DEFAULT) == 0  # nothing is old enough yet
    later = time.time() + max(gc.RETENTION_MS_DEFAULT / 1000, gc.GRACE_S + gc.COMPACTION_DEADLINE_S) + 60
    collected = gc.collect(t.store, current, gc.RETENTION_MS_DEFAULT, now=later)
    left = stored(t)
    assert not (left & orphans), "orphans survived"
    # Snapshots before the current one's predecessor expire, with the files they replaced.
    expired = set().union(*(keys for n, keys in removed_by.items() if n < current.number - 1))
    assert expired and not (left & expired) and (replaced - expired) <= left
    assert current.live_keys() <= left
    assert collected == len(orphans) + len(expired) + len(range(1, current.number - 1))
    assert rows_of(flussfs.open_table(uri).scan().to_arrow()) == expected
    assert published_rows(uri) == rows_of(pyiceberg_rows(result.metadata_location))


def test_dask_local_cluster_executor_gives_the_in_process_result(tmp_path):
    """compact(executor=Dask client.get_executor()) over a LocalCluster of worker processes
    publishes the same snapshot rows and Iceberg rows as an in-process compaction."""
    distributed = pytest.importorskip("distributed")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    tables = [flussfs.create_table(u, SCHEMA, primary_key=["k"], buckets=4) for u in (a, b)]
    rng = random.Random(2)
    for table in tables:
        table.upsert(batch(random.Random(1), list(range(500))))
    random_round(rng, tables, 600, 60)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        remote = compactor.compact(a, executor=client.get_executor())
    local = compactor.compact(b)
    assert remote.changes == local.changes and remote.rows_written == local.rows_written
    assert rows_of(pyiceberg_rows(remote.metadata_location)) == rows_of(pyiceberg_rows(local.metadata_location))
    assert rows_of(tables[0].scan().to_arrow()) == rows_of(tables[1].scan().to_arrow())


def test_cli_compacts_and_summarises(tmp_path, capsys):
    """`flussfs compact URI --json` prints what it merged; `python -m compactor URI` (a process
    pool) then finds nothing new and says so."""
    uri = str(tmp_path / "t")
    t = flussfs.create_table(uri, SCHEMA, primary_key=["k"], buckets=2)
    t.upsert(batch(random.Random(1), list(range(100))))
    code, out, err = run(capsys, "compact", uri, "--workers", "0", "--json")
    summary = json.loads(out)
    assert code == 0 and summary["snapshot"] == 1 and summary["changes"] == 100, (out, err)
    assert summary["metadata_location"].endswith("metadata/v1.metadata.json") and "bucket" in err
    done = subprocess.run([sys.executable, "-m", "compactor", uri, "--workers", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "nothing new since snapshot 1" in done.stdout, done
    code, _, err = run(capsys, "compact", str(tmp_path / "missing"))
    assert code == 1 and "no flussfs table" in err


class RetriedPut(_Delegate):
    """A put-if-absent whose response is lost and whose retry reports EXISTS (botocore retrying
    underneath s3fs): the first put of a key containing `key_contains` lands, then says EXISTS."""

    def __init__(self, inner, key_contains):
        super().__init__(inner)
        self.key_contains = key_contains

    def put_if_absent(self, key, data):
        outcome = self.inner.put_if_absent(key, data)
        return PutOutcome.EXISTS if self.key_contains in key else outcome


@pytest.mark.parametrize("key", ["_flussfs/snapshots/", "metadata/v2.metadata.json"])
def test_own_puts_reported_as_existing_still_commit_and_publish(tmp_path, key):
    """A snapshot manifest or Iceberg metadata put that landed but came back EXISTS is read back
    and recognised as ours: the compaction succeeds and the published table is complete."""
    t, _, latest = compacted_once(str(tmp_path / "t"))
    result = compact_table(over(t, RetriedPut(t.store, key)))
    assert result.committed and published_rows(t.uri) == latest
    assert rows_of(pyiceberg_rows(result.metadata_location)) == latest


def test_full_changelog_from_offsets_follows_only_the_buckets_named(tmp_path):
    """subscribe({bucket: offset}, changelog="full") yields only the buckets named, from the
    offsets given."""
    t = flussfs.create_table(str(tmp_path / "t"), SCHEMA, primary_key=["k"], buckets=2)
    t.upsert(batch(random.Random(1), list(range(40))))
    compactor.compact(t.uri)
    got = pa.Table.from_batches(list(t.subscribe({0: 3}, changelog="full", idle_timeout=0.3)))
    ends = t.end_offsets()
    assert set(got.column("_bucket").to_pylist()) == {0}
    assert got.column("_offset").to_pylist() == list(range(3, ends[0]))
