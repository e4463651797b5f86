"""One conformance suite for every Store (memory, local directory, S3 on moto), then what only
one backend can show: local atomic visibility, S3 multipart conditions and request costs."""
import os
import tempfile
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flussfs.errors import InvalidInputError, NotFoundError
from flussfs.storage import LocalStore, MemoryStore, PutOutcome
from flussfs.storage.s3 import S3Store
from flussfs.storage.wrappers import MeteredStore

THREADS_RACING = 16
DATA = b"0123456789"


def keys_of(infos):
    return [i.key for i in infos]


def put_all(store, keys, data=b"x"):
    for key in keys:
        assert store.put_if_absent(key, data) is PutOutcome.CREATED


# -- put_if_absent, put, get --------------------------------------------------------------------

def test_put_if_absent_creates_then_reports_exists(store):
    """put_if_absent creates a new key once; a second call says EXISTS and leaves the object as it was."""
    assert store.put_if_absent("t/k", DATA) is PutOutcome.CREATED
    assert store.put_if_absent("t/k", b"other bytes") is PutOutcome.EXISTS
    assert store.get("t/k") == DATA
    assert store.head("t/k").size == len(DATA)


def test_get_whole_and_ranges(store):
    """get returns [start, end): whole, from start, a slice, a short tail past the end, b"" when empty."""
    store.put_if_absent("k", DATA)
    assert store.get("k") == DATA
    assert store.get("k", 0) == DATA
    assert store.get("k", 3) == DATA[3:]
    assert store.get("k", 3, 5) == DATA[3:5]
    assert store.get("k", None, 4) == DATA[:4]
    assert store.get("k", 8, 100) == DATA[8:]
    assert store.get("k", 5, 5) == b""
    assert store.get("k", len(DATA)) == b""
    assert store.get("k", len(DATA) + 5, len(DATA) + 9) == b""


def test_empty_object(store):
    """A zero-byte object exists, has size 0, and reads as b"" whole or from offset 0."""
    assert store.put_if_absent("empty", b"") is PutOutcome.CREATED
    assert store.head("empty").size == 0
    assert store.get("empty") == b""
    assert store.get("empty", 0) == b""
    assert store.put_if_absent("empty", b"x") is PutOutcome.EXISTS


def test_get_ranges_keeps_request_order(store):
    """get_ranges answers each [start, end) in the order asked, short tails and empty ranges included."""
    store.put_if_absent("k", DATA)
    assert store.get_ranges("k", [(5, 7), (0, 2), (9, 50), (4, 4), (2, 6)]) == \
        [DATA[5:7], DATA[0:2], DATA[9:], b"", DATA[2:6]]
    assert store.get_ranges("k", [(1, 3)]) == [DATA[1:3]]
    assert store.get_ranges("k", []) == []


def test_missing_key_is_not_found(store):
    """Reading a missing key raises NotFoundError (get, a range, get_ranges); head says None."""
    with pytest.raises(NotFoundError):
        store.get("nope")
    with pytest.raises(NotFoundError):
        store.get("nope", 1, 3)
    with pytest.raises(NotFoundError):
        store.get("nope", 2, 2)
    with pytest.raises(NotFoundError):
        store.get_ranges("nope", [(0, 1), (1, 2)])
    assert store.head("nope") is None


def test_a_prefix_is_not_an_object(store):
    """A key that is only a prefix of other keys is missing: get raises, head is None, delete is a no-op."""
    store.put_if_absent("d/e/f", DATA)
    for key in ("d", "d/e"):
        with pytest.raises(NotFoundError):
            store.get(key)
        assert store.head(key) is None
        store.delete(key)
    assert store.get("d/e/f") == DATA


def test_head_reports_size_and_mtime(store):
    """head gives the key, the size and a plausible mtime of a present object, None for a missing one."""
    store.put_if_absent("p/q", b"x" * 1234)
    info = store.head("p/q")
    assert (info.key, info.size) == ("p/q", 1234)
    assert info.mtime is None or info.mtime > 1.6e9
    assert store.head("p/r") is None


