"""Tables: create, open, append, scan, subscribe, end offsets (../shared/API.md).

Invariants: a Table's metadata is immutable for its lifetime; every call either commits all of
a bucket's rows of that call or none of them; a Table may be shared across threads (per-bucket
logs lock their own state, sequence numbers come from a locked counter).
"""
from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa

from . import drafts, engines, paths, runs
from .bucketing import hashable_type
from .errors import CommitOutcomeUnknownError, InvalidInputError, NotFoundError, TableExistsError
from .format.metadata import CHECKPOINT_INTERVAL_DEFAULT, TableMetadata
from .format.types import encode_type
from .io import parallel
from .parquet import check_types
from .log import APPEND, CHANGE, BucketLog, CommitCache
from .storage import PutOutcome, open_store, table_name

WRITER_ID_HEX_CHARS = 32


@dataclass(frozen=True)
class CommitResult:
    """What one call committed: bucket -> next offset, and bucket -> commit number."""
    end_offsets: dict
    commit_numbers: dict


def create_table(uri: str, schema: pa.Schema, *, primary_key=None, buckets: int = 4,
                 merge_engine=None, bucket_key=None, storage_options=None,
                 checkpoint_interval: int = CHECKPOINT_INTERVAL_DEFAULT) -> "Table":
    """Create a table at `uri` (which must not hold one yet) and return it."""
    store = open_store(uri, storage_options)
    meta = _new_metadata(uri, schema, primary_key, buckets, merge_engine, bucket_key,
                         checkpoint_interval)
    key = paths.table_metadata(0)
    if store.put_if_absent(key, meta.to_bytes()) is PutOutcome.EXISTS:
        raise TableExistsError(f"table {table_name(uri)} already exists at {uri}")
    return Table(uri, store, meta, storage_options)


def open_table(uri: str, *, storage_options=None) -> "Table":
    """The table at `uri`, at its latest metadata version."""
    store = open_store(uri, storage_options)
    versions = list(store.list(paths.TABLE_METADATA_DIR))
    if not versions:
        raise NotFoundError(f"no flussfs table {table_name(uri)} at {uri}")
    key = versions[-1].key
    return Table(uri, store, TableMetadata.from_bytes(store.get(key), key), storage_options)


def _new_metadata(uri, schema, primary_key, buckets, merge_engine, bucket_key, interval):
    if not isinstance(schema, pa.Schema):
        raise InvalidInputError(f"schema of {table_name(uri)} must be a pyarrow Schema")
    if len(set(schema.names)) != len(schema.names) or not schema.names:
        raise InvalidInputError(f"schema of {table_name(uri)} must have distinct, non-empty column names")
    for f in schema:
        if not f.name or f.name.startswith("_"):
            raise InvalidInputError(f"column {f.name!r}: names starting with '_' are reserved")
        encode_type(f.type, f.name)
    check_types(schema)  # the snapshot (Iceberg) must hold every column losslessly
    if not isinstance(buckets, int) or not 1 <= buckets <= paths.BUCKETS_MAX - 1:
        raise InvalidInputError(f"buckets must be an integer in 1..{paths.BUCKETS_MAX - 1}, got {buckets!r}")
    engine = None
    if primary_key is not None:
        primary_key = _check_key_columns(schema, primary_key, "primary key")
        schema = pa.schema([f.with_nullable(False) if f.name in primary_key else f for f in schema])
        engine = engines.to_json(engines.validate(merge_engine, schema, primary_key))
        bucket_key = _check_bucket_key(schema, bucket_key, primary_key)
    elif merge_engine not in (None, "last_row"):
        raise InvalidInputError(f"merge_engine {merge_engine!r} applies to primary-key tables only")
    elif bucket_key:
        bucket_key = _check_key_columns(schema, bucket_key, "bucket key")
    if not isinstance(interval, int) or interval < 2:
        raise InvalidInputError(f"checkpoint_interval must be an integer >= 2, got {interval!r}")
    return TableMetadata(version=0, table_uuid=str(uuid.uuid4()), schema=schema,
                         field_ids=tuple(range(1, len(schema) + 1)),
                         primary_key=tuple(primary_key) if primary_key else None,
                         bucket_key=tuple(bucket_key) if bucket_key else None, buckets=buckets,
                         merge_engine=engine, checkpoint_interval=interval,
                         created_ms=int(time.time() * 1000))


