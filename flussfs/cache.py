"""A process-wide, size-bounded LRU cache of what is derived from immutable objects.

Snapshot data files and delete files are written once under unique names and never modified,
so anything decoded from one (a Parquet footer, a delete file's positions) stays true for as
long as the object exists; caching it saves a GET and a decode on every later read.

Invariants: an entry is keyed by what it is (its kind), the store's URL and the object's key.
Snapshot objects' keys carry the compaction's epoch and a random token, so two tables never
write the same key, and an entry is never confused with another table's even where two stores
share a URL (two endpoints serving one bucket name). Cached values must not be mutated (numpy
arrays are made read-only). The cache never holds more than its byte budget (an entry larger
than an eighth of the budget is not kept at all).
"""
from __future__ import annotations

import threading
from collections import OrderedDict


class BoundedLru:
    """Values by name, least recently used first out, within a byte budget; a value larger than
    an eighth of the budget is not kept. Safe to share across threads."""

    def __init__(self, bytes_max: int):
        self.bytes_max, self.bytes = bytes_max, 0
        self._items: OrderedDict[str, tuple[object, int]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str):
        """The value kept under `name`, or None."""
        with self._lock:
            found = self._items.get(name)
            if found is None:
                return None
            self._items.move_to_end(name)
            return found[0]

    def put(self, name: str, value, size: int) -> None:
        if size > self.bytes_max // 8:
            return
        with self._lock:
            if name in self._items:
                return
            self._items[name] = (value, size)
            self.bytes += size
            while self.bytes > self.bytes_max:
                _, (_, old) = self._items.popitem(last=False)
                self.bytes -= old


class ImmutableCache(BoundedLru):
    def get(self, store, kind: str, key: str, load, size) -> object:
        """The cached `kind` of value for object `key` in `store`, else load() (outside the
        lock), kept if size(value) fits."""
        name = f"{kind}:{store.url}/{key}"
        value = super().get(name)
        if value is None:
            value = load()
            self.put(name, value, size(value))
        return value


DERIVED_BYTES_MAX = 256 * 1024 * 1024
derived = ImmutableCache(DERIVED_BYTES_MAX)