def test_put_overwrites(store):
    """put creates or replaces; put_if_absent afterwards still says EXISTS."""
    store.put("h", b"one")
    assert store.get("h") == b"one"
    store.put("h", b"second")
    assert store.get("h") == b"second"
    assert store.head("h").size == len(b"second")
    assert store.put_if_absent("h", b"third") is PutOutcome.EXISTS
    assert store.get("h") == b"second"


def test_delete_is_idempotent(store):
    """delete removes a key, deleting again or deleting a never-written key is fine, and the key can be created anew."""
    store.put_if_absent("x/1", b"a")
    store.put_if_absent("x/2", b"b")
    store.delete("x/1")
    store.delete("x/1")
    store.delete("x/never")
    assert store.head("x/1") is None
    with pytest.raises(NotFoundError):
        store.get("x/1")
    assert keys_of(store.list("x/")) == ["x/2"]
    assert store.put_if_absent("x/1", b"again") is PutOutcome.CREATED
    assert store.get("x/1") == b"again"


def test_racing_put_if_absent_has_one_winner(store):
    """16 threads racing put_if_absent on one key: exactly one CREATED, the rest EXISTS, the winner's bytes stay."""
    barrier = threading.Barrier(THREADS_RACING)
    outcomes = [None] * THREADS_RACING

    def race(i):
        barrier.wait()
        outcomes[i] = store.put_if_absent("race/key", f"writer-{i}".encode() * 100)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(THREADS_RACING)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in enumerate(outcomes) if o is PutOutcome.CREATED]
    assert len(winners) == 1, outcomes
    assert outcomes.count(PutOutcome.EXISTS) == THREADS_RACING - 1, outcomes
    assert store.get("race/key") == f"writer-{winners[0]}".encode() * 100


# -- list ---------------------------------------------------------------------------------------

NESTED = ["a/b/1", "a/b/2", "a/c", "a/b.x", "a/b-y", "a/b/sub/3", "ab", "a.z", "b/1", "a/x=1/f"]


def test_list_is_lexicographic_by_full_key(store):
    """list is recursive and sorted by the full key as S3 sorts it ('-' < '.' < '/'), and stays inside the prefix."""
    put_all(store, NESTED)
    assert keys_of(store.list("a/")) == ["a/b-y", "a/b.x", "a/b/1", "a/b/2", "a/b/sub/3", "a/c", "a/x=1/f"]
    assert keys_of(store.list("a/b/")) == ["a/b/1", "a/b/2", "a/b/sub/3"]
    assert keys_of(store.list("")) == sorted(NESTED)
    infos = list(store.list("b/"))
    assert [(i.key, i.size) for i in infos] == [("b/1", 1)]


def test_list_start_after_and_limit(store):
    """start_after is exclusive and may name a missing key or lie outside the prefix; limit caps the count."""
    put_all(store, NESTED)
    under_a = sorted(k for k in NESTED if k.startswith("a/"))
    assert keys_of(store.list("a/", start_after="a/b/1")) == under_a[under_a.index("a/b/1") + 1:]
    assert keys_of(store.list("a/", start_after="a/b/")) == ["a/b/1", "a/b/2", "a/b/sub/3", "a/c", "a/x=1/f"]
    assert keys_of(store.list("a/", start_after="a/b0")) == ["a/c", "a/x=1/f"]
    assert keys_of(store.list("a/", start_after="a")) == under_a
    assert keys_of(store.list("a/", start_after="a/z")) == []
    assert keys_of(store.list("a/", start_after="b")) == []
    assert keys_of(store.list("a/", limit=2)) == under_a[:2]
    assert keys_of(store.list("a/", start_after="a/b/2", limit=2)) == ["a/b/sub/3", "a/c"]
    assert keys_of(store.list("a/", limit=100)) == under_a


def test_list_of_missing_prefix_is_empty(store):
    """Listing a prefix nothing was written under (or under a key that is a file) yields nothing."""
    assert keys_of(store.list("nothing/")) == []
    store.put_if_absent("file", b"x")
    assert keys_of(store.list("file/")) == []
    assert keys_of(store.list("fil/")) == []


