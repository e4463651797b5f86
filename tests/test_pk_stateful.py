"""Primary-key tables held against a dict model (hypothesis, stateful): random upserts, partial updates,
deletes, batching writers and reopenings, per merge engine; scan() and lookup() always equal the model.

The model (`PkModel`) is deliberately naive: it folds one row at a time into a dict in plain Python,
following ../shared/API.md ("Merge engines, per key, in offset order"), so it shares nothing with the
library's vectorised merge. Every rule ends by probing lookup() on a random key set (missing keys
included) and a projected, filtered scan(); the invariant compares the full scan after every step.
Sums stay small, so two's-complement wrap-around never matters (the model wraps anyway).
"""
import inspect
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

import compactor
import flussfs
from flussfs import drafts
from conftest import BUCKET, s3_storage_options
from iceberg_readers import iceberg_properties, pyiceberg_rows

KEYS_MAX = 15          # upserted keys are 0..KEYS_MAX, so they collide often
PROBE_KEYS_MAX = 19    # deleted and looked-up keys reach past KEYS_MAX: some never exist
HANDLES_MAX = 3        # table handles kept (the newest first); older ones keep writing and reading

SMALL = st.integers(-50, 50)
WIDE = st.one_of(SMALL, st.sampled_from([-2**63, 2**63 - 1]))   # for min/max/latest, never summed
TEXT = st.text(alphabet="abé", max_size=3)                      # "" included, distinct from null
FLOAT = st.floats(allow_nan=False, allow_infinity=False)


def nullable(strategy):
    return st.one_of(st.none(), strategy)


@dataclass(frozen=True)
class Spec:
    """One table shape: schema, key, merge engine, and how to draw values, keys and filters for it."""
    name: str
    schema: pa.Schema
    key: tuple
    engine: object                 # the merge_engine argument
    kind: str                      # "last_row", "first_row", "versioned" or "aggregate"
    values: dict                   # column -> strategy of one value (key columns: the upsert key space)
    probe_keys: object             # strategy of one key tuple for delete/lookup (wider than the key space)
    functions: dict = field(default_factory=dict)   # aggregate: column -> function
    version: str | None = None     # versioned: the version column

    @property
    def names(self):
        return self.schema.names

    @property
    def partial(self):
        return self.kind in ("last_row", "aggregate")

    @property
    def required(self):
        """Columns every (partial) upsert must carry: the key and every non-nullable column."""
        return [f.name for f in self.schema if f.name in self.key or not f.nullable]


def _f(name, type_, nullable=True):
    return pa.field(name, type_, nullable=nullable)


def _int_key():
    return st.tuples(st.integers(0, PROBE_KEYS_MAX))


