"""Exactly-once batches (format_spec/spec-v1.md, section 13.7): rows delivered by a source that
redelivers (an SQS or Kinesis trigger retried by Lambda, a job rerun) are committed once, even
when each delivery runs in a fresh process that knows nothing of the earlier ones.

The batch id names the delivery (e.g. the source and its record ids). From it:
- the writer id is derived (a hash), so every attempt of the batch commits under the same one,
  and no other batch or writer ever uses it;
- rows are routed without randomness, so every attempt sends the same rows to the same buckets;
- a claim (put-if-absent, before any commit) records each bucket's head: a batch commit can
  only land above it;
- a done marker (put-if-absent, after every bucket committed) lets a redelivery finish with one
  GET.

An attempt that finds a claim but no done marker reads each bucket's commits above the claimed
head for the batch's writer id, then commits the buckets still missing with drafts that treat
any commit of that writer id as their own (log.Draft.batch). An earlier attempt's put that is
still in flight can only land at the head we build on, where our own put reads it back as
ours; so each bucket holds the batch at most once, and at least once when this returns.

Invariants: at most one commit per (bucket, batch writer id); the claim exists before any commit
of the batch; the done marker only after every commit of the batch.
"""
from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from . import drafts, paths
from .runs import coalesce
from .errors import CommitOutcomeUnknownError, CorruptObjectError, InvalidInputError, NotFoundError
from .format.batch import Claim, Done
from .io import parallel
from .storage import PutOutcome
from .table import CommitResult

BATCH_ID_CHARS_MAX = 4096
CLAIM_PUT_ATTEMPTS_MAX = 4
SCAN_WINDOW = 32             # commits read concurrently when looking for an earlier attempt's


@dataclass(frozen=True)
class BatchResult(CommitResult):
    """What a batch committed: bucket -> next offset and commit number; `duplicate` says an
    earlier delivery had already committed every bucket of it."""
    duplicate: bool = False


def batch_writer_id(batch_id: str) -> str:
    """The writer id of every attempt of a batch: 32 hex characters of SHA-256."""
    if not isinstance(batch_id, str) or not batch_id or len(batch_id) > BATCH_ID_CHARS_MAX:
        raise InvalidInputError(f"batch_id must be a non-empty string of at most "
                                f"{BATCH_ID_CHARS_MAX} characters, got {batch_id!r:.80}")
    return hashlib.sha256(b"flussfs-batch\0" + batch_id.encode()).hexdigest()[:32]


def commit_once(table, batch_id: str, changes: list) -> BatchResult:
    """Commit checked runs (flussfs.runs) as the batch `batch_id`, exactly once per table."""
    wid = batch_writer_id(batch_id)
    done = _read(table.store, paths.batch_done(wid), Done)
    if done is not None:
        _check_batch(done, wid, batch_id, paths.batch_done(wid))
        return BatchResult(done.end_offsets, done.numbers, duplicate=True)
    routed = _route(table, wid, changes)
    if not routed:
        return BatchResult({}, {})
    claim, heads = _claim(table, wid, batch_id, list(routed))
    found = _find_committed(table, wid, claim, list(routed), heads)
    committed = {b: c for b, (c, _) in found.items() if c is not None}
    todo = [b for b in routed if b not in committed]
    committed.update(zip(todo, parallel(lambda b: _commit(table, wid, b, routed[b], found[b][1]),
                                        todo)))
    result = BatchResult({b: c.end_offset for b, c in sorted(committed.items())},
                         {b: c.number for b, c in sorted(committed.items())}, duplicate=not todo)
    _mark_done(table.store, Done(wid, batch_id, result.end_offsets, result.commit_numbers))
    return result


