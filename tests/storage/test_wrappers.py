"""FaultStore injects errors, lost responses and delays where asked and nowhere else; MeteredStore
counts requests and bytes per operation."""
import types

import pytest

import flussfs.storage.wrappers as wrappers
from flussfs.errors import CommitOutcomeUnknownError, NotFoundError, StorageError
from flussfs.storage import MemoryStore, PutOutcome
from flussfs.storage.wrappers import Fault, FaultStore, MeteredStore


@pytest.fixture
def inner():
    return MemoryStore("memory://wrapped")


# -- FaultStore ---------------------------------------------------------------------------------

def test_error_on_put_if_absent_writes_nothing(inner):
    """An "error" fault on put_if_absent raises CommitOutcomeUnknownError before the store is reached."""
    store = FaultStore(inner, [Fault("error")])
    with pytest.raises(CommitOutcomeUnknownError):
        store.put_if_absent("c/1", b"mine")
    assert inner.head("c/1") is None
    assert store.put_if_absent("c/1", b"mine") is PutOutcome.CREATED  # times=1: the fault is spent


def test_lost_put_if_absent_lands_but_reports_unknown(inner):
    """A "lost" put_if_absent leaves the object written, raises CommitOutcomeUnknownError, and a retry then says EXISTS."""
    store = FaultStore(inner, [Fault("lost")])
    with pytest.raises(CommitOutcomeUnknownError):
        store.put_if_absent("c/1", b"mine")
    assert inner.get("c/1") == b"mine"
    assert store.put_if_absent("c/1", b"mine") is PutOutcome.EXISTS


def test_faults_on_other_operations_raise_storage_errors(inner):
    """Faults on get, put, head, list and delete raise StorageError (never NotFoundError); lost ones still act."""
    inner.put("k", b"v")
    store = FaultStore(inner, [Fault("error", ops=("get", "head", "list"), times=3),
                               Fault("lost", ops=("put", "delete"), times=2)])
    for call in (lambda: store.get("k"), lambda: store.head("k"), lambda: list(store.list(""))):
        with pytest.raises(StorageError) as raised:
            call()
        assert not isinstance(raised.value, NotFoundError)
    with pytest.raises(StorageError):
        store.put("k", b"new")
    assert inner.get("k") == b"new"
    with pytest.raises(StorageError):
        store.delete("k")
    assert inner.head("k") is None


def test_faults_match_operation_key_and_count(inner):
    """A fault fires only on its operations and on keys containing key_contains, exactly `times` times."""
    store = FaultStore(inner)
    fault = store.add(Fault("error", ops=("put_if_absent", "get"), key_contains="/commits/", times=2))
    assert store.put_if_absent("b/segments/1", b"s") is PutOutcome.CREATED
    store.put("b/commits/1", b"hint")  # put is not among the fault's operations
    assert fault.hits == 0
    with pytest.raises(CommitOutcomeUnknownError):
        store.put_if_absent("b/commits/2", b"c")
    with pytest.raises(StorageError):
        store.get("b/commits/1")
    assert fault.hits == 2
    assert store.put_if_absent("b/commits/2", b"c") is PutOutcome.CREATED
    assert store.get("b/commits/1") == b"hint"
    assert fault.hits == 2


def test_get_ranges_is_faulted_as_a_get(inner):
    """get_ranges counts as the "get" operation for fault matching."""
    inner.put("k", b"0123")
    store = FaultStore(inner, [Fault("error", ops=("get",))])
    with pytest.raises(StorageError):
        store.get_ranges("k", [(0, 1)])
    assert store.get_ranges("k", [(0, 1), (2, 4)]) == [b"0", b"23"]


def test_delay_waits_before_the_store_is_reached(inner, monkeypatch):
    """A "delay" fault sleeps delay_s before the call reaches the store, then the call proceeds normally."""
    slept = []

    def sleep(seconds):
        slept.append((seconds, inner.head("k")))  # what the store holds while we wait

    monkeypatch.setattr(wrappers, "time", types.SimpleNamespace(sleep=sleep))
    store = FaultStore(inner, [Fault("delay", delay_s=0.25)])
    assert store.put_if_absent("k", b"v") is PutOutcome.CREATED
    assert slept == [(0.25, None)]
    assert store.put_if_absent("k", b"w") is PutOutcome.EXISTS
    assert len(slept) == 1


def test_delay_and_lost_combine(inner, monkeypatch):
    """Two faults on one call both apply: it waits, reaches the store, and its answer is lost."""
    monkeypatch.setattr(wrappers, "time", types.SimpleNamespace(sleep=lambda s: None))
    store = FaultStore(inner, [Fault("delay", delay_s=1.0), Fault("lost")])
    with pytest.raises(CommitOutcomeUnknownError):
        store.put_if_absent("k", b"v")
    assert inner.get("k") == b"v"
    assert [f.hits for f in store.faults] == [1, 1]


# -- MeteredStore -------------------------------------------------------------------------------

def test_metered_store_counts_requests_and_bytes(inner):
    """MeteredStore counts one request per operation (per range for get_ranges) and the bytes moved."""
    store = MeteredStore(inner)
    assert store.put_if_absent("a/1", b"12345") is PutOutcome.CREATED
    assert store.put_if_absent("a/1", b"xx") is PutOutcome.EXISTS
    store.put("a/2", b"abc")
    assert store.get("a/1", 1, 3) == b"23"
    assert store.get_ranges("a/1", [(0, 1), (3, 5)]) == [b"1", b"45"]
    assert store.head("a/1").size == 5
    assert store.head("zzz") is None
    assert len(list(store.list("a/"))) == 2
    store.delete("a/2")
    assert dict(store.requests) == {"put": 3, "get": 3, "head": 2, "list": 1, "delete": 1}
    assert store.bytes_written == 5 + 2 + 3
    assert store.bytes_read == 2 + 1 + 2
    store.reset()
    assert (dict(store.requests), store.bytes_read, store.bytes_written) == ({}, 0, 0)


def test_metered_list_counts_one_request_per_page(inner):
    """A listing of 2500 keys counts three LIST requests (pages of 1000), an empty one counts one."""
    for i in range(2500):
        inner.put(f"k/{i:05d}", b"")
    store = MeteredStore(inner)
    assert len(list(store.list("k/"))) == 2500
    assert store.requests["list"] == 3
    store.reset()
    assert list(store.list("none/")) == []
    assert store.requests["list"] == 1


def test_metered_get_of_missing_key_raises_not_found(inner):
    """Wrapping keeps the inner store's errors: a missing key is still NotFoundError."""
    store = MeteredStore(FaultStore(inner))
    with pytest.raises(NotFoundError):
        store.get("missing")
    assert store.bytes_read == 0