def specs():
    """Every table shape under test (built lazily: Versioned/Aggregate are looked up at run time)."""
    k = {"k": st.integers(0, KEYS_MAX)}
    kv = pa.schema([_f("k", pa.int64(), False), _f("v", pa.int64()), _f("s", pa.string()),
                    _f("x", pa.float64())])
    kv_values = {**k, "v": nullable(WIDE), "s": nullable(TEXT), "x": nullable(FLOAT)}
    ver = pa.schema([_f("k", pa.int64(), False), _f("ver", pa.int64()), _f("val", pa.string()),
                     _f("v", pa.int64())])
    functions = {"total": "sum", "peak": "max", "low": "min", "smin": "min", "smax": "max",
                 "first_tag": "first_non_null", "last_n": "last_non_null", "last_tag": "last_non_null"}
    agg = pa.schema([_f("k", pa.int64(), False), _f("total", pa.int64()), _f("peak", pa.int64()),
                     _f("low", pa.int64()), _f("smin", pa.string()), _f("smax", pa.string()),
                     _f("first_tag", pa.string()), _f("last_n", pa.int64()), _f("last_tag", pa.string()),
                     _f("note", pa.string()), _f("plain", pa.int64())])
    agg_values = {**k, "total": nullable(SMALL), "peak": nullable(WIDE), "low": nullable(WIDE),
                  "smin": nullable(TEXT), "smax": nullable(TEXT), "first_tag": nullable(TEXT),
                  "last_n": nullable(WIDE), "last_tag": nullable(TEXT), "note": nullable(TEXT),
                  "plain": nullable(WIDE)}
    # A composite (string, int32) key and a non-nullable value column every partial update must carry.
    comp = pa.schema([_f("region", pa.string(), False), _f("id", pa.int32(), False),
                      _f("qty", pa.int64(), False), _f("note", pa.string()), _f("score", pa.int64())])
    regions = ["eu", "us", "ap", ""]
    comp_values = {"region": st.sampled_from(regions), "id": st.integers(-1, 3), "qty": WIDE,
                   "note": nullable(TEXT), "score": nullable(WIDE)}
    comp_probe = st.tuples(st.sampled_from(regions + ["zz"]), st.integers(-1, 5))
    return {
        "last_row": Spec("last_row", kv, ("k",), "last_row", "last_row", kv_values, _int_key()),
        "first_row": Spec("first_row", kv, ("k",), "first_row", "first_row", kv_values, _int_key()),
        "versioned": Spec("versioned", ver, ("k",), flussfs.Versioned("ver"), "versioned",
                          {**k, "ver": st.integers(-2, 4), "val": nullable(TEXT), "v": nullable(WIDE)},
                          _int_key(), version="ver"),
        "aggregate": Spec("aggregate", agg, ("k",), flussfs.Aggregate(functions), "aggregate", agg_values,
                          _int_key(), functions=functions),
        "composite_last_row": Spec("composite_last_row", comp, ("region", "id"), "last_row", "last_row",
                                   comp_values, comp_probe),
    }


SPEC_NAMES = ["last_row", "first_row", "versioned", "aggregate", "composite_last_row"]


# -- the model -----------------------------------------------------------------------------------

def wrap_int64(n):
    return (n + 2**63) % 2**64 - 2**63


def fold_aggregate(function, current, value):
    """One step of an aggregate column; `value` is not null."""
    if current is None:
        return value
    return {"sum": lambda: wrap_int64(current + value), "min": lambda: min(current, value),
            "max": lambda: max(current, value), "first_non_null": lambda: current,
            "last_non_null": lambda: value}[function]()


class PkModel:
    """Dict model of a primary-key table: key tuple -> {column: value}, one row folded at a time."""

    def __init__(self, spec):
        self.spec, self.state = spec, {}

    def key_of(self, row):
        return tuple(row[c] for c in self.spec.key)

    def upsert(self, rows):
        """Fold row dicts (a partial update's rows carry only some columns) in order."""
        for r in rows:
            key, old = self.key_of(r), self.state.get(self.key_of(r))
            fresh = dict.fromkeys(self.spec.names)
            kind = self.spec.kind
            if kind == "last_row":
                new = dict(old or fresh)
                new.update(r)
            elif kind == "first_row":
                new = old if old is not None else {**fresh, **r}
            elif kind == "versioned":
                ver = self.spec.version
                new = {**fresh, **r} if old is None or r[ver] >= old[ver] else old
            else:
                new = dict(old or fresh)
                for c, v in r.items():
                    if c in self.spec.key:
                        new[c] = v
                    elif v is not None:  # nulls (and absent columns) contribute nothing
                        new[c] = fold_aggregate(self.spec.functions.get(c, "last_non_null"), new[c], v)
            self.state[key] = new

    def delete(self, keys):
        for key in keys:
            self.state.pop(tuple(key), None)

    def rows(self, keys=None, columns=None, where=None):
        keys = self.state.keys() if keys is None else [tuple(k) for k in keys if tuple(k) in self.state]
        columns = columns or self.spec.names
        picked = [self.state[k] for k in keys]
        return sorted_rows(tuple(r[c] for c in columns) for r in picked if where is None or where(r))


def _sort_key(row):
    return tuple((1, 0) if v is None else (0, v) for v in row)


def sorted_rows(row_tuples):
    return sorted(row_tuples, key=_sort_key)