def test_list_pages_through_a_small_page_size(store, monkeypatch):
    """list follows continuation pages (S3 with a 3-key page here; one page elsewhere) and loses no key."""
    import flussfs.storage.s3 as s3_module
    monkeypatch.setattr(s3_module, "LIST_PAGE_KEYS_MAX", 3)
    keys = [f"pg/{i:05d}" for i in range(11)]
    put_all(store, keys)
    assert keys_of(store.list("pg/")) == keys
    assert keys_of(store.list("pg/", start_after=keys[4])) == keys[5:]
    assert keys_of(store.list("pg/", limit=7)) == keys[:7]


@pytest.mark.parametrize("kind", ["memory", "local"])
def test_list_pagination_over_a_thousand_keys(kind, tmp_path):
    """More than one S3 page of keys (1500) lists completely, and limit/start_after page through them exactly."""
    store = MemoryStore(f"memory://{uuid.uuid4().hex}") if kind == "memory" else LocalStore(str(tmp_path))
    keys = [f"big/{i // 100:02d}/{i:020d}" for i in range(1500)]
    for key in keys:
        store.put(key, b"")
    assert keys_of(store.list("big/")) == keys
    pages, after = [], None
    while True:
        page = keys_of(store.list("big/", start_after=after, limit=1000))
        if not page:
            break
        pages.append(page)
        after = page[-1]
    assert [len(p) for p in pages] == [1000, 500]
    assert sum(pages, []) == keys


# Leaf names always hold '0' or '.', directory names never do, so no key is a directory of another.
_dirs = st.lists(st.text("ab-", min_size=1, max_size=2), max_size=2)
_leaf = st.builds(lambda s, suffix: s + suffix, st.text("ab-", min_size=1, max_size=2),
                  st.sampled_from(["0", ".k", "0.x"]))
_keys = st.lists(st.builds(lambda d, f: "/".join(d + [f]), _dirs, _leaf), min_size=1, max_size=25, unique=True)


