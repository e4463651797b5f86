"""The batching writer (../shared/API.md, `table.writer()`).

Rows are checked when given (bad input fails the call that gave it, naming the column) and
buffered; a background thread commits the buffer when it has lingered `linger_s` or holds
`batch_rows_max` rows or `batch_bytes_max` bytes. `flush()` returns when everything given
before it is durable; `close()` flushes and stops the thread.

Invariants: rows, upserts and deletes are committed in the order given (per bucket); a flush that fails keeps its
prepared drafts, with their writer sequence numbers, and the next flush commits those same
drafts, so a retry after an unknown outcome can never commit them twice.
"""
from __future__ import annotations

import threading
import time

from . import runs
from .errors import DraftExpiredError, FlussError

LINGER_S_DEFAULT = 0.1
BATCH_ROWS_MAX_DEFAULT = 100_000
BATCH_BYTES_MAX_DEFAULT = 16 * 2**20
BACKLOG_BATCHES_MAX = 2  # append blocks while this many batches' worth wait to be committed


class Writer:
    def __init__(self, table, *, linger_s: float = LINGER_S_DEFAULT,
                 batch_rows_max: int = BATCH_ROWS_MAX_DEFAULT,
                 batch_bytes_max: int = BATCH_BYTES_MAX_DEFAULT):
        self.table = table
        self.linger_s, self.batch_rows_max, self.batch_bytes_max = linger_s, batch_rows_max, batch_bytes_max
        self._buffer: list = []  # runs (flussfs.runs.Run), in call order
        self._buffer_rows = self._buffer_bytes = 0
        self._oldest: float | None = None
        self._unfinished: list[dict] = []   # prepared drafts not yet committed, oldest first
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()  # one commit round at a time
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flussfs-writer", daemon=True)
        self._thread.start()

    def append(self, data) -> None:
        """Buffer rows of a log table (checked now, committed soon)."""
        self._add(runs.append_run(self.table.metadata, data, self.table.name))

    def upsert(self, data) -> None:
        """Buffer an upsert (or partial update) of a primary-key table."""
        for run in runs.upsert_runs(self.table.metadata, data, self.table.name):
            self._add(run)

    def delete(self, keys) -> None:
        """Buffer a delete of keys of a primary-key table."""
        self._add(runs.delete_run(self.table.metadata, keys, self.table.name))

    def _add(self, run) -> None:
        rows = run.rows
        with self._cond:
            self._raise_pending()
            if self._closed:
                raise FlussError(f"writer of {self.table.name} is closed")
            if rows.num_rows == 0:
                return
            self._buffer.append(run)
            self._buffer_rows += rows.num_rows
            self._buffer_bytes += rows.nbytes
            if self._oldest is None or self._full():  # start the linger clock, or commit now
                self._oldest = self._oldest or time.monotonic()
                self._cond.notify_all()
            while self._backlogged() and self._error is None and not self._closed:
                self._cond.wait(0.1)  # back-pressure: let the background commit catch up

    def flush(self) -> None:
        """Commit everything buffered so far; raise if that fails."""
        self._commit_round()
        with self._cond:
            self._raise_pending()

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join()
        self.flush()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:  # do not hide the caller's error behind a flush error
            try:
                self.close()
            except FlussError:
                pass

    def _full(self) -> bool:
        return self._buffer_rows >= self.batch_rows_max or self._buffer_bytes >= self.batch_bytes_max

    def _backlogged(self) -> bool:
        return (self._buffer_rows >= BACKLOG_BATCHES_MAX * self.batch_rows_max
                or self._buffer_bytes >= BACKLOG_BATCHES_MAX * self.batch_bytes_max)

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._due():
                    timeout = None if self._oldest is None else max(
                        0.0, self._oldest + self.linger_s - time.monotonic())
                    self._cond.wait(timeout)
                if self._closed:
                    return
            try:
                self._commit_round()
            except FlussError as e:
                with self._cond:
                    self._error = e
                time.sleep(self.linger_s)  # do not spin on a failing store

    def _due(self) -> bool:
        return self._oldest is not None and (
            self._full() or time.monotonic() - self._oldest >= self.linger_s)

    def _commit_round(self) -> None:
        with self._flush_lock:
            with self._cond:
                buffered, self._buffer = self._buffer, []
                self._buffer_rows = self._buffer_bytes = 0
                self._oldest = None
                self._cond.notify_all()  # wake appends waiting on back-pressure
            if buffered:
                try:
                    self._unfinished.append(self.table.prepare_runs(buffered))
                except BaseException:
                    self._requeue(buffered)  # nothing of them was committed: keep them
                    raise
            while self._unfinished:
                try:
                    self.table.commit_drafts(self._unfinished[0])
                except DraftExpiredError:  # not committed; its segments may be collected
                    self._unfinished[0] = self.table.renew_expired(self._unfinished[0])
                    self.table.commit_drafts(self._unfinished[0])
                self._unfinished.pop(0)

    def _requeue(self, rows: list) -> None:
        with self._cond:
            self._buffer[:0] = rows
            self._buffer_rows += sum(r.rows.num_rows for r in rows)
            self._buffer_bytes += sum(r.rows.nbytes for r in rows)
            self._oldest = self._oldest or time.monotonic()