def rows_of(table, columns=None):
    columns = columns or table.column_names
    return sorted_rows(zip(*(table.column(c).to_pylist() for c in columns))) if table.num_rows else []


# -- building Arrow input ------------------------------------------------------------------------

def arrow_rows(schema, rows, columns):
    fields = [schema.field(c) for c in columns]
    return pa.table([pa.array([r[f.name] for r in rows], f.type) for f in fields], schema=pa.schema(fields))


def arrow_keys(spec, keys):
    return arrow_rows(spec.schema, [dict(zip(spec.key, k)) for k in keys], spec.key)


# -- filters: (op, column, operand), evaluated by Arrow in the library and by Python in the model ---

def filters(spec):
    ints = [f.name for f in spec.schema if pa.types.is_integer(f.type)]
    texts = [f.name for f in spec.schema if pa.types.is_string(f.type)]
    return st.one_of(
        st.none(),
        st.tuples(st.just(">"), st.sampled_from(ints), st.integers(-60, 60)),
        st.tuples(st.just("<="), st.sampled_from(ints), st.integers(-60, 60)),
        st.tuples(st.just(">="), st.sampled_from(texts), TEXT),
        st.tuples(st.just("is_null"), st.sampled_from(spec.names), st.none()),
    )


def expression(f):
    op, column, operand = f
    fld = pc.field(column)
    return {">": lambda: fld > operand, "<=": lambda: fld <= operand, ">=": lambda: fld >= operand,
            "is_null": lambda: fld.is_null()}[op]()


def predicate(f):
    op, column, operand = f
    if op == "is_null":
        return lambda r: r[column] is None
    compare = {">": lambda v: v > operand, "<=": lambda v: v <= operand, ">=": lambda v: v >= operand}[op]
    return lambda r: r[column] is not None and compare(r[column])


# -- the machine ---------------------------------------------------------------------------------

def local_location():
    """(uri, storage_options, cleanup) of a fresh table in a new temporary directory."""
    base = tempfile.mkdtemp(prefix="flussfs-pk-")
    return f"{base}/t", None, lambda: shutil.rmtree(base, ignore_errors=True)


def s3_location(options):
    return lambda: (f"s3://{BUCKET}/{uuid.uuid4().hex}", options, lambda: None)


