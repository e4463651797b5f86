"""One bucket's commit chain: finding its head, committing with retry, locating offsets
(format_spec/spec-v1.md, "Commit protocol", "Checkpoints", "Reader requirements").

Invariants: commit numbers are contiguous from 0 and offsets from 0; a commit's base offset is
its predecessor's end offset; a writer puts the same data at one number at a time and moves to
the next number only after reading another writer's commit there, so data is never committed
twice; an unknown outcome is resolved by reading the number back, never by cleaning up.
"""
from __future__ import annotations

import bisect
import logging
import random
import threading
import time
from dataclasses import dataclass, field

from . import paths
from .cache import BoundedLru
from .errors import (CommitOutcomeUnknownError, ConflictError, CorruptObjectError,
                     DraftExpiredError, NotFoundError, StorageError)
from .format.checkpoint import Checkpoint, decode_hint, encode_hint
from .format.commit import Commit, RunningIndex
from .io import parallel
from .storage import PutOutcome

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS_MAX = 200          # conflicts before an append gives up with ConflictError
UNKNOWN_RESOLVE_ATTEMPTS_MAX = 8   # put/read-back rounds before CommitOutcomeUnknownError
BACKOFF_S_MAX = 0.5
APPEND, CHANGE = "append", "change"  # commit operations: log tables / primary-key tables
OPERATIONS = (APPEND, CHANGE)
COMMIT_CACHE_BYTES_DEFAULT = 64 * 2**20  # decoded commits a table keeps (CommitCache)
COMMIT_DEADLINE_S = 600            # segments older than this are never committed (see gc.py)


@dataclass
class Draft:
    """What a writer wants to commit, independent of where it lands in the chain.

    `last_number` is the commit number it was last put at. A draft whose outcome was unknown
    MUST be retried there first (by whichever handle retries it): its earlier put may have
    landed, and only reading that number tells."""
    parts: tuple
    record_count: int
    writer_id: str
    writer_seq: int
    body: bytes = b""
    schema_id: int = 0
    operation: str = "append"
    prepared_at: float = field(default_factory=time.time)  # when its segments were uploaded
    last_number: int | None = None
    rows: object = field(default=None, repr=False, compare=False)  # the runs it encodes
    committed: "Commit | None" = field(default=None, repr=False, compare=False)  # once known
    # A batch draft (spec 13.7): its writer id belongs to one batch, and any commit of that
    # writer id in this bucket holds the batch's rows, whichever attempt's sequence number.
    batch: bool = False

    def owns(self, commit: Commit) -> bool:
        """Whether `commit` holds this draft's rows."""
        return commit.writer_id == self.writer_id and (self.batch or commit.writer_seq == self.writer_seq)

    @property
    def has_segments(self) -> bool:
        return any("key" in p for p in self.parts)

    def expired(self, now: float | None = None) -> bool:
        """Not committed, and its segments are past the commit deadline and may be collected
        (see gc.py)."""
        now = time.time() if now is None else now
        return (self.committed is None and self.has_segments
                and now - self.prepared_at > COMMIT_DEADLINE_S)

    def at(self, bucket: int, head: Commit | None, interval: int) -> Commit:
        """The commit this draft becomes on top of `head` (None: the bucket is empty)."""
        number = 0 if head is None else head.number + 1
        now_ms = int(time.time() * 1000)
        return Commit(bucket=bucket, number=number,
                      base_offset=0 if head is None else head.end_offset,
                      record_count=self.record_count,
                      timestamp_ms=now_ms if head is None else max(now_ms, head.timestamp_ms),
                      writer_id=self.writer_id, writer_seq=self.writer_seq, parts=self.parts,
                      index=_running_index(head, number, interval), schema_id=self.schema_id,
                      operation=self.operation, body=self.body)


def _running_index(head: Commit | None, number: int, interval: int) -> RunningIndex:
    if number % interval == 0:
        return RunningIndex(number)
    prev = head.index
    return RunningIndex(prev.first_number, prev.base_offsets + (head.base_offset,),
                        prev.timestamps_ms + (head.timestamp_ms,))


class CommitCache(BoundedLru):
    """Decoded commits by key, least recently used first out, within a byte budget. Commits
    are immutable, so a cached one is never stale."""

    def __init__(self, bytes_max: int = COMMIT_CACHE_BYTES_DEFAULT):
        super().__init__(bytes_max)

    def put(self, key: str, commit: Commit) -> None:
        super().put(key, commit, len(commit.raw))


_UNREAD = object()   # BucketLog.commit's `after` when the caller names no commit to build on


