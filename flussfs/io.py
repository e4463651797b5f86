"""The shared thread pool for parallel object-store requests.

Invariant: tasks submitted here never wait on other tasks of this pool (no nesting), so the
pool cannot deadlock however busy it is.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor

IO_THREADS_MAX = 32

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(IO_THREADS_MAX, thread_name_prefix="flussfs-io")
        return _pool


def parallel(fn, items) -> list:
    """fn(item) for each item, concurrently, results in order; the first error is raised."""
    items = list(items)
    if len(items) <= 1:
        return [fn(i) for i in items]
    return list(pool().map(fn, items))


def parallel_iter(fn, items, window: int = IO_THREADS_MAX):
    """fn(item) for each item, at most `window` in flight, results yielded in order."""
    executor, pending = pool(), deque()
    try:
        for item in items:
            pending.append(executor.submit(fn, item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:  # the consumer stopped early
            future.cancel()
