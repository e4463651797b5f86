"""Garbage collection of orphaned segments (format_spec/spec-v1.md, "Orphans").

An orphan is a segment no commit references: its writer crashed between upload and commit, or
gave up. A segment is deleted only when (1) it is older than `grace_s`, which exceeds the
writers' commit deadline (log.COMMIT_DEADLINE_S) plus CLOCK_SKEW_S_MAX, so no writer can still
commit it, and (2) no commit written since its upload references it. A commit that references a
segment is written after the segment, so only commits from (oldest candidate's upload time -
clock skew) on are read, found through the checkpoints' timestamp index.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

from . import paths
from .io import parallel
from .log import COMMIT_DEADLINE_S

CLOCK_SKEW_S_MAX = 300
GRACE_S_DEFAULT = 3600
assert GRACE_S_DEFAULT > COMMIT_DEADLINE_S + CLOCK_SKEW_S_MAX


@dataclass
class CollectResult:
    deleted: list = field(default_factory=list)
    kept_referenced: int = 0
    kept_young: int = 0


def collect_orphans(table, *, grace_s: float = GRACE_S_DEFAULT, now: float | None = None,
                    dry_run: bool = False) -> CollectResult:
    """Delete the table's orphaned segments (only list them with dry_run)."""
    now = time.time() if now is None else now
    result = CollectResult()
    for bucket, log in enumerate(table.logs):
        segments = list(table.store.list(paths.segments_dir(bucket)))
        candidates = [s for s in segments if s.mtime is not None and s.mtime < now - grace_s]
        result.kept_young += len(segments) - len(candidates)
        if not candidates:
            continue
        since_ms = int((min(s.mtime for s in candidates) - CLOCK_SKEW_S_MAX) * 1000)
        referenced = _referenced_since(log, since_ms)
        for s in candidates:
            if s.key in referenced:
                result.kept_referenced += 1
                continue
            if not dry_run:
                table.store.delete(s.key)
            result.deleted.append(s.key)
    return result


def _referenced_since(log, since_ms: int) -> set[str]:
    head = log.head()
    if head is None:
        return set()
    first = log.locate_time(max(0, since_ms), head)
    commits = parallel(log.read_commit, range(first, head.number + 1))
    return {p["key"] for c in commits if c is not None for p in c.parts if "key" in p}