def _check_key_columns(schema: pa.Schema, names, what: str) -> list[str]:
    """`names` as a list of distinct hashable columns of `schema`."""
    if isinstance(names, str):
        names = [names]
    names = list(names) if isinstance(names, (list, tuple)) else names
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        raise InvalidInputError(f"{what} must be a non-empty list of distinct column names, got {names!r}")
    for name in names:
        if not isinstance(name, str) or schema.get_field_index(name) < 0:
            raise InvalidInputError(f"{what} column {name!r} is not in the schema {schema.names}")
        if not hashable_type(schema.field(name).type):
            raise InvalidInputError(f"{what} column {name!r} has type {schema.field(name).type}, "
                                    f"which has no bucket hash (use an integer, date, timestamp, "
                                    f"string or binary column)")
    return names


def _check_bucket_key(schema, bucket_key, primary_key) -> list[str]:
    """A primary-key table's bucket key: the primary key, or a subset of it."""
    if not bucket_key:
        return list(primary_key)
    bucket_key = _check_key_columns(schema, bucket_key, "bucket key")
    outside = [c for c in bucket_key if c not in primary_key]
    if outside:
        raise InvalidInputError(f"bucket key column(s) {outside} are not in the primary key "
                                f"{list(primary_key)}: a key's changes must share one bucket")
    return bucket_key


