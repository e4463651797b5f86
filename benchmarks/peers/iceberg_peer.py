"""Apache Iceberg (pyiceberg) behind the suite's Peer interface.

Invariants: every process of a run opens the same catalog, a SqlCatalog on the sqlite file
`<store.scratch>/iceberg-catalog.db`, so a fresh peer anywhere finds the table as
`bench.<table>` at store.location(table). A row is committed at most once per append(): a
commit that fails is retried only after pyiceberg has checked that its snapshot id is absent
from the refreshed table. Every read starts from the catalog's current metadata pointer.

Choices:
- FileIO: PyArrowFileIO (Arrow's C++ client; pyiceberg's default) for both stores, pointed at
  store.endpoint_url by the s3.* properties. On S3 it is OnePutFileIO, which turns on Arrow's
  allow_delayed_open so a small object is one PutObject (Arrow's default multipart upload
  costs 3 requests an object and doubled the append time on the S3 Standard proxy).
  FsspecFileIO is rejected: s3fs's read-ahead made a 2-of-23-column scan download every byte.
- Commits: pyiceberg's own retry loop (Transaction.commit_transaction). On a
  CommitFailedException (a stale base: the catalog's UPDATE matched no row, or the branch
  moved) it backs off (100 ms doubling, its default), refreshes, stops if its snapshot already
  landed, and otherwise rebuilds the manifests on the new base without rewriting data files.
  create() raises its retry limit to COMMIT_RETRIES_MAX; append() counts the catalog commit
  attempts it made, so the retries it reports are attempts - 1. Any other commit error (an
  unknown outcome) propagates: append() never re-appends rows on its own.
- Freshness: a read asks the catalog for the current metadata location (one sqlite query) and
  re-reads the metadata JSON only when it moved, as Java Iceberg's metastore refresh does, so
  an idle poll costs no storage request. The catalog's queries are local and not metered.
- Key: create() stores the key column in the table property KEY_PROPERTY; upsert() passes it
  as join_cols (copy-on-write), lookup() filters on it with manifest and Parquet-stats pruning.
- Tail: the position is the current snapshot id (None while the table is empty); a poll runs
  incremental_append_scan from it, which reads only the manifest lists of the new snapshots,
  the manifests they added and those manifests' added data files.
"""
from __future__ import annotations

import logging
import os

import pyarrow as pa
from pyarrow.fs import S3FileSystem
from pyiceberg.catalog.sql import IcebergTables, SqlCatalog
from pyiceberg.expressions import EqualTo
from pyiceberg.io.pyarrow import PyArrowFileIO
from pyiceberg.table import Table, TableProperties
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import KEY, REGION, SECRET, Peer

CATALOG_NAME = "flussfs_bench"
NAMESPACE = "bench"
KEY_PROPERTY = "flussfs-bench.key"
COMMIT_RETRIES_MAX = 100  # per append; 16 writers on 2 cores needed up to 26
COMMIT_WAIT_MS_MIN = 100  # pyiceberg's default first backoff, doubled on each retry
COMMIT_WAIT_MS_MAX = 1000  # pyiceberg's default cap, 60 s, idled 16 writers for minutes

# pyiceberg logs every commit retry as a warning; append() returns the count instead.
logging.getLogger("pyiceberg.table").setLevel(logging.ERROR)


class _CountingCatalog(SqlCatalog):
    """A SqlCatalog that counts commit attempts: pyiceberg retries inside Table.append."""
    commit_attempts = 0

    def commit_table(self, table, requirements, updates):
        self.commit_attempts += 1
        return super().commit_table(table, requirements, updates)


class OnePutFileIO(PyArrowFileIO):
    """PyArrowFileIO that writes a small S3 object with one PutObject, as Java Iceberg's
    S3FileIO does, rather than Arrow's default three-request multipart upload."""

    def _initialize_s3_fs(self, netloc):
        options = super()._initialize_s3_fs(netloc).__reduce__()[1][0]
        return S3FileSystem(**{**options, "allow_delayed_open": True})


