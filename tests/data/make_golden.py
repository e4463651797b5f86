"""Writes tests/data/golden-v1: a small table in format v1, kept so later versions prove they
still read it (tests/test_golden.py). Run once per format version; never rewrite v1's copy."""
import os
import shutil
import sys
from datetime import datetime, timezone

import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string()),
                    pa.field("amount", pa.float64()), pa.field("at", pa.timestamp("us", tz="UTC")),
                    pa.field("day", pa.date32()), pa.field("ok", pa.bool_())])


def rows(lo, hi) -> pa.Table:
    ids = list(range(lo, hi))
    return pa.table({"id": ids, "name": [None if i % 7 == 0 else f"name-{i}" for i in ids],
                     "amount": [i * 1.25 for i in ids],
                     "at": [datetime(2026, 1, 1, tzinfo=timezone.utc).replace(second=i % 60) for i in ids],
                     "day": pa.array([i % 1000 for i in ids], pa.int32()).view(pa.date32()),
                     "ok": [i % 2 == 0 for i in ids]}, schema=SCHEMA)


def commits():
    """(lo, hi) of each append, in order; the last one goes to a referenced segment."""
    return [(i * 10, i * 10 + 10) for i in range(12)] + [(120, 2120)]


def main(target):
    import flussfs
    from flussfs import drafts

    if os.path.exists(target):
        shutil.rmtree(target)
    t = flussfs.create_table(target, SCHEMA, buckets=2, bucket_key=["id"], checkpoint_interval=4)
    for lo, hi in commits()[:-1]:
        t.append(rows(lo, hi))
    drafts.INLINE_BYTES_MAX, saved = 1024, drafts.INLINE_BYTES_MAX  # force a small segment
    try:
        t.append(rows(*commits()[-1]))
    finally:
        drafts.INLINE_BYTES_MAX = saved
    t.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "golden-v1"))