class BucketLog:
    """The commit chain of one bucket, with a cached head. Safe to share across threads."""

    def __init__(self, store, bucket: int, interval: int, background=None, operation: str = APPEND,
                 cache: "CommitCache | None" = None):
        self.store, self.bucket, self.interval = store, bucket, interval
        self.cache = cache
        self.operation = operation  # what every commit of this table holds
        self._head: Commit | None = None
        self._lock = threading.Lock()
        self._background = background  # an executor for checkpoint writing, or None (inline)
        self._checkpoints: dict[int, Checkpoint] = {}
        self.conflicts = 0  # commit races this handle lost and retried (for metrics)

    # ---- reading the chain -------------------------------------------------------------
    def read_commit(self, number: int) -> Commit | None:
        key = paths.commit(self.bucket, number)
        cached = self.cache.get(key) if self.cache is not None else None
        if cached is not None:
            return cached
        try:
            data = self.store.get(key)
        except NotFoundError:
            return None
        commit = Commit.from_bytes(data, key)
        if commit.number != number or commit.bucket != self.bucket:
            raise CorruptObjectError(f"{key}: holds commit {commit.number} of bucket {commit.bucket}")
        if commit.operation not in OPERATIONS:
            raise CorruptObjectError(f"{key}: operation {commit.operation!r} is not one this "
                                     f"reader knows ({list(OPERATIONS)}); upgrade flussfs")
        if commit.operation != self.operation:
            raise CorruptObjectError(f"{key}: an {commit.operation!r} commit in a table whose "
                                     f"commits are {self.operation!r}")
        if self.cache is not None:
            self.cache.put(key, commit)
        return commit

    def head(self, refresh: bool = True) -> Commit | None:
        """The latest commit (None for an empty bucket). Costs one LIST plus one GET when the
        head moved; a cold start adds one GET of the checkpoint hint."""
        with self._lock:
            cached = self._head
        if cached is not None and not refresh:
            return cached
        start = cached.number if cached is not None else self._hinted_checkpoint()
        last = self._last_listed(start)
        if last is None:
            if cached is not None or start is None:
                return cached
            newest = self.read_commit(start)
        else:
            newest = self.read_commit(paths.parse_number(last.key))
        if newest is None:  # a hint or a listing that outran its object: start over, no hint
            return self._full_head()
        self._remember(newest)
        return newest

    def _full_head(self) -> Commit | None:
        last = self._last_listed(None)
        head = None if last is None else self.read_commit(paths.parse_number(last.key))
        if head is not None:
            self._remember(head)
        return head

    def _last_listed(self, after_number: int | None):
        """The last commit key listed after commit `after_number` (from the start if None)."""
        after = paths.commit(self.bucket, after_number) if after_number is not None else None
        last = None
        for info in self.store.list(paths.commits_dir(self.bucket), start_after=after):
            last = info
        return last

    def _hinted_checkpoint(self) -> int | None:
        key = paths.checkpoint_hint(self.bucket)
        try:
            return decode_hint(self.store.get(key), key)
        except NotFoundError:
            return None
        except CorruptObjectError as e:  # advisory only: fall back to a full listing
            log.warning("ignoring checkpoint hint: %s", e)
            return None

    def _remember(self, commit: Commit) -> None:
        with self._lock:
            if self._head is None or commit.number > self._head.number:
                self._head = commit

    def numbers_after(self, number: int | None) -> list[int]:
        """Commit numbers after `number` (all when None), by listing."""
        after = paths.commit(self.bucket, number) if number is not None and number >= 0 else None
        return [paths.parse_number(i.key)
                for i in self.store.list(paths.commits_dir(self.bucket), start_after=after)]

    # ---- committing --------------------------------------------------------------------
    def commit(self, draft: Draft, after=_UNREAD) -> Commit:
        """Commit `draft` at the head of the chain, retrying on conflicts. Committing a draft
        that is already committed returns its commit. `after` (a commit, or None for an empty
        bucket) makes the first attempt build on it instead of on the cached head."""
        if draft.committed is not None:
            return draft.committed
        done, head = (False, after) if after is not _UNREAD else self._start_for(draft)
        if done:
            self._remember(head)
            draft.committed = head
            return head
        for attempt in range(COMMIT_ATTEMPTS_MAX):
            self._check_deadline(draft)
            candidate = draft.at(self.bucket, head, self.interval)
            draft.last_number = candidate.number
            mine, existing = self._put_resolved(candidate, draft)
            if mine:
                draft.committed = existing
                self._remember(existing)
                self._after_commit(existing)
                return existing
            head = existing
            self.conflicts += 1
            self._remember(existing)
            if attempt >= 2:  # under contention, jump to the real head instead of walking
                time.sleep(random.uniform(0, min(BACKOFF_S_MAX, 0.005 * 2 ** attempt)))
                head, mine = self._jump(draft, existing)
                if mine:
                    draft.committed = head
                    return head
        raise ConflictError(f"bucket {self.bucket} of {self.store.url}: lost {COMMIT_ATTEMPTS_MAX} "
                            f"commit races in a row; nothing was committed")

    def _jump(self, draft: Draft, passed: Commit) -> tuple[Commit, bool]:
        """(the real head, False), or (the draft's commit, True) when a batch draft's commit is
        among the numbers jumped over: another attempt of its batch may have put it there, and a
        batch draft passes no number unread (spec 13.7)."""
        newest = self.head()
        if not draft.batch or newest.number <= passed.number:
            return newest, False
        for number in range(passed.number + 1, newest.number + 1):
            commit = self.read_commit(number)
            if commit is not None and draft.owns(commit):
                return commit, True
        return newest, False

    def _start_for(self, draft: Draft) -> tuple[bool, Commit | None]:
        """(True, commit) if a retried draft turns out committed; else (False, the head to
        build on). A retried draft is resolved at the number it last tried before anything
        else, the deadline check included: its earlier put may have landed."""
        if draft.last_number is None:
            return False, self.head(refresh=False) or self.head()
        existing = self.read_commit(draft.last_number)
        if existing is not None:
            return draft.owns(existing), existing
        return False, None if draft.last_number == 0 else self.read_commit(draft.last_number - 1)

    def _check_deadline(self, draft: Draft) -> None:
        """Orphan collection deletes unreferenced segments older than its grace period; a
        draft whose segments are near that age must not be committed any more."""
        if draft.expired():
            raise DraftExpiredError(f"bucket {self.bucket} of {self.store.url}: the draft's segments "
                                f"were uploaded over {COMMIT_DEADLINE_S} s ago and may have been "
                                f"collected; nothing was committed, prepare the data again")

    def _put_resolved(self, candidate: Commit, draft: Draft) -> tuple[bool, Commit]:
        """Put `candidate` if absent. Returns (True, it) if our commit holds its number, or
        (False, the other writer's commit there). Lost responses are resolved by reading back."""
        key, data = paths.commit(self.bucket, candidate.number), candidate.to_bytes()
        for round_ in range(UNKNOWN_RESOLVE_ATTEMPTS_MAX):
            try:
                if self.store.put_if_absent(key, data) is PutOutcome.CREATED:
                    return True, candidate
            except CommitOutcomeUnknownError as e:
                log.info("commit %s outcome unknown (%s); reading it back", key, e)
            try:
                existing = self.read_commit(candidate.number)
            except StorageError as e:
                log.info("reading back %s failed: %s", key, e)
                existing = None
            if existing is not None:
                return draft.owns(existing), existing
            # Absent: our put did not land (yet). Putting the same data at the same number again
            # is safe, since at most one put of a number ever succeeds.
            time.sleep(min(BACKOFF_S_MAX, 0.01 * 2 ** round_))
        raise CommitOutcomeUnknownError(
            f"commit {candidate.number} of bucket {self.bucket} in {self.store.url}: the store "
            f"did not confirm the write and reading it back failed {UNKNOWN_RESOLVE_ATTEMPTS_MAX} "
            f"times; retry with the same writer to resolve it")

    def _after_commit(self, commit: Commit) -> None:
        if (commit.number + 1) % self.interval:
            return
        if self._background is not None:
            try:
                self._background.submit(self._write_checkpoint_quietly, commit)
                return
            except RuntimeError:  # the table was closed: write it here instead
                pass
        self._write_checkpoint_quietly(commit)

    def _write_checkpoint_quietly(self, commit: Commit) -> None:
        try:
            self.ensure_checkpoint(commit.number, commit)
            self.store.put(paths.checkpoint_hint(self.bucket), encode_hint(self.bucket, commit.number))
        except Exception as e:  # checkpoints are an optimisation; the next interval repairs
            log.warning("checkpoint after commit %s of bucket %s failed: %s",
                        commit.number, self.bucket, e)

    # ---- checkpoints -------------------------------------------------------------------
    def checkpoint(self, number: int) -> Checkpoint | None:
        """Checkpoint ending at commit `number`, read or None if absent."""
        if number in self._checkpoints:
            return self._checkpoints[number]
        key = paths.checkpoint(self.bucket, number)
        try:
            ckpt = Checkpoint.from_bytes(self.store.get(key), key)
        except NotFoundError:
            return None
        self._checkpoints[number] = ckpt
        return ckpt

    def ensure_checkpoint(self, number: int, last: Commit | None = None) -> Checkpoint:
        """The checkpoint ending at commit `number`, rebuilding it and any missing earlier ones
        from the last commit of each interval. Writing them back is best effort: a reader
        without write access still gets the answer."""
        found = self.checkpoint(number)
        if found is not None:
            return found
        existing = [n for n in (paths.parse_number(i.key)
                                for i in self.store.list(paths.checkpoints_dir(self.bucket)))
                    if n < number]
        prev = self.checkpoint(max(existing)) if existing else None
        first = prev.number + self.interval if prev else self.interval - 1
        missing = list(range(first, number + 1, self.interval))
        lasts = parallel(self.read_commit, missing[:-1]) + [last or self.read_commit(number)]
        for n, commit in zip(missing, lasts):
            if commit is None:
                raise NotFoundError(f"commit {n} of bucket {self.bucket} in {self.store.url} not found")
            prev = self._save_checkpoint(self._next_checkpoint(prev, commit))
        return prev

    def _next_checkpoint(self, prev: Checkpoint | None, last: Commit) -> Checkpoint:
        return Checkpoint(
            bucket=self.bucket, number=last.number, interval=self.interval,
            base_offsets=last.index.base_offsets + (last.base_offset,),
            timestamps_ms=last.index.timestamps_ms + (last.timestamp_ms,), end_offset=last.end_offset,
            history_end_offsets=(prev.history_end_offsets if prev else ()) + (last.end_offset,),
            history_timestamps_ms=(prev.history_timestamps_ms if prev else ()) + (last.timestamp_ms,))

    def _save_checkpoint(self, ckpt: Checkpoint) -> Checkpoint:
        try:
            self.store.put_if_absent(paths.checkpoint(self.bucket, ckpt.number), ckpt.to_bytes())
        except (StorageError, CommitOutcomeUnknownError) as e:
            log.info("could not save checkpoint %s of bucket %s: %s", ckpt.number, self.bucket, e)
        self._checkpoints[ckpt.number] = ckpt
        return ckpt

    # ---- locating offsets --------------------------------------------------------------
    def locate(self, offset: int, head: Commit | None = None) -> int:
        """The number of the commit holding `offset` (head + 1 when `offset` is the end)."""
        head = head or self.head()
        end = 0 if head is None else head.end_offset
        if offset < 0 or offset > end:
            raise NotFoundError(f"offset {offset} is outside bucket {self.bucket} (0..{end})")
        if head is None or offset == end:
            return 0 if head is None else head.number + 1
        if offset >= head.base_offset:
            return head.number
        idx = head.index
        if idx.base_offsets and offset >= idx.base_offsets[0]:
            return idx.first_number + bisect.bisect_right(idx.base_offsets, offset) - 1
        return self._locate_in_checkpoints(offset, idx.first_number - 1)

    def _locate_in_checkpoints(self, offset: int, latest: int) -> int:
        ckpt = self.ensure_checkpoint(latest)
        interval = bisect.bisect_right(ckpt.history_end_offsets, offset)
        last_number = (interval + 1) * self.interval - 1
        if last_number != ckpt.number:
            ckpt = self.ensure_checkpoint(last_number)
        return ckpt.first_number + bisect.bisect_right(ckpt.base_offsets, offset) - 1

    def locate_time(self, timestamp_ms: int, head: Commit | None = None) -> int:
        """The number of the first commit with timestamp >= `timestamp_ms` (head + 1 if none)."""
        head = head or self.head()
        if head is None:
            return 0
        if head.timestamp_ms < timestamp_ms:
            return head.number + 1
        idx = head.index
        recent = idx.timestamps_ms + (head.timestamp_ms,)
        if idx.first_number == 0 or recent[0] < timestamp_ms:
            return idx.first_number + bisect.bisect_left(recent, timestamp_ms)
        ckpt = self.ensure_checkpoint(idx.first_number - 1)
        interval = bisect.bisect_left(ckpt.history_timestamps_ms, timestamp_ms)
        if interval == len(ckpt.history_timestamps_ms):  # every earlier interval ends before it
            return idx.first_number
        last_number = (interval + 1) * self.interval - 1
        if last_number != ckpt.number:
            ckpt = self.ensure_checkpoint(last_number)
        return ckpt.first_number + bisect.bisect_left(ckpt.timestamps_ms, timestamp_ms)
