"""The batching writer: linger and size limits, back-pressure, errors surfaced, reuse after flush."""
import pyarrow as pa
import pytest

import flussfs
from helpers import EVENTS, commit_count, events, ids_of


def test_size_limit_commits_without_waiting_for_linger(tmp_path):
    """With a long linger, reaching batch_rows_max still commits; flush() commits the rest."""
    t = flussfs.create_table(str(tmp_path / "t"), EVENTS, buckets=1)
    with t.writer(linger_s=3600, batch_rows_max=100) as w:
        for i in range(0, 1000, 50):
            w.append(events(range(i, i + 50)))
        w.flush()
        assert ids_of(t) == list(range(1000))
        assert 2 <= commit_count(t) <= 20  # batched: fewer commits than appends
    assert ids_of(t) == list(range(1000))


def test_linger_commits_in_the_background(tmp_path):
    """A buffered row becomes visible after the linger time without flush()."""
    import time
    t = flussfs.create_table(str(tmp_path / "t"), EVENTS, buckets=1)
    w = t.writer(linger_s=0.05)
    w.append(events([1]))
    deadline = time.monotonic() + 30
    while not ids_of(t) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ids_of(t) == [1]
    w.close()


def test_bad_rows_fail_the_append_that_gave_them(tmp_path):
    """append() checks its rows at once, naming the column; earlier rows still commit."""
    t = flussfs.create_table(str(tmp_path / "t"), EVENTS, buckets=1)
    with t.writer(linger_s=3600) as w:
        w.append(events([1]))
        with pytest.raises(flussfs.InvalidInputError, match="'score'"):
            w.append(pa.table({"id": [2], "score": ["high"]}))
    assert ids_of(t) == [1]
    with pytest.raises(flussfs.FlussError, match="closed"):
        w.append(events([3]))


def test_a_keyless_flush_of_many_small_appends_is_one_commit(tmp_path):
    """Without a bucket key, one writer flush goes to one bucket in one commit, however many
    append calls it holds (review: each call had become its own commit)."""
    t = flussfs.create_table(str(tmp_path / "t"), EVENTS, buckets=4)
    with t.writer(linger_s=100) as w:
        for i in range(8):
            w.append(events([i]))
    assert sorted(t.end_offsets().values()) == [0, 0, 0, 8]
    assert sum(log.head().number + 1 for log in t.logs if log.head() is not None) == 1
