"""The shared thread pool for parallel object-store requests.

Invariant: tasks running in this pool never wait on other tasks of this pool: `parallel` called
from inside the pool runs its items in the calling thread, so the pool cannot deadlock however
busy it is.
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
            _pool = ThreadPoolExecutor(IO_THREADS_MAX, thread_name_prefix=_THREAD_PREFIX)
        return _pool


_THREAD_PREFIX = "flussfs-io"


def _in_pool() -> bool:
    return threading.current_thread().name.startswith(_THREAD_PREFIX)


def parallel(fn, items) -> list:
    """fn(item) for each item, concurrently, results in order; the first error is raised."""
    items = list(items)
    if len(items) <= 1 or _in_pool():
        return [fn(i) for i in items]
    return list(pool().map(fn, items))


def parallel_iter(fn, items, window: int = IO_THREADS_MAX):
    """fn(item) for each item, at most `window` in flight, results yielded in order."""
    if _in_pool():
        yield from map(fn, items)
        return
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
