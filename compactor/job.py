"""compact(): one compaction of a table (../shared/API.md, module `compactor`;
format_spec/spec-v1.md, section 20.4).

Steps, each safe to crash after:
1. Catch up: publish as Iceberg every committed snapshot not yet published (a previous run
   crashed between its commit and its publication), then fix the version hint.
2. Plan one task per bucket with commits past the current snapshot; run them on the executor.
   They write new, uniquely named files only.
3. Commit snapshot N + 1 by put-if-absent: the epoch fence. A compactor whose base is stale
   (another committed N + 1 first) loses here and raises ConflictError; its files are orphans.
4. Publish snapshot N + 1 as Iceberg v<N + 1> (put-if-absent), then the version hint.
5. Collect garbage: orphans and the replaced files of snapshots past retention.

Invariant: the snapshot manifest is the only commit point; nothing a writer acknowledged is
touched (the log is read, never changed).
"""
from __future__ import annotations

import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass, field

import cloudpickle

import flussfs
from flussfs import parquet, paths, snapshots
from flussfs.errors import ConflictError
from flussfs.format.snapshot import Snapshot
from flussfs.storage import PutOutcome

from . import gc, iceberg
from .tasks import BucketTask, run, run_pickled


@dataclass(frozen=True)
class CompactionResult:
    """What one compact() call did. `snapshot` is the current snapshot number afterwards;
    `committed` says whether this call committed it; `buckets` holds per-bucket task stats."""
    metadata_location: str | None
    snapshot: int
    committed: bool
    buckets: list = field(default_factory=list)
    changes: int = 0
    rows_written: int = 0
    bytes_written: int = 0
    collected: int = 0
    elapsed_s: float = 0.0


def compact(uri: str, *, storage_options=None, executor: Executor | None = None,
            changelog: bool = True, retention_ms: int = gc.RETENTION_MS_DEFAULT,
            progress=None) -> CompactionResult:
    """Merge what was written since the last compaction into a new snapshot and publish it
    as an Iceberg table at `uri`. `progress(done, total, stats)` is called per finished task."""
    table = flussfs.open_table(uri, storage_options=storage_options)
    try:
        return compact_table(table, executor=executor, changelog=changelog,
                             retention_ms=retention_ms, progress=progress)
    finally:
        table.close()


def compact_table(table, *, executor: Executor | None = None, changelog: bool = True,
                  retention_ms: int = gc.RETENTION_MS_DEFAULT, progress=None) -> CompactionResult:
    """compact() on an open table handle (in-process tasks share its store, wrappers included)."""
    started = time.time()
    uri, store, meta = table.uri, table.store, table.metadata
    parquet.check_types(table.schema)
    base = snapshots.current(store, meta.buckets)
    location = _catch_up(store, uri, meta, base, retention_ms)
    tasks = _plan(table, base, table.storage_options, changelog)
    if not tasks and base.number > 0:
        collected = gc.collect(store, base, retention_ms)
        return CompactionResult(location, base.number, False, collected=collected,
                                elapsed_s=time.time() - started)
    results = _run(table, tasks, executor, progress)
    snap = _next_snapshot(base, meta, tasks[0].token if tasks else uuid.uuid4().hex, results)
    _commit(store, snap, started)
    location = iceberg.publish(store, uri, meta, snap, base if base.number else None,
                               retention_ms=retention_ms)
    iceberg.write_version_hint(store)
    collected = gc.collect(store, snap, retention_ms)
    stats = [r.stats for r in results]
    return CompactionResult(location, snap.number, True, stats,
                            sum(s["changes"] for s in stats), sum(s["rows_written"] for s in stats),
                            sum(s["bytes_written"] for s in stats), collected, time.time() - started)


def _catch_up(store, uri, meta, base: Snapshot, retention_ms: int) -> str | None:
    """Publish committed snapshots that Iceberg lacks; the current metadata location."""
    published = iceberg.published_versions(store)
    last = published[-1] if published else 0
    for n in range(last + 1, base.number + 1):
        previous = snapshots.load(store, n - 1) if n > 1 else None
        iceberg.publish(store, uri, meta, snapshots.load(store, n) if n < base.number else base,
                        previous, retention_ms=retention_ms)
    if base.number == 0:
        return None
    if last < base.number or iceberg.read_hint(store) != base.number:
        iceberg.write_version_hint(store)
    return iceberg.metadata_location(uri, base.number)


def _plan(table, base: Snapshot, storage_options, changelog: bool) -> list[BucketTask]:
    token = uuid.uuid4().hex
    heads = table.heads()
    return [BucketTask(table.uri, storage_options, b, base.number + 1, token, base.bucket(b),
                       head.number, changelog)
            for b, head in enumerate(heads) if head is not None and head.number > base.bucket(b).commit]


def _run(table, tasks: list[BucketTask], executor, progress) -> list:
    """Every task's result, in task order; tasks travel to the executor by cloudpickle."""
    if executor is None:
        results = []
        for i, task in enumerate(tasks):
            results.append(run(task, table))
            if progress:
                progress(i + 1, len(tasks), results[-1].stats)
        return results
    futures = [executor.submit(run_pickled, cloudpickle.dumps(t)) for t in tasks]
    results = []
    for i, f in enumerate(futures):
        results.append(cloudpickle.loads(f.result()))
        if progress:
            progress(i + 1, len(tasks), results[-1].stats)
    return results


def _next_snapshot(base: Snapshot, meta, token: str, results) -> Snapshot:
    states = {r.state.bucket: r.state for r in results}
    removed = tuple(sorted(k for r in results for k in r.removed))
    return Snapshot(base.number + 1, meta.version, int(time.time() * 1000), token,
                    base.with_buckets(states).buckets, removed)


def _commit(store, snap: Snapshot, started: float) -> None:
    """Put the snapshot manifest (the commit point), fenced by its number."""
    if time.time() - started > gc.COMPACTION_DEADLINE_S:
        raise ConflictError(f"compaction to snapshot {snap.number} ran past its deadline "
                            f"({gc.COMPACTION_DEADLINE_S} s); its files are left as orphans")
    key = paths.snapshot(snap.number)
    if store.put_if_absent(key, snap.to_bytes()) is PutOutcome.EXISTS and \
            snapshots.load(store, snap.number).compactor_id != snap.compactor_id:
        # (Our own put can report EXISTS when a lost response was retried: read it back.)
        raise ConflictError(f"another compaction committed snapshot {snap.number} first; "
                            f"this one's files are left as orphans")