@pytest.mark.parametrize("kind", ["memory", "local"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=_keys, prefix=_dirs, start_after=st.one_of(st.none(), st.text("ab-./0", max_size=6)),
       limit=st.one_of(st.none(), st.integers(1, 30)))
def test_list_matches_a_sorted_model(kind, keys, prefix, start_after, limit):
    """For random nested keys, list(prefix, start_after, limit) equals filtering and sorting a plain list."""
    prefix = "".join(p + "/" for p in prefix)
    with tempfile.TemporaryDirectory() as root:
        store = MemoryStore() if kind == "memory" else LocalStore(root)
        put_all(store, keys)
        expected = sorted(k for k in keys if k.startswith(prefix) and (start_after is None or k > start_after))
        assert keys_of(store.list(prefix, start_after, limit)) == expected[:limit]


# -- local directories --------------------------------------------------------------------------

def test_local_refuses_keys_it_could_not_list(tmp_path):
    """A local store refuses to write a key with a '.'-prefixed or empty component, which list would skip."""
    store = LocalStore(str(tmp_path))
    for key in (".hidden", "a/.tmp-x", "a//b", "a/", "../escape"):
        with pytest.raises(InvalidInputError):
            store.put_if_absent(key, b"x")
        with pytest.raises(InvalidInputError):
            store.put(key, b"x")
    assert keys_of(store.list("")) == []
    assert os.listdir(tmp_path) == []


def test_local_reader_never_sees_a_partial_object(tmp_path):
    """While objects are written, every key a reader lists or heads is complete, and no temp file is listed."""
    store = LocalStore(str(tmp_path))
    size, count = 2 * 2**20, 24
    payload = {f"seg/{i:04d}": bytes([i]) * size for i in range(count)}
    done = threading.Event()

    def write():
        try:
            for key, data in payload.items():
                assert store.put_if_absent(key, data) is PutOutcome.CREATED
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    while True:
        finished = done.is_set()  # a listing begun after the writer finished must show everything
        for info in store.list("seg/"):
            assert info.key in payload, info.key
            assert info.size == size, info
            if info.key not in seen:
                assert store.get(info.key, size - 3) == payload[info.key][-3:]
                seen.add(info.key)
        if finished:
            break
    writer.join()
    assert seen == set(payload)
    assert not [n for n in os.listdir(tmp_path / "seg") if n.startswith(".")]


def test_local_skips_temp_files_and_cleans_up_after_exists(tmp_path):
    """Dot-named temp files are never listed, and a put_if_absent that finds the key leaves no temp file."""
    store = LocalStore(str(tmp_path))
    store.put_if_absent("d/k", b"one")
    (tmp_path / "d" / ".tmp-abandoned").write_bytes(b"partial")
    assert store.put_if_absent("d/k", b"two") is PutOutcome.EXISTS
    assert keys_of(store.list("d/")) == ["d/k"]
    assert sorted(os.listdir(tmp_path / "d")) == [".tmp-abandoned", "k"]


# -- S3 -----------------------------------------------------------------------------------------

def test_s3_multipart_put_if_absent(s3_client, s3_uri, s3_options):
    """A multipart put_if_absent creates a new key, and over an existing key says EXISTS, changes nothing and leaves no pending upload."""
    store = S3Store(s3_uri, s3_options, part_bytes=5 * 2**20)
    bucket, prefix = s3_uri.split("://", 1)[1].split("/", 1)
    big = os.urandom(11 * 2**20)  # two parts or more: a multipart upload
    assert store.put_if_absent("mp/new", big) is PutOutcome.CREATED
    assert store.get("mp/new", 5 * 2**20 - 2, 5 * 2**20 + 2) == big[5 * 2**20 - 2: 5 * 2**20 + 2]
    assert store.head("mp/new").size == len(big)

    assert store.put_if_absent("mp/old", b"small") is PutOutcome.CREATED
    assert store.put_if_absent("mp/old", big) is PutOutcome.EXISTS
    assert store.get("mp/old") == b"small"
    uploads = s3_client.list_multipart_uploads(Bucket=bucket, Prefix=prefix + "/")
    assert uploads.get("Uploads", []) == []


def test_s3_reads_fetch_only_the_requested_bytes(lossy_proxy, lossy_s3_options, s3_uri):
    """On the wire, a ranged get is one GET whose body is the range, get_ranges one GET per range, a whole get one GET."""
    store = MeteredStore(S3Store(s3_uri, lossy_s3_options))
    data = os.urandom(2**20)
    store.put_if_absent("obj", data)
    lossy_proxy.clear_log()

    assert store.get("obj", 1000, 1100) == data[1000:1100]
    (get,) = lossy_proxy.exchanges()
    assert (get.method, get.headers.get("range"), get.response_bytes) == ("GET", "bytes=1000-1099", 100)
    assert store.bytes_read == 100

    lossy_proxy.clear_log()
    ranges = [(500_000, 500_010), (0, 7), (2**20 - 5, 2**20 + 50)]
    assert store.get_ranges("obj", ranges) == [data[s:e] for s, e in ranges]
    sent = sorted((x.method, x.headers.get("range"), x.response_bytes) for x in lossy_proxy.exchanges())
    assert sent == sorted([("GET", "bytes=500000-500009", 10), ("GET", "bytes=0-6", 7),
                           ("GET", f"bytes={2**20 - 5}-{2**20 + 49}", 5)])

    lossy_proxy.clear_log()
    assert store.get("obj") == data
    assert [(x.method, x.response_bytes) for x in lossy_proxy.exchanges()] == [("GET", len(data))]
    assert store.bytes_read == 100 + 22 + len(data)


def test_s3_list_pages_on_the_wire(lossy_proxy, lossy_s3_options, s3_uri, monkeypatch):
    """With a 3-key page, listing 7 keys costs three LIST requests and a limit of 2 costs one."""
    import flussfs.storage.s3 as s3_module

    monkeypatch.setattr(s3_module, "LIST_PAGE_KEYS_MAX", 3)
    store = S3Store(s3_uri, lossy_s3_options)
    put_all(store, [f"l/{i}" for i in range(7)])
    lossy_proxy.clear_log()
    assert len(list(store.list("l/"))) == 7
    assert len(lossy_proxy.exchanges("GET", "list-type=2")) == 3
    lossy_proxy.clear_log()
    assert keys_of(store.list("l/", limit=2)) == ["l/0", "l/1"]
    assert len(lossy_proxy.exchanges("GET", "list-type=2")) == 1
