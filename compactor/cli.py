"""The compaction command line: `flussfs compact URI` and `python -m compactor URI`.

Invariants: progress goes to stderr, the summary to stdout (JSON with --json); tasks run on a
process pool by default (--workers 0 runs them in-process); errors are left to the caller's
main(), which prints them and exits 1.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
from contextlib import nullcontext
from concurrent.futures import ProcessPoolExecutor

from flussfs.cli.arguments import UsageError


def add_arguments(p) -> None:
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="processes to run bucket tasks on (0: in this process; default: "
                        "min(4, CPUs))")
    p.add_argument("--no-changelog", action="store_true",
                   help="do not produce the changelog with before-images")
    p.add_argument("--retention-hours", type=float, default=None,
                   help="keep replaced files and snapshots this long (default 6)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def run(args, options) -> int:
    from .gc import RETENTION_MS_DEFAULT
    from .job import compact
    retention = (RETENTION_MS_DEFAULT if args.retention_hours is None
                 else int(args.retention_hours * 3600 * 1000))
    progress = None if args.quiet else _progress
    if args.workers < 0:
        raise UsageError("--workers must be >= 0")
    pool = (nullcontext() if args.workers == 0 else
            ProcessPoolExecutor(args.workers, mp_context=multiprocessing.get_context("spawn")))
    with pool as executor:
        result = compact(args.uri, storage_options=options, executor=executor,
                         changelog=not args.no_changelog, retention_ms=retention, progress=progress)
    print(json.dumps(summary(result), indent=2) if args.json else format_summary(result))
    return 0


def _progress(done: int, total: int, stats: dict) -> None:
    print(f"  bucket {stats['bucket']}: {stats['changes']:,} changes from {stats['commits']} "
          f"commits -> {stats['rows_written']:,} rows written"
          f"{' (rewritten)' if stats['rewritten'] else ''}  [{done}/{total}]", file=sys.stderr)


def summary(result) -> dict:
    return {"snapshot": result.snapshot, "committed": result.committed,
            "metadata_location": result.metadata_location, "buckets_compacted": len(result.buckets),
            "changes": result.changes, "rows_written": result.rows_written,
            "bytes_written": result.bytes_written, "collected": result.collected,
            "elapsed_s": round(result.elapsed_s, 3)}


def format_summary(result) -> str:
    if not result.committed:
        return (f"nothing new since snapshot {result.snapshot}; Iceberg table at "
                f"{result.metadata_location}")
    rate = result.changes / result.elapsed_s if result.elapsed_s else 0
    return (f"snapshot {result.snapshot}: merged {result.changes:,} changes of "
            f"{len(result.buckets)} buckets, wrote {result.rows_written:,} rows "
            f"({result.bytes_written / 2**20:.1f} MiB) in {result.elapsed_s:.2f} s "
            f"({rate:,.0f} changes/s); collected {result.collected} objects\n"
            f"Iceberg metadata: {result.metadata_location}")


def main(argv=None) -> int:
    """`python -m compactor URI [options]`: the same as `flussfs compact`."""
    from flussfs.cli import main as flussfs_main
    return flussfs_main(["compact", *(sys.argv[1:] if argv is None else argv)])
