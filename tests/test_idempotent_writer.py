"""Writers whose responses are lost or whose requests fail never commit twice and never lose
an acknowledged append (format_spec/spec-v1.md, "Idempotent writers")."""
import pytest

import flussfs
from flussfs.storage.wrappers import Fault, FaultStore
from helpers import assert_contiguous, commit_count, create, events, ids_of, over


@pytest.fixture
def table(tmp_path):
    return create(str(tmp_path / "t"), buckets=1)


def test_lost_commit_response_is_resolved_as_committed(table):
    """The commit lands but its response is lost: append succeeds, and the rows exist once."""
    faulty = FaultStore(table.store, [Fault("lost", key_contains="/commits/")])
    result = over(table, faulty).append(events(range(10)))
    assert faulty.faults[0].hits == 1
    assert result.end_offsets == {0: 10}
    assert ids_of(table) == list(range(10)) and commit_count(table) == 1


def test_failed_commit_request_is_retried_at_the_same_number(table):
    """The commit request fails before reaching the store: it is retried and lands once."""
    faulty = FaultStore(table.store, [Fault("error", key_contains="/commits/", times=3)])
    over(table, faulty).append(events(range(5)))
    assert faulty.faults[0].hits == 3
    assert ids_of(table) == list(range(5)) and commit_count(table) == 1


def test_lost_response_and_failing_read_back_still_resolve(table):
    """A lost response whose first read-backs fail too is still resolved without duplicating."""
    faulty = FaultStore(table.store, [Fault("lost", key_contains="/commits/"),
                                      Fault("error", ops=("get",), key_contains="/commits/", times=2)])
    over(table, faulty).append(events(range(3)))
    assert ids_of(table) == [0, 1, 2] and commit_count(table) == 1


def test_failed_request_while_another_writer_takes_the_number(table):
    """Our put fails while another writer commits at that number: we move on, both land once."""
    other = flussfs.open_table(table.uri)
    other.append(events([100]))  # both handles now know head 0
    mine = over(table, FaultStore(table.store))
    mine.append(events([101]))
    mine.store.add(Fault("error", key_contains="/commits/", on_hit=lambda: other.append(events([200]))))
    mine.append(events([300]))
    assert ids_of(table) == [100, 101, 200, 300]
    assert_contiguous(table)


def test_lost_response_while_another_writer_races(table):
    """Our put lands but the response is lost, then others commit after us: still exactly once."""
    other = flussfs.open_table(table.uri)
    mine = over(table, FaultStore(table.store))
    mine.store.add(Fault("lost", key_contains="/commits/", on_hit=None))
    mine.store.add(Fault("error", ops=("get",), key_contains="/commits/", times=1,
                         on_hit=lambda: other.append(events([7]))))
    mine.append(events([1, 2]))
    assert ids_of(table) == [1, 2, 7]
    assert_contiguous(table)


def test_unresolvable_outcome_raises_and_a_retry_of_the_same_draft_commits_once(table):
    """When read-backs keep failing the caller gets CommitOutcomeUnknownError; retrying the same
    prepared draft afterwards finds its own commit and does not write it again."""
    faulty = FaultStore(table.store, [Fault("lost", key_contains="/commits/"),
                                      Fault("error", ops=("get",), key_contains="/commits/", times=100)])
    handle = over(table, faulty)
    drafts = handle.prepare(events(range(4)))
    with pytest.raises(flussfs.CommitOutcomeUnknownError):
        handle.commit_drafts(drafts)
    faulty.faults.clear()
    result = over(table, table.store).commit_drafts(drafts)  # another handle retries the draft
    assert result.commit_numbers == {0: 0}
    assert ids_of(table) == [0, 1, 2, 3] and commit_count(table) == 1


def test_batching_writer_retries_a_failed_flush_without_duplicates(table):
    """writer(): a flush whose outcome is unknown raises; the next flush commits the same drafts,
    so every row appears exactly once."""
    faulty = FaultStore(table.store, [Fault("lost", key_contains="/commits/"),
                                      Fault("error", ops=("get",), key_contains="/commits/", times=100)])
    handle = over(table, faulty)
    w = handle.writer(linger_s=60)
    w.append(events(range(6)))
    with pytest.raises(flussfs.CommitOutcomeUnknownError):
        w.flush()
    faulty.faults.clear()
    w.append(events(range(6, 8)))
    w.close()
    assert ids_of(table) == list(range(8))
    assert_contiguous(table)


def test_real_retry_of_a_conditional_put_through_a_lossy_proxy(s3_uri, lossy_proxy, lossy_s3_options):
    """On moto through a proxy that drops the first commit PUT's response, botocore retries the
    PUT, gets 412 for our own write, and flussfs reads back and reports success: rows once."""
    t = flussfs.create_table(s3_uri, events([]).schema, buckets=1, storage_options=lossy_s3_options)
    t.append(events(range(3)))
    lossy_proxy.drop_next("PUT", path_contains="/commits/", count=1)
    result = t.append(events(range(3, 8)))
    assert lossy_proxy.pending_drops() == 0, "the proxy never saw the commit PUT"
    puts = lossy_proxy.exchanges("PUT", "/commits/")
    dropped, retried = puts[-2], puts[-1]
    assert dropped.dropped and dropped.status == 200, "the dropped PUT should have landed"
    assert not retried.dropped and retried.status == 412, "botocore's retry should meet our own write"
    assert result.end_offsets == {0: 8}
    assert ids_of(t) == list(range(8)) and commit_count(t) == 2
    assert_contiguous(t)