def _route(table, wid: str, changes: list) -> dict:
    """bucket -> runs, the same for every delivery of the same rows in any order: by the bucket
    key's hash, or, without one, all rows to the one bucket the writer id names. (A plain
    append's size-based spreading would depend on row order and Arrow's in-memory size.)"""
    if table.metadata.bucket_key:
        return drafts.route_runs(changes, table.metadata, None)
    changes = [r for r in changes if r.rows.num_rows]
    return {int(wid[:8], 16) % table.buckets: coalesce(changes)} if changes else {}


def _commit(table, wid: str, bucket: int, runs: list, last_read):
    """Encode this attempt's draft (fresh segments under a random sequence number) and commit
    it right above `last_read`, the last commit read (None: none): a batch draft passes no
    number unread."""
    draft = drafts.encode(table.store, table.metadata, bucket, runs, wid, secrets.randbelow(10 ** 18))
    draft.batch = True
    return table.logs[bucket].commit(draft, after=last_read)


def _claim(table, wid: str, batch_id: str, buckets: list) -> tuple[Claim, dict | None]:
    """(the batch's claim, bucket -> the head commit it records if this attempt created it,
    else None)."""
    heads = parallel(lambda b: table.logs[b].head(), buckets)
    mine = Claim(wid, batch_id, {b: -1 if h is None else h.number for b, h in zip(buckets, heads)},
                 int(time.time() * 1000))
    key = paths.batch_claim(wid)
    for attempt in range(CLAIM_PUT_ATTEMPTS_MAX):
        try:
            if table.store.put_if_absent(key, mine.to_bytes()) is PutOutcome.CREATED:
                return mine, dict(zip(buckets, heads))
        except CommitOutcomeUnknownError:
            if attempt == CLAIM_PUT_ATTEMPTS_MAX - 1:
                raise
        existing = _read(table.store, key, Claim)
        if existing is not None:
            # Ours with a lost response, or an earlier attempt's: either bounds every commit.
            _check_batch(existing, wid, batch_id, key)
            return existing, None
    raise CommitOutcomeUnknownError(f"claim {key} of batch {batch_id!r:.80} in {table.uri}: the "
                                    f"store neither confirmed nor showed it; nothing was committed")


def _find_committed(table, wid: str, claim: Claim, buckets: list, heads: dict | None) -> dict:
    """bucket -> (the batch's commit or None, the last commit read). A claim this attempt
    created (`heads`) needs no reading: nothing of the batch lies at or below its heads."""
    if heads is not None:
        return {b: (None, heads[b]) for b in buckets}
    found = parallel(lambda b: _find_in_bucket(table.logs[b], wid, claim.heads.get(b, -1)), buckets)
    return dict(zip(buckets, found))


def _find_in_bucket(log, wid: str, claimed_head: int):
    head = log.head()
    last = -1 if head is None else head.number
    numbers = range(claimed_head + 1, last + 1)
    for lo in range(0, len(numbers), SCAN_WINDOW):
        for commit in parallel(log.read_commit, numbers[lo:lo + SCAN_WINDOW]):
            if commit is not None and commit.writer_id == wid:
                return commit, commit
    if last < claimed_head:  # not seen yet by this handle's listing: build on the claimed head
        return None, log.read_commit(claimed_head)
    return None, head


def _mark_done(store, done: Done) -> None:
    """Best effort: without the marker a redelivery still resolves, by reading commits."""
    try:
        store.put_if_absent(paths.batch_done(done.writer_id), done.to_bytes())
    except CommitOutcomeUnknownError:
        pass


def _read(store, key: str, kind):
    try:
        return kind.from_bytes(store.get(key), key)
    except NotFoundError:
        return None


def _check_batch(receipt, wid: str, batch_id: str, key: str) -> None:
    if receipt.writer_id != wid:
        raise CorruptObjectError(f"{key}: holds writer id {receipt.writer_id!r}, not the key's {wid!r}")
    if receipt.batch_id != batch_id:
        raise InvalidInputError(f"{key} belongs to batch {receipt.batch_id!r:.80}, not "
                                f"{batch_id!r:.80} (a writer id collision)")