def machine_for(spec, location):
    """A RuleBasedStateMachine class for `spec`, its tables created by `location()`."""
    full_rows = st.lists(st.fixed_dictionaries({c: spec.values[c] for c in spec.names}), min_size=1, max_size=20)
    optional = [c for c in spec.names if c not in spec.required]
    partial_rows = (st.lists(st.sampled_from(optional), unique=True)
                    .flatmap(lambda extra: st.permutations(spec.required + extra))
                    .flatmap(lambda cols: st.tuples(st.just(cols), st.lists(
                        st.fixed_dictionaries({c: spec.values[c] for c in cols}), min_size=1, max_size=20))))
    key_lists = st.lists(spec.probe_keys, min_size=1, max_size=6)   # duplicates allowed: deleting twice is a no-op
    column_subsets = st.permutations(spec.names).flatmap(lambda p: st.integers(1, len(p)).map(lambda n: p[:n]))
    probes = st.fixed_dictionaries({
        "keys": st.lists(spec.probe_keys, min_size=1, max_size=8, unique=True),
        "columns": st.one_of(st.none(), column_subsets),
        "filter": filters(spec),
        "handle": st.integers(0, HANDLES_MAX - 1)})
    handles = st.integers(0, HANDLES_MAX - 1)
    ops = [st.tuples(st.just("upsert"), full_rows), st.tuples(st.just("delete"), key_lists)]
    if spec.partial:
        ops.append(st.tuples(st.just("partial"), partial_rows))
    writer_ops = st.lists(st.one_of(ops), min_size=1, max_size=6)

    class PkTableMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.uri, self.options, self.cleanup = location()
            self.model, self.handles, self.opened = PkModel(spec), [], []
            self.inline_bytes_max = None

        def teardown(self):
            for t in self.opened:  # background checkpoint writes must finish before the directory goes
                getattr(t, "close", lambda: None)()
            if self.inline_bytes_max is not None:
                drafts.INLINE_BYTES_MAX = self.inline_bytes_max
            self.cleanup()

        def handle(self, i):
            return self.handles[i % len(self.handles)]

        @initialize(buckets=st.integers(1, 4), checkpoint_interval=st.sampled_from([2, 32]),
                    segments=st.booleans())
        def create(self, buckets, checkpoint_interval, segments):
            # Internal knobs, where this version has them: checkpoints every 2 commits, and every
            # commit's rows in a referenced segment (statistics, ranged reads) instead of inline.
            extra = {}
            if "checkpoint_interval" in inspect.signature(flussfs.create_table).parameters:
                extra["checkpoint_interval"] = checkpoint_interval
            if segments and hasattr(drafts, "INLINE_BYTES_MAX"):
                self.inline_bytes_max, drafts.INLINE_BYTES_MAX = drafts.INLINE_BYTES_MAX, 0
            t = flussfs.create_table(self.uri, spec.schema, primary_key=list(spec.key), buckets=buckets,
                                     merge_engine=spec.engine, storage_options=self.options, **extra)
            assert t.primary_key == list(spec.key) and t.buckets == buckets
            self.handles, self.opened = [t], [t]

        # Each op is applied to the table (or writer) `target` and to the model.
        def apply(self, target, op, arg):
            if op == "upsert":
                target.upsert(arrow_rows(spec.schema, arg, spec.names))
                self.model.upsert(arg)
            elif op == "partial":
                columns, rows = arg
                target.upsert(arrow_rows(spec.schema, rows, columns))
                self.model.upsert(rows)
            else:
                target.delete(arrow_keys(spec, arg))
                self.model.delete(arg)

        @rule(rows=full_rows, handle=handles, probe=probes)
        def upsert(self, rows, handle, probe):
            self.apply(self.handle(handle), "upsert", rows)
            self.probe(probe)

        @rule(keys=key_lists, handle=handles, probe=probes)
        def delete(self, keys, handle, probe):
            self.apply(self.handle(handle), "delete", keys)
            self.probe(probe)

        if spec.partial:
            @rule(data=partial_rows, handle=handles, probe=probes)
            def partial_update(self, data, handle, probe):
                self.apply(self.handle(handle), "partial", data)
                self.probe(probe)
        else:
            @rule(data=partial_rows.filter(lambda d: len(d[0]) < len(spec.names)), handle=handles)
            def partial_update_is_rejected(self, data, handle):
                columns, rows = data
                with pytest.raises(flussfs.FlussError):
                    self.handle(handle).upsert(arrow_rows(spec.schema, rows, columns))

        if spec.version:
            @rule(rows=full_rows, null_at=st.integers(0, 19), handle=handles)
            def null_version_is_rejected(self, rows, null_at, handle):
                rows = [dict(r) for r in rows]
                rows[null_at % len(rows)][spec.version] = None
                with pytest.raises(flussfs.FlussError):
                    self.handle(handle).upsert(arrow_rows(spec.schema, rows, spec.names))

        @rule(ops=writer_ops, flush_after=st.integers(0, 5), handle=handles, probe=probes)
        def through_writer(self, ops, flush_after, handle, probe):
            with self.handle(handle).writer() as w:
                for i, (op, arg) in enumerate(ops):
                    self.apply(w, op, arg)
                    if i == flush_after:
                        w.flush()
                        self.check_scan()
            self.probe(probe)

        @rule(probe=probes, changelog=st.booleans())
        def compact(self, probe, changelog):
            """A compaction (merge-on-read, or a rewrite) changes no answer; its Iceberg table
            (read by pyiceberg) holds exactly the model's rows."""
            result = compactor.compact(self.uri, storage_options=self.options, changelog=changelog)
            published = pyiceberg_rows(result.metadata_location, iceberg_properties(self.options))
            assert rows_of(published) == self.model.rows()
            self.probe(probe)

        @rule(probe=probes)
        def reopen(self, probe):
            t = flussfs.open_table(self.uri, storage_options=self.options)
            assert t.primary_key == list(spec.key) and t.schema.names == spec.names
            self.handles = [t] + self.handles[:HANDLES_MAX - 1]
            self.opened.append(t)
            self.probe(probe)

        def probe(self, probe):
            """lookup() of some keys (missing ones too) and a projected, filtered scan, through some handle."""
            t = self.handle(probe["handle"])
            got = t.lookup(arrow_keys(spec, probe["keys"]))
            assert got.column_names == spec.names
            assert rows_of(got) == self.model.rows(keys=probe["keys"]), f"lookup of {probe['keys']}"
            columns, f = probe["columns"], probe["filter"]
            got = t.scan(columns=columns, filter=None if f is None else expression(f)).to_arrow()
            assert got.column_names == (columns or spec.names)
            want = self.model.rows(columns=columns, where=None if f is None else predicate(f))
            assert rows_of(got) == want, f"scan(columns={columns}, filter={f})"

        @invariant()
        def check_scan(self):
            if not self.handles:
                return
            got = self.handles[0].scan().to_arrow()
            assert got.column_names == spec.names
            assert rows_of(got) == self.model.rows()

    PkTableMachine.__name__ = PkTableMachine.__qualname__ = f"PkTableMachine_{spec.name}"
    return PkTableMachine


