"""Scans (../shared/API.md, `Scan`; format_spec/spec-v1.md, "Reading").

A scan fixes each bucket's commits when it starts (one LIST per 1,000 commits per bucket),
then reads them concurrently: one GET per commit, plus for referenced segments only the chunks
of the needed columns (projected + filtered), skipping parts whose statistics rule the filter out.
Invariants: rows come back in bucket order, then offset order; columns in the order asked.
"""
from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from . import snapshots
from .errors import InvalidInputError
from .format.snapshot import BucketState
from .io import parallel, parallel_iter
from .pruning import PartPruner, referenced_columns
from .reader import read_commit_rows
from .state import BucketReader

READ_AHEAD_COMMITS = 64  # commits being fetched while the caller consumes earlier ones


class Scan:
    def __init__(self, table, columns=None, filter=None):
        schema = table.schema
        if columns is not None:
            columns = [columns] if isinstance(columns, str) else list(columns)
            for c in columns:
                if schema.get_field_index(c) < 0:
                    raise InvalidInputError(f"scan of {table.name}: unknown column {c!r}; "
                                            f"the table has {schema.names}")
        if filter is not None and not isinstance(filter, pc.Expression):
            raise InvalidInputError(f"scan filter must be a pyarrow.compute.Expression, "
                                    f"got {type(filter).__name__}")
        self.table, self.filter = table, filter
        self.columns = list(schema.names) if columns is None else columns
        filter_columns = referenced_columns(filter, schema) if filter is not None else []
        needed = set(self.columns) | set(filter_columns)
        self._read = [n for n in schema.names if n in needed]
        # Statistics may rule out parts; in a primary-key table only by key columns, since a
        # later change of a key overrides what an earlier part's values say.
        prunable = [c for c in filter_columns if c in (table.primary_key or schema.names)]
        self._pruner = (PartPruner(filter, schema, table.metadata.field_ids, prunable)
                        if prunable else None)
        self.schema = pa.schema([schema.field(c) for c in self.columns])

    def _fields(self):
        meta = self.table.metadata
        return [(meta.field_id(n), meta.schema.field(n)) for n in self._read]

    def _units(self) -> list[tuple[int, object]]:
        """What to read, in bucket then offset order: (bucket, snapshot FileRef) for the
        snapshot's files, then (bucket, commit number) for the commits after it."""
        logs = self.table.logs
        found = parallel(lambda log: self.table.snapshot() if log is None else
                         log.numbers_after(None), [None] + logs)
        snap, numbers = found[0], found[1:]
        units = []
        for b, ns in enumerate(numbers):
            state = snap.bucket(b)
            units += [(b, f) for f in state.files]
            units += [(b, n) for n in ns if n > state.commit]
        return units

    def _read_unit(self, unit) -> list[pa.RecordBatch]:
        bucket, what = unit
        if isinstance(what, int):
            return self._read_commit(unit)
        rows = snapshots.live_rows(self.table.store, self.table.uri, self.table.metadata,
                                   BucketState(bucket, files=(what,)), self._read)
        if self.filter is not None:
            rows = rows.filter(self.filter)
        return rows.select(self.columns).to_batches()

    def _read_commit(self, ref) -> list[pa.RecordBatch]:
        bucket, number = ref
        commit = self.table.logs[bucket].read_commit(number)
        if commit is None:  # listed a moment ago; commits are never deleted in v1
            return []
        prune = self._pruner.may_match if self._pruner else None
        out = []
        for batch in read_commit_rows(self.table.store, commit, self._fields(), prune):
            if batch is None or batch.num_rows == 0:
                continue
            if self.filter is not None:
                batch = pa.Table.from_batches([batch]).filter(self.filter).combine_chunks()
                batch = batch.to_batches()[0] if batch.num_rows else None
                if batch is None:
                    continue
            out.append(batch.select(self.columns))
        return out

    def to_batches(self):
        """An iterator of pa.RecordBatch."""
        if self.table.primary_key:
            yield from self._latest_batches()
            return
        for batches in parallel_iter(self._read_unit, self._units(), READ_AHEAD_COMMITS):
            yield from batches

    def _latest_batches(self):
        """A primary-key table's live rows: changes merged per bucket, then filtered."""
        reader = BucketReader(self.table, self._read)
        pruner = self._pruner
        prune = (lambda bucket, part: pruner.may_match(part)) if pruner else None
        buckets = range(self.table.buckets)
        changes = reader.read(reader.refs(buckets), part_filter=prune)
        for rows in reader.latest(changes, reader.base(buckets, changes=changes)):
            if self.filter is not None:
                rows = rows.filter(self.filter)
            yield from rows.select(self.columns).to_batches()

    def to_arrow(self) -> pa.Table:
        return pa.Table.from_batches(list(self.to_batches()), schema=self.schema)

    def to_pandas(self):
        return self.to_arrow().to_pandas()

    def to_duckdb(self, connection):
        """A DuckDB relation over the scanned rows."""
        return connection.from_arrow(self.to_arrow())

    def count(self) -> int:
        return sum(b.num_rows for b in self.to_batches())
