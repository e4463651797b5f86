"""The systems the benchmark suite compares flussfs with, behind one small interface.

A `Peer` is one table of one system at one location of a `Store`. The suite calls only the
methods below, so every workload runs the same way for every system that can do it; a system
that cannot do a job says so with a `can_*` flag of False and raises NotImplementedError.

Invariants: a peer never caches table state across calls in a way that hides a newer version;
every read method (scan, lookup, tail_poll) first refreshes to the latest committed version, as
a reader of the bucket would. Local tables live under store.root; S3 tables go through
store.endpoint_url (moto's server, or the latency proxy in front of it), with the fake
credentials benchmarks._harness sets.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import pyarrow as pa

REGION = "us-east-1"
KEY, SECRET = "testing", "testing"


@dataclass(frozen=True)
class Store:
    """Where tables live: a local directory, or a bucket behind an S3 endpoint."""
    kind: str                        # "local" or "s3"
    root: str                        # "/tmp/dir" or "s3://bucket"
    endpoint_url: str | None = None  # "http://127.0.0.1:PORT" when kind == "s3"
    scratch: str | None = None       # a local directory a peer may use for side files (catalogs)

    def location(self, name: str) -> str:
        return f"{self.root}/{name}"

    def fsspec_options(self) -> dict | None:
        """s3fs keyword options (flussfs's storage_options), None for local."""
        if self.kind != "s3":
            return None
        return {"endpoint_url": self.endpoint_url, "key": KEY, "secret": SECRET,
                "client_kwargs": {"region_name": REGION}}


class Peer:
    """One table of one system. Subclasses set `name` and the capabilities they have."""
    name = "?"
    can_upsert = True     # upsert(); False for systems without a merge by key
    can_tail = True       # tail_start()/tail_poll()

    def __init__(self, store: Store, table: str):
        self.store, self.table = store, table
        self.uri = store.location(table)

    # -- writing --------------------------------------------------------------------------
    def create(self, schema: pa.Schema, key: str | None = None) -> None:
        """Create an empty table (key: the primary/merge key column, for upsert workloads)."""
        raise NotImplementedError

    def append(self, rows: pa.Table) -> int:
        """Commit `rows` as one new version; durable and visible when it returns. Retries a
        commit conflict with another writer until it lands and returns how many it retried."""
        raise NotImplementedError

    def upsert(self, rows: pa.Table) -> None:
        """Insert or replace the rows by the key given to create(), as one new version."""
        raise NotImplementedError

    # -- reading (each refreshes to the latest version first) ------------------------------
    def scan(self, columns: list[str] | None = None) -> pa.Table:
        """The latest state, or the chosen columns of it."""
        raise NotImplementedError

    def lookup(self, value) -> pa.Table:
        """The latest rows whose key column equals `value`: the system's own filtered scan."""
        raise NotImplementedError

    def tail_start(self):
        """A position at the latest version now; tail_poll reads what is committed after it."""
        raise NotImplementedError

    def tail_poll(self, position) -> tuple[pa.Table | None, object]:
        """One poll: the rows appended after `position` (None if nothing new) and the new
        position. Reads only what is new, as a streaming reader of this system would."""
        raise NotImplementedError

    def close(self) -> None:
        pass


PEERS = {
    "flussfs": "benchmarks.peers.flussfs_peer:FlussfsPeer",
    "deltalake": "benchmarks.peers.delta_peer:DeltaPeer",
    "pyiceberg": "benchmarks.peers.iceberg_peer:IcebergPeer",
    "lance": "benchmarks.peers.lance_peer:LancePeer",
}


def peer_class(name: str) -> type[Peer]:
    """The Peer subclass for a system name (imported lazily: each peer has heavy imports)."""
    module, cls = PEERS[name].split(":")
    return getattr(importlib.import_module(module), cls)
