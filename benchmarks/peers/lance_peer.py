"""Lance (pylance) behind the suite's Peer interface.

Invariants:
- A version is committed by creating its manifest `_versions/<u64::MAX - version>.manifest`
  if absent: `If-None-Match: *` on S3, an exclusive create (temp file + hard link) locally.
  Plain `s3://` is safe for concurrent writers; no DynamoDB (`s3+ddb://`) lock is needed.
  Locally Lance never fsyncs, so a returned append is visible but not crash-durable.
- append() writes its data files once, then commits an Append with Lance's own retries off
  (max_retries=0), so each race lost to another writer surfaces as a retryable
  CommitConflictError that this loop counts. The loop waits as Lance's own does (a random
  slot of 4, 8, 16... slots, a slot being 1.1x the first attempt), capped at
  BACKOFF_SLOTS_MAX slots and without Lance's 30 s give-up (which 16 writers on moto hit).
  Lance rebases an Append onto whatever was committed meanwhile (appends never conflict
  logically), so a retry rewrites only its transaction file and manifest. The handle is not
  refreshed first: the commit reads the manifests committed since its version itself.
- The merge key is the field marked `lance-schema:unenforced-primary-key` (Lance's own
  primary key, kept in the schema), so a fresh handle in another process finds it.
- Every read first refreshes the handle with checkout_latest(): one listing of `_versions/`,
  plus one manifest GET only when a newer version exists.
- A tail position is (version, highest fragment id). Fragment ids only grow, so the rows a
  later version appended are those in fragments with higher ids; a poll reads only those.
  This holds for append-only tables (an upsert's new fragment would read as appended rows).
"""
from __future__ import annotations

import random
import time

import lance
import pyarrow as pa
from lance.commit import CommitConflictError
from lance.fragment import write_fragments

from . import KEY, REGION, SECRET, Peer

PRIMARY_KEY = b"lance-schema:unenforced-primary-key"
COMMIT_ATTEMPTS_MAX = 100
BACKOFF_SLOTS_MAX = 32      # enough for the suite's 16 writers to each find a free slot


class LancePeer(Peer):
    name = "lance"

    def __init__(self, store, table):
        super().__init__(store, table)
        self.options = _storage_options(store)
        self._ds: lance.LanceDataset | None = None

    # -- writing --------------------------------------------------------------------------
    def create(self, schema: pa.Schema, key: str | None = None) -> None:
        if key is not None:
            i = schema.get_field_index(key)
            field = schema.field(i).with_nullable(False).with_metadata({PRIMARY_KEY: b"true"})
            schema = schema.set(i, field)
        self._ds = lance.write_dataset(schema.empty_table(), self.uri, mode="create",
                                       storage_options=self.options)

    def append(self, rows: pa.Table) -> int:
        ds = self._handle()
        operation = lance.LanceOperation.Append(write_fragments(rows, ds))
        started, slot_s = time.perf_counter(), None
        for conflicts in range(COMMIT_ATTEMPTS_MAX):
            try:
                self._ds = lance.LanceDataset.commit(ds, operation, read_version=ds.version,
                                                     max_retries=0, storage_options=self.options)
                return conflicts
            except CommitConflictError as e:
                if not e.retryable:
                    raise
            slot_s = slot_s or 1.1 * (time.perf_counter() - started)
            time.sleep(slot_s * random.randrange(min(4 << conflicts, BACKOFF_SLOTS_MAX)))
        raise RuntimeError(f"{self.uri}: append lost {COMMIT_ATTEMPTS_MAX} commit races")

    def upsert(self, rows: pa.Table) -> None:
        builder = self._latest().merge_insert(self._key())
        builder.when_matched_update_all().when_not_matched_insert_all().execute(rows)

    # -- reading --------------------------------------------------------------------------
    def scan(self, columns: list[str] | None = None) -> pa.Table:
        return self._latest().to_table(columns=columns)

    def lookup(self, value) -> pa.Table:
        """A filtered scan (no index); `value` is an integer key."""
        return self._latest().to_table(filter=f"{self._key()} = {int(value)}")

    def tail_start(self):
        ds = self._latest()
        return ds.version, _last_fragment_id(ds)

    def tail_poll(self, position):
        version, last_id = position
        ds = self._latest()
        if ds.version == version:
            return None, position
        new = [f for f in ds.get_fragments() if f.fragment_id > last_id]
        rows = ds.scanner(fragments=new).to_table() if new else None
        return rows, (ds.version, _last_fragment_id(ds, last_id))

    def close(self) -> None:
        self._ds = None

    # -- the handle -----------------------------------------------------------------------
    def _handle(self) -> lance.LanceDataset:
        """The open dataset, at whatever version it was last refreshed to."""
        if self._ds is None:
            self._ds = lance.dataset(self.uri, storage_options=self.options)
        return self._ds

    def _latest(self) -> lance.LanceDataset:
        if self._ds is None:
            return self._handle()  # a fresh open is at the latest version already
        self._ds.checkout_latest()
        return self._ds

    def _key(self) -> str:
        keys = [f.name for f in self._handle().schema if (f.metadata or {}).get(PRIMARY_KEY)]
        if len(keys) != 1:
            raise ValueError(f"{self.uri}: expected one primary key column, found {keys}")
        return keys[0]


def _storage_options(store) -> dict | None:
    """Lance's object_store options for moto or the proxy: plain HTTP, path-style, fake keys."""
    if store.kind != "s3":
        return None
    return {"aws_endpoint": store.endpoint_url, "allow_http": "true",
            "aws_access_key_id": KEY, "aws_secret_access_key": SECRET, "aws_region": REGION}


def _last_fragment_id(ds: lance.LanceDataset, floor: int = -1) -> int:
    return max([floor] + [f.fragment_id for f in ds.get_fragments()])