class IcebergPeer(Peer):
    name = "pyiceberg"

    def __init__(self, store, table):
        super().__init__(store, table)
        self.identifier = (NAMESPACE, table)
        self.catalog = _CountingCatalog(CATALOG_NAME, **_catalog_properties(store))
        self._table: Table | None = None

    # -- writing --------------------------------------------------------------------------
    def create(self, schema: pa.Schema, key: str | None = None) -> None:
        self.catalog.create_namespace_if_not_exists(NAMESPACE)
        properties = {TableProperties.COMMIT_NUM_RETRIES: str(COMMIT_RETRIES_MAX),
                      TableProperties.COMMIT_MIN_RETRY_WAIT_MS: str(COMMIT_WAIT_MS_MIN),
                      TableProperties.COMMIT_MAX_RETRY_WAIT_MS: str(COMMIT_WAIT_MS_MAX)}
        if key is not None:
            properties[KEY_PROPERTY] = key
        self._table = self.catalog.create_table(self.identifier, schema, location=self.uri,
                                                properties=properties)

    def append(self, rows: pa.Table) -> int:
        table = self._latest()
        before = self.catalog.commit_attempts
        table.append(rows)
        return self.catalog.commit_attempts - before - 1

    def upsert(self, rows: pa.Table) -> None:
        table = self._latest()
        table.upsert(rows, join_cols=[self._key(table)])

    # -- reading --------------------------------------------------------------------------
    def scan(self, columns: list[str] | None = None) -> pa.Table:
        fields = tuple(columns) if columns else ("*",)
        return self._latest().scan(selected_fields=fields).to_arrow()

    def lookup(self, value) -> pa.Table:
        table = self._latest()
        return table.scan(row_filter=EqualTo(self._key(table), value)).to_arrow()

    def tail_start(self):
        return _head(self._latest())

    def tail_poll(self, position):
        table = self._latest()
        latest = _head(table)
        if latest == position:
            return None, position
        rows = table.incremental_append_scan(from_snapshot_id_exclusive=position,
                                             to_snapshot_id_inclusive=latest).to_arrow()
        return (rows if rows.num_rows else None), latest

    def close(self) -> None:
        self.catalog.engine.dispose()

    # -- helpers --------------------------------------------------------------------------
    def _latest(self) -> Table:
        """The table at the catalog's current version, re-reading metadata only if it moved."""
        if self._table is None or self._table.metadata_location != self._pointer():
            self._table = self.catalog.load_table(self.identifier)
        return self._table

    def _pointer(self) -> str:
        """The catalog's current metadata location for this table (no storage request)."""
        query = select(IcebergTables.metadata_location).where(
            IcebergTables.catalog_name == CATALOG_NAME, IcebergTables.table_namespace == NAMESPACE,
            IcebergTables.table_name == self.table)
        with Session(self.catalog.engine) as session:
            return session.execute(query).scalar_one()

    @staticmethod
    def _key(table: Table) -> str:
        return table.properties[KEY_PROPERTY]


def _head(table: Table) -> int | None:
    """The current snapshot id: a tail position (None for a table never written)."""
    snapshot = table.current_snapshot()
    return snapshot.snapshot_id if snapshot else None


def _catalog_properties(store) -> dict:
    """SqlCatalog properties: the shared sqlite file, and the FileIO settings for the store."""
    assert store.scratch, "IcebergPeer keeps its catalog in store.scratch"
    properties = {"uri": f"sqlite:///{os.path.join(store.scratch, 'iceberg-catalog.db')}"}
    if store.kind == "s3":
        properties.update({"py-io-impl": f"{__name__}.{OnePutFileIO.__name__}",
                           "s3.endpoint": store.endpoint_url, "s3.access-key-id": KEY,
                           "s3.secret-access-key": SECRET, "s3.region": REGION})
    return properties
