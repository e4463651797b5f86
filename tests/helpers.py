"""Small helpers shared by the project's tests."""
import json

import pyarrow as pa

import flussfs
from flussfs.table import Table

EVENTS = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("name", pa.string()),
                    pa.field("score", pa.float64())])


def events(ids) -> pa.Table:
    ids = list(ids)
    return pa.table({"id": pa.array(ids, pa.int64()), "name": [f"n{i}" for i in ids],
                     "score": [i / 2 for i in ids]}, schema=EVENTS)


def wide(rows: int, start: int = 0, columns: int = 20) -> pa.Table:
    """`columns` columns (int64, float64, string in turn), large enough to go to segments."""
    import numpy as np
    ids = np.arange(start, start + rows)
    cols = {}
    for c in range(columns):
        kind = c % 3
        cols[f"c{c:02d}"] = (pa.array(ids * (c + 1)) if kind == 0 else
                             pa.array(ids * 0.5 + c) if kind == 1 else
                             pa.array([f"value-{c}-{i % 9973}" for i in ids]))
    cols["c00"] = pa.array(ids)
    return pa.table(cols)


def wide_schema(columns: int = 20) -> pa.Schema:
    return pa.schema([pa.field(n, t, nullable=(n != "c00"))
                      for n, t in zip(wide(1, columns=columns).schema.names,
                                      wide(1, columns=columns).schema.types)])


def over(table: Table, store) -> Table:
    """Another handle on the same table whose requests go through `store` (a wrapper)."""
    return Table(table.uri, store, table.metadata, table.storage_options)


def ids_of(table: Table) -> list:
    return sorted(table.scan(columns=["id"]).to_arrow().column("id").to_pylist())


def commit_count(table: Table) -> int:
    return sum(len(log.numbers_after(None)) for log in table.logs)


def assert_contiguous(table: Table) -> None:
    """Every bucket's commits are numbered 0..n-1 and their offsets chain from 0."""
    for log in table.logs:
        numbers = log.numbers_after(None)
        assert numbers == list(range(len(numbers))), f"bucket {log.bucket}: numbers {numbers}"
        offset = 0
        for n in numbers:
            c = log.read_commit(n)
            assert c.base_offset == offset, f"bucket {log.bucket} commit {n}: {c.base_offset} != {offset}"
            offset = c.end_offset


def create(uri, schema=EVENTS, **kw) -> Table:
    return flussfs.create_table(uri, schema, **kw)


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `flussfs argv...` run in-process."""
    from flussfs import cli
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(text):
    return [json.loads(line) for line in text.splitlines() if line.strip()]
