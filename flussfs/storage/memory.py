"""In-memory store for unit tests: a dict behind a lock, with the same semantics as the others."""
from __future__ import annotations

import bisect
import threading
import time
from typing import Iterator

from ..errors import NotFoundError
from .base import ObjectInfo, PutOutcome


class MemoryStore:
    def __init__(self, url: str = "memory://"):
        self.url = url
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._keys: list[str] = []  # sorted, for list with start-after
        self._lock = threading.Lock()

    def get(self, key, start=None, end=None) -> bytes:
        with self._lock:
            found = self._objects.get(key)
        if found is None:
            raise NotFoundError(f"object {key} not found in {self.url}")
        return found[0][start or 0: end]

    def get_ranges(self, key, ranges) -> list[bytes]:
        return [self.get(key, s, e) for s, e in ranges]

    def put_if_absent(self, key, data) -> PutOutcome:
        with self._lock:
            if key in self._objects:
                return PutOutcome.EXISTS
            self._store(key, data)
        return PutOutcome.CREATED

    def put(self, key, data) -> None:
        with self._lock:
            self._store(key, data)

    def _store(self, key, data):
        if key not in self._objects:
            bisect.insort(self._keys, key)
        self._objects[key] = (bytes(data), time.time())

    def head(self, key) -> ObjectInfo | None:
        with self._lock:
            found = self._objects.get(key)
        return None if found is None else ObjectInfo(key, len(found[0]), found[1])

    def list(self, prefix, start_after=None, limit=None) -> Iterator[ObjectInfo]:
        with self._lock:
            lo = bisect.bisect_right(self._keys, max(prefix, start_after or ""))
            if start_after is None or start_after < prefix:
                lo = bisect.bisect_left(self._keys, prefix)
            out = []
            for key in self._keys[lo:]:
                if not key.startswith(prefix) or (limit is not None and len(out) >= limit):
                    break
                data, mtime = self._objects[key]
                out.append(ObjectInfo(key, len(data), mtime))
        return iter(out)

    def delete(self, key) -> None:
        with self._lock:
            if self._objects.pop(key, None) is not None:
                self._keys.remove(key)
