"""Tailing a table (../shared/API.md, `subscribe`; format_spec/spec-v1.md, "Tailing").

Each bucket has a position: the next commit number and the first offset wanted in it. A poll
probes the next commit key with one GET per bucket. When probes hit twice in a row the
subscriber is behind: one LIST learns how far, and up to READ_AHEAD_COMMITS commits are read at
once. Idle polls back off from poll_interval_s_min to poll_interval_s_max, so an idle
subscriber costs at most 60 / poll_interval_s_max GETs per minute per bucket.

Invariants: within a bucket rows come in offset order, contiguous from the start offset; each
row is yielded once; projection is applied to the bytes fetched from segments.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from .changelog import CHANGELOG_MODES, SYSTEM_FIELDS, BucketChangelog, load_states
from .errors import InvalidInputError
from .io import parallel
from .reader import read_commit_rows

READ_AHEAD_COMMITS = 32
POLL_INTERVAL_S_MIN = 0.02
POLL_INTERVAL_S_MAX = 0.5


@dataclass
class _Position:
    bucket: int
    number: int          # next commit to read
    skip_to: int         # first offset wanted (rows before it in that commit are dropped)
    known_last: int = -1  # highest commit number known to exist
    hits: int = 0         # consecutive polls that found a new commit


class Subscription:
    """An iterator of pa.RecordBatch over the changes of a table, tailing for new ones."""

    def __init__(self, table, start="earliest", *, columns=None, idle_timeout=None,
                 poll_interval_s_min=POLL_INTERVAL_S_MIN, poll_interval_s_max=POLL_INTERVAL_S_MAX,
                 changelog: str = "images"):
        self.table = table
        schema = table.schema
        names = list(schema.names) if columns is None else list(columns)
        for c in names:
            if schema.get_field_index(c) < 0:
                raise InvalidInputError(f"subscribe to {table.name}: unknown column {c!r}")
        self._fields = [(table.metadata.field_id(n), schema.field(n)) for n in names]
        self.schema = pa.schema([f for _, f in self._fields] + SYSTEM_FIELDS)
        self.idle_timeout = idle_timeout
        self.poll_min, self.poll_max = poll_interval_s_min, poll_interval_s_max
        self._positions = self._start(start)
        self._changelog = self._full = None
        if changelog not in CHANGELOG_MODES:
            raise InvalidInputError(f"subscribe to {table.name}: changelog must be one of "
                                    f"{CHANGELOG_MODES}, got {changelog!r}")
        if table.primary_key and changelog == "full":
            self._full = self._full_changelog(names, start)
            self.schema = self._full.schema
        elif table.primary_key:
            self._changelog = {p.bucket: BucketChangelog(table, p.bucket, names, changelog, p.number)
                               for p in self._positions}
            load_states(self._changelog)  # the state before the start, read now, concurrently
            self.schema = next(iter(self._changelog.values())).schema
        elif changelog != "images":
            raise InvalidInputError(f"subscribe to {table.name}: changelog={changelog!r} applies to "
                                    f"primary-key tables only")
        self._pending: list[pa.RecordBatch] = []
        self._closed = False

    def _full_changelog(self, names, start):
        """The compactor's changelog from `start` (offsets or a time; see full_changelog.py)."""
        from .full_changelog import SnapshotChangelog
        since = int(start.timestamp() * 1000) if isinstance(start, datetime) else None
        skip = {p.bucket: p.skip_to for p in self._positions} if since is None else {}
        buckets = [p.bucket for p in self._positions] if isinstance(start, dict) else None
        return SnapshotChangelog(self.table, names, skip, since, buckets)

    def _start(self, start) -> list[_Position]:
        logs = self.table.logs
        if start == "earliest":
            return [_Position(b, 0, 0) for b in range(len(logs))]
        if start == "latest":
            heads = self.table.heads()
            return [_Position(b, 0, 0) if h is None else _Position(b, h.number + 1, h.end_offset, h.number)
                    for b, h in enumerate(heads)]
        if isinstance(start, dict):
            for b in start:
                if not isinstance(b, int) or not 0 <= b < len(logs):
                    raise InvalidInputError(f"subscribe to {self.table.name}: no bucket {b!r}")
            located = parallel(lambda b: (b, logs[b].locate(start[b])), list(start))
            return [_Position(b, n, start[b]) for b, n in located]
        if isinstance(start, datetime):
            if start.tzinfo is None:
                raise InvalidInputError("subscribe start datetime must be timezone-aware (e.g. UTC)")
            ms = int(start.timestamp() * 1000)
            located = parallel(lambda log: log.locate_time(ms), logs)
            return [_Position(b, n, 0) for b, n in enumerate(located)]
        raise InvalidInputError(f"subscribe start must be 'earliest', 'latest', a "
                                f"{{bucket: offset}} dict or a datetime, got {start!r}")

    def __iter__(self):
        return self

    def __next__(self) -> pa.RecordBatch:
        interval, last_data = self.poll_min, time.monotonic()
        while not self._pending:
            if self._closed:
                raise StopIteration
            if self._poll():
                interval, last_data = self.poll_min, time.monotonic()
                continue
            if self.idle_timeout is not None and time.monotonic() - last_data >= self.idle_timeout:
                raise StopIteration
            time.sleep(interval if self.idle_timeout is None
                       else min(interval, max(0.0, last_data + self.idle_timeout - time.monotonic())))
            interval = min(self.poll_max, interval * 2)
        return self._pending.pop(0)

    def close(self) -> None:
        self._closed = True

    def _poll(self) -> bool:
        """Read whatever is new in every bucket; True if any rows arrived."""
        if self._full is not None:
            batches = self._full.poll()
            self._pending.extend(batches)
            return bool(batches)
        results = parallel(self._poll_bucket, self._positions)
        for batches in results:
            self._pending.extend(batches)
        return any(results)

    def _poll_bucket(self, pos: _Position) -> list[pa.RecordBatch]:
        log = self.table.logs[pos.bucket]
        if pos.known_last < pos.number:
            probe = log.read_commit(pos.number)
            if probe is None:
                pos.hits = 0
                return []
            pos.hits += 1
            # Two hits in a row: we are behind, so one LIST tells how far and reads can run ahead.
            later = log.numbers_after(pos.number) if pos.hits > 1 else []
            pos.known_last = later[-1] if later else pos.number
            commits = [probe]
            wanted = range(pos.number + 1, min(pos.known_last, pos.number + READ_AHEAD_COMMITS) + 1)
        else:
            commits = []
            wanted = range(pos.number, min(pos.known_last, pos.number + READ_AHEAD_COMMITS - 1) + 1)
        commits += parallel(log.read_commit, wanted)
        if None in commits:  # cannot happen for listed commits; re-probe next time
            commits = commits[:commits.index(None)]
        if self._changelog is not None:
            out = self._changelog[pos.bucket].emit(commits, pos.skip_to)
            pos.skip_to = max([pos.skip_to] + [c.end_offset for c in commits])
        else:
            out = [batch for commit in commits for batch in self._rows(commit, pos)]
        if commits:
            pos.number = commits[-1].number + 1
        return out

    def _rows(self, commit, pos: _Position) -> list[pa.RecordBatch]:
        out, offset = [], commit.base_offset
        for batch in read_commit_rows(self.table.store, commit, self._fields):
            lo = max(0, pos.skip_to - offset)
            if lo < batch.num_rows:
                out.append(self._with_system_columns(batch.slice(lo), commit, offset + lo))
            offset += batch.num_rows
        pos.skip_to = max(pos.skip_to, commit.end_offset)
        return out

    def _with_system_columns(self, batch, commit, first_offset) -> pa.RecordBatch:
        n = batch.num_rows
        system = [pa.repeat(pa.scalar(commit.bucket, pa.int32()), n),
                  pa.array(np.arange(first_offset, first_offset + n, dtype=np.int64)),
                  pa.repeat(pa.scalar(commit.timestamp_ms, pa.timestamp("ms", tz="UTC")), n),
                  pa.repeat(pa.scalar("+I"), n)]
        return pa.record_batch(list(batch.columns) + system, schema=self.schema)
