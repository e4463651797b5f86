"""Writes tests/data/golden-v1-compacted: the golden primary-key table's operations with two
compactions in between (section 20 of spec-v1.md: a snapshot rewritten whole, then one merged
on read with a position-delete file and changelog pieces) and one upsert after the last, so
later versions prove they still read snapshots (tests/test_golden.py). Never rewrite this copy.
Its Iceberg metadata names absolute paths of where it was written; only flussfs reads it back."""
import os
import shutil
import sys

import pyarrow as pa

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden_pk import SCHEMA, operations, whole  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COMPACT_AFTER = (3, 4)   # compact after these operations (indexes into steps())


def steps():
    """The golden primary-key operations, then one more upsert that stays in the log."""
    return operations() + [("upsert", pa.table({"k": pa.array([4, 2040], pa.int64()),
                                                "name": ["late", "new"]}))]


def main(target):
    import compactor
    import flussfs

    if os.path.exists(target):
        shutil.rmtree(target)
    t = flussfs.create_table(target, SCHEMA, primary_key=["k"], buckets=2, checkpoint_interval=4)
    for i, (kind, data) in enumerate(steps()):
        if kind == "writer":
            with t.writer() as w:
                for op, rows in data:
                    getattr(w, op)(rows)
        else:
            getattr(t, kind)(data)
        if i in COMPACT_AFTER:
            compactor.compact(target)
    t.close()


if __name__ == "__main__":
    assert whole  # re-exported for the test's model
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "golden-v1-compacted"))