class Table:
    """A flussfs table. Safe to share across threads."""

    def __init__(self, uri: str, store, meta: TableMetadata, storage_options=None):
        self.uri, self.store, self.metadata = uri, store, meta
        self.storage_options = storage_options
        self._background = ThreadPoolExecutor(1, thread_name_prefix="flussfs-checkpoint")
        self.commit_cache = CommitCache()
        operation = CHANGE if meta.primary_key else APPEND
        self.logs = [BucketLog(store, b, meta.checkpoint_interval, self._background, operation,
                               self.commit_cache) for b in range(meta.buckets)]
        self.writer_id = uuid.uuid4().hex[:WRITER_ID_HEX_CHARS]
        self._seq = itertools.count()
        self._rr = itertools.count(random.randrange(meta.buckets))
        self._lock = threading.Lock()
        self._snapshot = None

    @property
    def schema(self) -> pa.Schema:
        return self.metadata.schema

    @property
    def primary_key(self):
        return list(self.metadata.primary_key) if self.metadata.primary_key else None

    @property
    def merge_engine(self):
        """None for a log table; else "last_row", "first_row", a Versioned or an Aggregate."""
        return engines.from_json(self.metadata.merge_engine, self.name)

    @property
    def buckets(self) -> int:
        return self.metadata.buckets

    @property
    def name(self) -> str:
        return table_name(self.uri)

    def __repr__(self) -> str:
        return f"flussfs.Table({self.uri!r}, buckets={self.buckets})"

    # ---- writing -----------------------------------------------------------------------
    def append(self, data, *, batch_id: str | None = None) -> CommitResult:
        """Append rows to a log table; durable and visible when this returns. With `batch_id`,
        the rows are committed once however often the same batch is written (flussfs.batches)."""
        return self._write([runs.append_run(self.metadata, data, self.name)], batch_id)

    def upsert(self, data, *, batch_id: str | None = None) -> CommitResult:
        """Insert or update rows of a primary-key table by key; a subset of the columns (the key
        included) is a partial update. Durable and visible when this returns."""
        return self._write(runs.upsert_runs(self.metadata, data, self.name), batch_id)

    def delete(self, keys, *, batch_id: str | None = None) -> CommitResult:
        """Delete the rows of the given keys (a table of the key columns); missing keys are a
        no-op for the state."""
        return self._write([runs.delete_run(self.metadata, keys, self.name)], batch_id)

    def _write(self, changes: list, batch_id: str | None):
        if batch_id is None:
            return self.commit_drafts(self.prepare_runs(changes))
        from .batches import commit_once
        return commit_once(self, batch_id, changes)

    def lookup(self, keys) -> pa.Table:
        """The current rows of the given keys that exist, with every column."""
        from .lookup import lookup
        return lookup(self, keys)

    def prepare(self, data) -> dict:
        """Check and encode appended rows into bucket -> Draft (segments uploaded); commits nothing."""
        return self.prepare_runs([runs.append_run(self.metadata, data, self.name)])

    def prepare_runs(self, changes: list) -> dict:
        """Encode checked runs (flussfs.runs) into bucket -> Draft, in order; commits nothing."""
        routed = drafts.route_runs(changes, self.metadata, self._next_bucket)
        if not routed:
            return {}
        seqs = {b: self._next_seq() for b in routed}
        built = parallel(lambda b: drafts.encode(self.store, self.metadata, b, routed[b],
                                                 self.writer_id, seqs[b]), list(routed))
        return dict(zip(routed, built))

    def commit_drafts(self, bucket_drafts: dict) -> CommitResult:
        """Commit prepared drafts, each bucket on its own, concurrently. Committing the same
        drafts again (after an error) never commits any of them twice."""
        buckets = list(bucket_drafts)
        try:
            commits = parallel(lambda b: self.logs[b].commit(bucket_drafts[b]), buckets)
        except CommitOutcomeUnknownError as e:
            e.drafts = bucket_drafts
            raise
        return CommitResult({b: c.end_offset for b, c in zip(buckets, commits)},
                            {b: c.number for b, c in zip(buckets, commits)})

    def renew_expired(self, bucket_drafts: dict) -> dict:
        """The drafts with every expired one (segments past the commit deadline, known not to
        be committed) encoded again from its rows under a new sequence number."""
        now = time.time()
        return {b: drafts.encode(self.store, self.metadata, b, d.rows, self.writer_id, self._next_seq())
                if d.expired(now) else d for b, d in bucket_drafts.items()}

    def _next_seq(self) -> int:
        with self._lock:
            return next(self._seq)

    def _next_bucket(self) -> int:
        with self._lock:
            return next(self._rr) % self.buckets

    def writer(self, **options):
        """A batching writer (see flussfs.writer.Writer for the options)."""
        from .writer import Writer
        return Writer(self, **options)

    # ---- reading -----------------------------------------------------------------------
    def scan(self, columns=None, filter=None):
        from .scan import Scan
        return Scan(self, columns, filter)

    def subscribe(self, start="earliest", *, columns=None, idle_timeout=None, **options):
        from .subscribe import Subscription
        return Subscription(self, start, columns=columns, idle_timeout=idle_timeout, **options)

    def snapshot(self):
        """The current snapshot (format_spec section 20; number 0 if never compacted); one LIST,
        and one GET the first time each snapshot is seen (manifests are immutable)."""
        from . import snapshots
        number = snapshots.latest_number(self.store)
        with self._lock:
            cached = self._snapshot
        if cached is None or cached.number != number:
            cached = snapshots.load(self.store, number, self.buckets) if number else snapshots.empty(self.buckets)
            with self._lock:
                self._snapshot = cached
        return cached

    def known_snapshot(self):
        """The snapshot this handle read last (no request), or None."""
        with self._lock:
            return self._snapshot

    def end_offsets(self) -> dict[int, int]:
        """bucket -> offset of the next record to be written, for every bucket."""
        heads = parallel(lambda log: log.head(), self.logs)
        return {b: 0 if h is None else h.end_offset for b, h in enumerate(heads)}

    def heads(self) -> list:
        """The latest commit of each bucket (None where empty)."""
        return parallel(lambda log: log.head(), self.logs)

    def close(self) -> None:
        """Wait for background checkpoint writes to finish."""
        self._background.shutdown(wait=True)
