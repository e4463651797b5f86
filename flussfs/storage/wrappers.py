"""Wrappers around any Store: request metering and fault injection (for tests and benchmarks).

They add behaviour around the five operations without changing what the inner store does, so
that one production implementation per backend stays the only one.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

from ..errors import CommitOutcomeUnknownError, StorageError
from .base import PutOutcome


class _Delegate:
    def __init__(self, inner):
        self.inner = inner
        self.url = inner.url

    def get(self, key, start=None, end=None):
        return self.inner.get(key, start, end)

    def get_ranges(self, key, ranges):
        return self.inner.get_ranges(key, ranges)

    def put_if_absent(self, key, data):
        return self.inner.put_if_absent(key, data)

    def put(self, key, data):
        return self.inner.put(key, data)

    def head(self, key):
        return self.inner.head(key)

    def list(self, prefix, start_after=None, limit=None):
        return self.inner.list(prefix, start_after, limit)

    def delete(self, key):
        return self.inner.delete(key)


class MeteredStore(_Delegate):
    """Counts requests by operation and bytes moved; a LIST counts one request per page."""

    def __init__(self, inner):
        super().__init__(inner)
        self._lock = threading.Lock()
        self.requests: Counter = Counter()
        self.bytes_read = 0
        self.bytes_written = 0

    def _count(self, op, n=1, read=0, written=0):
        with self._lock:
            self.requests[op] += n
            self.bytes_read += read
            self.bytes_written += written

    def reset(self):
        with self._lock:
            self.requests.clear()
            self.bytes_read = self.bytes_written = 0

    def get(self, key, start=None, end=None):
        self._count("get")  # counted before the call: a 404 costs a request too
        data = self.inner.get(key, start, end)
        self._count("get", n=0, read=len(data))
        return data

    def get_ranges(self, key, ranges):
        self._count("get", n=len(ranges))
        out = self.inner.get_ranges(key, ranges)
        self._count("get", n=0, read=sum(map(len, out)))
        return out

    def put_if_absent(self, key, data):
        self._count("put", written=len(data))
        return self.inner.put_if_absent(key, data)

    def put(self, key, data):
        self._count("put", written=len(data))
        return self.inner.put(key, data)

    def head(self, key):
        self._count("head")
        return self.inner.head(key)

    def list(self, prefix, start_after=None, limit=None):
        self._count("list")
        for i, info in enumerate(self.inner.list(prefix, start_after, limit)):
            if i and i % 1000 == 0:
                self._count("list")
            yield info

    def delete(self, key):
        self._count("delete")
        return self.inner.delete(key)


@dataclass
class Fault:
    """One fault rule: on operations `ops` whose key contains `key_contains`, for `times` hits.

    kind: "error" (fail before reaching the store), "lost" (reach the store, then lose the
    response), "delay" (sleep `delay_s` first, then proceed)."""
    kind: str
    ops: tuple = ("put_if_absent",)
    key_contains: str = ""
    times: int = 1
    delay_s: float = 0.0
    on_hit: Callable | None = None  # called (before the operation) each time the fault fires
    hits: int = field(default=0)

    def matches(self, op, key):
        return op in self.ops and self.key_contains in key and self.hits < self.times


class FaultStore(_Delegate):
    """Injects errors, delays and lost responses into chosen operations."""

    def __init__(self, inner, faults: list[Fault] | None = None):
        super().__init__(inner)
        self.faults = list(faults or [])
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def _take(self, op, key) -> list[Fault]:
        with self._lock:
            hit = [f for f in self.faults if f.matches(op, key)]
            for f in hit:
                f.hits += 1
        return hit

    def _run(self, op, key, call: Callable):
        faults = self._take(op, key)
        for f in faults:
            if f.on_hit is not None:
                f.on_hit()
            if f.kind == "delay":
                time.sleep(f.delay_s)
        if any(f.kind == "error" for f in faults):
            raise _error(op, key, "injected error")
        result = call()
        if any(f.kind == "lost" for f in faults):
            raise _error(op, key, "injected lost response")
        return result

    def get(self, key, start=None, end=None):
        return self._run("get", key, lambda: self.inner.get(key, start, end))

    def get_ranges(self, key, ranges):
        return self._run("get", key, lambda: self.inner.get_ranges(key, ranges))

    def put_if_absent(self, key, data) -> PutOutcome:
        return self._run("put_if_absent", key, lambda: self.inner.put_if_absent(key, data))

    def put(self, key, data):
        return self._run("put", key, lambda: self.inner.put(key, data))

    def head(self, key):
        return self._run("head", key, lambda: self.inner.head(key))

    def list(self, prefix, start_after=None, limit=None):
        return iter(self._run("list", prefix, lambda: list(self.inner.list(prefix, start_after, limit))))

    def delete(self, key):
        return self._run("delete", key, lambda: self.inner.delete(key))


def _error(op, key, what):
    if op == "put_if_absent":
        return CommitOutcomeUnknownError(f"{what} on {op} {key}")
    return StorageError(f"{what} on {op} {key}")
