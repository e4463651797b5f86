"""Writes tests/data/golden-v1-pk: a small primary-key table (section 19 of spec-v1.md), kept so
later versions prove they still read it (tests/test_golden.py). Never rewrite this copy."""
import os
import shutil
import sys

import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMA = pa.schema([pa.field("k", pa.int64(), nullable=False), pa.field("name", pa.string()),
                    pa.field("qty", pa.int64()), pa.field("price", pa.float64())])


def whole(lo, hi, version=0) -> pa.Table:
    ks = list(range(lo, hi))
    return pa.table({"k": ks, "name": [f"n{k}-{version}" for k in ks], "qty": [k * 10 + version for k in ks],
                     "price": [k / 4 + version for k in ks]}, schema=SCHEMA)


def operations():
    """(kind, rows) in order: "upsert", "delete", or "writer" (a list of such pairs in one
    writer flush). The 4th upsert is forced into a referenced segment."""
    return [
        ("upsert", whole(0, 40)),
        ("upsert", pa.table({"k": pa.array([3, 5, 7], pa.int64()), "qty": pa.array([None, 55, 77], pa.int64())})),
        ("delete", pa.table({"k": pa.array([1, 2, 99], pa.int64())})),
        ("upsert", whole(30, 2030, version=1)),
        ("writer", [("upsert", whole(2, 3, version=2)), ("delete", pa.table({"k": pa.array([30], pa.int64())})),
                    ("upsert", pa.table({"k": pa.array([31], pa.int64()), "name": ["renamed"]}))]),
    ]


def main(target):
    import flussfs
    from flussfs import drafts

    if os.path.exists(target):
        shutil.rmtree(target)
    t = flussfs.create_table(target, SCHEMA, primary_key=["k"], buckets=2, checkpoint_interval=4)
    for i, (kind, data) in enumerate(operations()):
        if kind == "writer":
            with t.writer() as w:
                for op, rows in data:
                    getattr(w, op)(rows)
            continue
        drafts.INLINE_BYTES_MAX, saved = (1024 if i == 3 else drafts.INLINE_BYTES_MAX), drafts.INLINE_BYTES_MAX
        try:
            getattr(t, kind)(data)
        finally:
            drafts.INLINE_BYTES_MAX = saved
    t.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "golden-v1-pk"))
