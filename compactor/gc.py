"""Garbage collection of snapshot files (format_spec/spec-v1.md, section 20.7).

Two kinds of garbage:
- *Replaced* files: a snapshot s lists in `removed` the files it replaced. They stay readable
  while s is younger than the retention period R (readers of older snapshots, and Iceberg
  snapshots the publisher keeps for R, may still read them); once s is older than
  max(R, G + D) its removed files and then its manifest are deleted (never the current snapshot
  or its predecessor).
- *Orphans*: files of a compaction that never committed (it crashed or lost the race). A file's
  key names its epoch e and compactor token; it is an orphan if snapshot e was committed by
  another compactor, or if e is past the current snapshot, and the file is older than the grace
  period G. A compaction commits within D (COMPACTION_DEADLINE_S) of its start, and G > D plus
  clock skew, so no running compaction's file is ever an orphan.

Invariant: nothing referenced by the current snapshot, or by a snapshot younger than R, is
deleted.
"""
from __future__ import annotations

import time

from flussfs import paths, snapshots
from flussfs.errors import NotFoundError
from flussfs.gc import CLOCK_SKEW_S_MAX

COMPACTION_DEADLINE_S = 1800        # a compaction commits within this of its start, or gives up
GRACE_S = 3 * 3600                  # unreferenced files younger than this are never orphans
RETENTION_MS_DEFAULT = 6 * 3600 * 1000
EXPIRE_PER_RUN_MAX = 100            # snapshot manifests expired by one run, at most
assert GRACE_S > COMPACTION_DEADLINE_S + CLOCK_SKEW_S_MAX


def collect(store, current, retention_ms: int, now: float | None = None) -> int:
    """Delete orphans and expired snapshots' replaced files; returns how many objects went."""
    now = time.time() if now is None else now
    deleted = _orphans(store, current, now)
    return deleted + _expire(store, current, retention_ms, now)


def _orphans(store, current, now: float) -> int:
    live = current.live_keys()
    tokens = {current.number: current.compactor_id}
    count = 0
    for prefix in (paths.DATA_DIR, paths.ROOT + "changelog/"):
        for info in list(store.list(prefix)):
            if info.key in live or info.mtime is None or now - info.mtime <= GRACE_S:
                continue
            epoch, token = _epoch_and_token(info.key)
            if epoch is None or not _is_orphan(store, epoch, token, current.number, tokens):
                continue
            store.delete(info.key)
            count += 1
    return count


def _epoch_and_token(key: str):
    """(epoch, compactor token) from `.../<epoch:20>-<token>-<name>.parquet` or a changelog
    piece `.../<first_offset:20>-<epoch:20>-<token>.parquet`; (None, None) if neither."""
    parts = key.rsplit("/", 1)[-1].split(".", 1)[0].split("-")
    try:
        if key.startswith(paths.DATA_DIR) and len(parts) >= 3:
            return int(parts[0]), parts[1]
        if len(parts) == 3:
            return int(parts[1]), parts[2]
    except ValueError:
        pass
    return None, None


def _is_orphan(store, epoch: int, token: str, current: int, tokens: dict) -> bool:
    if epoch > current:
        return True
    if epoch not in tokens:
        try:
            tokens[epoch] = snapshots.load(store, epoch).compactor_id
        except NotFoundError:
            tokens[epoch] = None   # expired: its files are handled through `removed` lists
    return tokens[epoch] is not None and tokens[epoch] != token


def _expire(store, current, retention_ms: int, now: float) -> int:
    horizon_ms = now * 1000 - max(retention_ms, (GRACE_S + COMPACTION_DEADLINE_S) * 1000)
    count = 0
    numbers = [paths.parse_number(i.key) for i in store.list(paths.SNAPSHOTS_DIR)]
    for n in numbers[:EXPIRE_PER_RUN_MAX]:
        if n >= current.number - 1:
            break
        snap = snapshots.load(store, n)
        if snap.timestamp_ms >= horizon_ms:
            break
        for key in snap.removed:
            store.delete(key)
            count += 1
        store.delete(paths.snapshot(n))
        count += 1
    return count
