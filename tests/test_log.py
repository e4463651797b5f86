"""The commit chain: constant-cost head discovery, offset and time lookup through checkpoints,
repair of missing checkpoints, and an ignored corrupt hint."""
import pytest

import flussfs
from flussfs import paths
from flussfs.log import BucketLog
from flussfs.storage.wrappers import MeteredStore
from helpers import events

INTERVAL, COMMITS = 4, 41


@pytest.fixture
def table(tmp_path):
    t = flussfs.create_table(str(tmp_path / "t"), events([]).schema, buckets=1,
                             checkpoint_interval=INTERVAL)
    for i in range(COMMITS):
        t.append(events(range(i * 3, i * 3 + 3)))  # 3 rows per commit
    t.close()  # background checkpoint writes done
    return t


def _cold(table):
    return BucketLog(MeteredStore(table.store), 0, INTERVAL)


def test_cold_head_discovery_costs_a_constant_number_of_requests(table):
    """A fresh reader finds the head with one hint GET, one LIST and one commit GET."""
    log = _cold(table)
    head = log.head()
    assert (head.number, head.end_offset) == (COMMITS - 1, COMMITS * 3)
    assert dict(log.store.requests) == {"get": 2, "list": 1}


def test_offsets_and_times_map_to_commits_through_checkpoints(table):
    """locate(offset) and locate_time(ms) agree with the commits, in a bounded number of requests."""
    commits = [table.logs[0].read_commit(n) for n in range(COMMITS)]
    log = _cold(table)
    head = log.head()
    for c in commits:
        log.store.reset()
        assert log.locate(c.base_offset + 1, head) == c.number
        assert sum(log.store.requests.values()) <= 2
        assert log.locate_time(c.timestamp_ms, head) == next(
            x.number for x in commits if x.timestamp_ms >= c.timestamp_ms)
    assert log.locate(COMMITS * 3, head) == COMMITS
    with pytest.raises(flussfs.NotFoundError):
        log.locate(COMMITS * 3 + 1, head)


def test_missing_checkpoints_are_rebuilt_from_commits(table):
    """Deleting checkpoints and the hint loses nothing: lookups rebuild them from commits."""
    for info in list(table.store.list(paths.checkpoints_dir(0))):
        table.store.delete(info.key)
    table.store.delete(paths.checkpoint_hint(0))
    log = BucketLog(table.store, 0, INTERVAL)
    assert log.locate(1) == 0 and log.locate(20 * 3) == 20
    rebuilt = [paths.parse_number(i.key) for i in table.store.list(paths.checkpoints_dir(0))]
    assert rebuilt == [n for n in range(COMMITS) if (n + 1) % INTERVAL == 0 and n < COMMITS - 1]


def test_corrupt_hint_is_ignored(table):
    """The advisory hint is the only mutable object; a damaged one falls back to listing."""
    table.store.put(paths.checkpoint_hint(0), b"garbage")
    head = BucketLog(table.store, 0, INTERVAL).head()
    assert head.number == COMMITS - 1


def test_subscribe_from_a_datetime_starts_at_the_first_commit_at_or_after_it(table):
    """subscribe(datetime) yields exactly the rows of commits stamped at or after it."""
    from datetime import datetime, timezone
    c = table.logs[0].read_commit(30)
    start = datetime.fromtimestamp(c.timestamp_ms / 1000, tz=timezone.utc)
    first = min(n for n in range(COMMITS) if table.logs[0].read_commit(n).timestamp_ms >= c.timestamp_ms)
    got = [o for b in table.subscribe(start, idle_timeout=0.5) for o in b.column("_offset").to_pylist()]
    assert got == list(range(first * 3, COMMITS * 3))


def test_appends_after_close_still_write_checkpoints(tmp_path):
    """A closed table handle still appends, writing checkpoints in the calling thread."""
    t = flussfs.create_table(str(tmp_path / "t"), events([]).schema, buckets=1, checkpoint_interval=2)
    t.close()
    for i in range(4):
        t.append(events([i]))
    names = [paths.parse_number(i.key) for i in t.store.list(paths.checkpoints_dir(0))]
    assert names == [1, 3]
