"""Many writer processes on one table on the moto server lose and duplicate nothing."""
import multiprocessing

import flussfs
from helpers import EVENTS, assert_contiguous, events

WRITERS, COMMITS, ROWS = 8, 6, 10


def _writer(uri, storage_options, writer, barrier):
    t = flussfs.open_table(uri, storage_options=storage_options)
    barrier.wait(120)
    for c in range(COMMITS):
        base = writer * 10_000 + c * 100
        t.append(events(range(base, base + ROWS)))


def test_eight_writer_processes_on_moto(s3_uri, s3_options):
    """8 spawned processes append concurrently to a 2-bucket table on moto (so they collide):
    every row lands exactly once and each bucket's numbers and offsets are contiguous."""
    t = flussfs.create_table(s3_uri, EVENTS, buckets=2, storage_options=s3_options)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(s3_uri, s3_options, w, barrier)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(300)
        assert [p.exitcode for p in procs] == [0] * WRITERS
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    expected = sorted(w * 10_000 + c * 100 + i for w in range(WRITERS) for c in range(COMMITS)
                      for i in range(ROWS))
    got = sorted(t.scan(columns=["id"]).to_arrow().column("id").to_pylist())
    assert got == expected
    assert sum(t.end_offsets().values()) == len(expected)
    assert_contiguous(t)
    streamed = [i for b in t.subscribe("earliest", idle_timeout=1.0) for i in b.column("id").to_pylist()]
    assert sorted(streamed) == expected