LOCAL = settings(max_examples=30, stateful_step_count=15, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
S3 = settings(LOCAL, max_examples=5, stateful_step_count=10)


def test_model_folds_the_documented_examples():
    """The reference model itself reproduces hand-worked cases of each engine (ties, nulls, partial rows)."""
    s = specs()
    m = PkModel(s["versioned"])
    m.upsert([{"k": 1, "ver": 5, "val": "a", "v": 1}, {"k": 1, "ver": 3, "val": "old", "v": 2},
              {"k": 1, "ver": 5, "val": "tie", "v": None}])
    assert m.rows() == [(1, 5, "tie", None)]
    m = PkModel(s["first_row"])
    m.upsert([{"k": 1, "v": 1, "s": None, "x": None}, {"k": 1, "v": 2, "s": "b", "x": 1.0}])
    m.delete([(1,), (9,)])
    m.upsert([{"k": 1, "v": 3, "s": "c", "x": None}, {"k": 1, "v": 4, "s": "d", "x": None}])
    assert m.rows() == [(1, 3, "c", None)]
    m = PkModel(s["last_row"])
    m.upsert([{"k": 1, "v": 1, "s": "a", "x": 0.5}, {"k": 1, "s": None}, {"k": 2, "v": 7}])
    assert m.rows() == [(1, 1, None, 0.5), (2, 7, None, None)]
    m = PkModel(s["aggregate"])
    m.upsert([{"k": 1, "total": 5, "peak": 3, "low": 3, "smin": "b", "smax": None, "first_tag": None,
               "last_n": 4, "last_tag": "x", "note": "a", "plain": 1},
              {"k": 1, "total": 7, "peak": 2, "low": 1, "smin": "ab", "smax": "a", "first_tag": "f",
               "last_n": None, "last_tag": None, "note": None, "plain": 2},
              {"k": 1, "total": None, "first_tag": "g", "smax": "b"}])
    assert m.rows() == [(1, 12, 3, 1, "ab", "b", "f", 4, "x", "a", 2)]
    m.delete([(1,)])
    m.upsert([{"k": 1, "total": 2**63 - 1}, {"k": 1, "total": 1}])
    assert m.rows() == [(1, -2**63, None, None, None, None, None, None, None, None, None)]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_pk_table_matches_dict_model(name):
    """Random upserts, partial updates, deletes, writers and reopenings on a local table equal the model."""
    run_state_machine_as_test(machine_for(specs()[name], local_location), settings=LOCAL)


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_pk_table_matches_dict_model_on_s3(name, s3_endpoint):
    """The same state machine, fewer examples, on S3 (moto's server on 127.0.0.1)."""
    run_state_machine_as_test(machine_for(specs()[name], s3_location(s3_storage_options(s3_endpoint))),
                              settings=S3)
