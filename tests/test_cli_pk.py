"""The command line on primary-key tables: create with a key and merge engine, upsert, delete,
lookup and describe, run in-process through main(argv), checked through the library."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import flussfs
from flussfs import cli
from helpers import jsonl, run

SCHEMA_SPEC = "id:int64,name:string,score:float64,visits:int64"


def state(uri, **options):
    """The table's latest state as {id: row}."""
    rows = flussfs.open_table(str(uri), **options).scan().to_arrow().to_pylist()
    return {r["id"]: r for r in rows}


@pytest.fixture
def pk_uri(tmp_path, capsys):
    """A last_row table keyed on id, holding ids 1..3 from one Parquet file."""
    uri = tmp_path / "users"
    code, _, err = run(capsys, "create", uri, "--schema", SCHEMA_SPEC, "--primary-key", "id",
                       "--buckets", 2)
    assert code == 0, err
    pq.write_table(pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"], "score": [1.0, 2.0, 3.0],
                             "visits": [10, 20, 30]}), tmp_path / "base.parquet")
    code, out, err = run(capsys, "upsert", uri, tmp_path / "base.parquet")
    assert code == 0 and out.startswith("upserted 3 rows from 1 file"), err
    return str(uri)


def test_create_takes_a_key_and_each_merge_engine(tmp_path, capsys):
    """--primary-key makes the key non-nullable; --merge-engine accepts all four forms."""
    engines = {"last_row": "last_row", "first_row": "first_row",
               "versioned:visits": flussfs.Versioned("visits"),
               "aggregate:visits=sum,score=max": flussfs.Aggregate({"visits": "sum", "score": "max"})}
    for i, (text, engine) in enumerate(engines.items()):
        uri = tmp_path / f"t{i}"
        code, out, err = run(capsys, "create", uri, "--schema", SCHEMA_SPEC, "--primary-key", "id",
                             "--merge-engine", text)
        assert code == 0 and f"primary key (id), merge engine {text}" in out, err
        table = flussfs.open_table(str(uri))
        assert table.primary_key == ["id"] and table.merge_engine == engine
        assert not table.schema.field("id").nullable and table.schema.field("name").nullable
        assert cli.format_merge_engine(cli.parse_merge_engine(text)) == text
    code, out, _ = run(capsys, "create", tmp_path / "default", "--schema", SCHEMA_SPEC,
                       "--primary-key", "id")
    assert code == 0 and flussfs.open_table(str(tmp_path / "default")).merge_engine == "last_row"


def test_upsert_files_lacking_columns_are_partial_updates(pk_uri, tmp_path, capsys):
    """A CSV or JSON-lines file with some columns changes only those; explicit nulls count."""
    (tmp_path / "names.csv").write_text("id,name\n1,A\n4,new\n")
    (tmp_path / "scores.jsonl").write_text('{"id": 2, "score": 9.5}\n{"id": 3, "score": null}\n')
    pq.write_table(pa.table({"visits": pa.array([11], pa.int32()), "id": [1]}),
                   tmp_path / "visits.parquet")
    code, out, err = run(capsys, "upsert", pk_uri, tmp_path / "names.csv", tmp_path / "scores.jsonl",
                         tmp_path / "visits.parquet")
    assert code == 0 and out.startswith("upserted 5 rows from 3 files"), err
    assert state(pk_uri) == {
        1: {"id": 1, "name": "A", "score": 1.0, "visits": 11},
        2: {"id": 2, "name": "b", "score": 9.5, "visits": 20},
        3: {"id": 3, "name": "c", "score": None, "visits": 30},
        4: {"id": 4, "name": "new", "score": None, "visits": None}}


def test_json_columns_are_those_any_row_holds(pk_uri, tmp_path, capsys):
    """In a JSON file the columns are the union of the rows' fields: a row lacking one sets null."""
    (tmp_path / "mixed.jsonl").write_text('{"id": 1, "name": "x"}\n{"id": 2, "visits": 5}\n')
    assert run(capsys, "upsert", pk_uri, tmp_path / "mixed.jsonl")[0] == 0
    rows = state(pk_uri)
    assert rows[1] == {"id": 1, "name": "x", "score": 1.0, "visits": None}
    assert rows[2] == {"id": 2, "name": None, "score": 2.0, "visits": 5}


def test_later_rows_and_files_win_on_last_row(pk_uri, tmp_path, capsys):
    """Within one upsert, rows and files apply in order, also when split into many commits."""
    (tmp_path / "a.csv").write_text("id,name\n1,first\n1,second\n")
    (tmp_path / "b.jsonl").write_text('{"id": 1, "name": "third"}\n')
    assert run(capsys, "upsert", pk_uri, tmp_path / "a.csv", tmp_path / "b.jsonl")[0] == 0
    assert state(pk_uri)[1]["name"] == "third"


def test_aggregate_engine_folds_upserts(tmp_path, capsys):
    """An aggregate table sums visits across upserts from separate files and runs."""
    uri = tmp_path / "agg"
    run(capsys, "create", uri, "--schema", SCHEMA_SPEC, "--primary-key", "id",
        "--merge-engine", "aggregate:visits=sum,score=max")
    (tmp_path / "day1.csv").write_text("id,visits,score\n1,3,0.5\n2,1,\n")
    (tmp_path / "day2.csv").write_text("id,visits\n1,4\n")
    for f in ("day1.csv", "day2.csv", "day1.csv"):
        assert run(capsys, "upsert", uri, tmp_path / f)[0] == 0
    rows = state(uri)
    assert (rows[1]["visits"], rows[1]["score"], rows[2]["visits"]) == (10, 0.5, 2)


def test_delete_by_key_flag_and_by_file(pk_uri, tmp_path, capsys):
    """delete --key parses values to the key's type; delete FILE takes files of the key column."""
    code, out, err = run(capsys, "delete", pk_uri, "--key", "id=1", "--key", "id=99")
    assert code == 0 and out.startswith("deleted 2 keys from users"), err
    assert sorted(state(pk_uri)) == [2, 3]
    (tmp_path / "gone.jsonl").write_text('{"id": 3}\n')
    pq.write_table(pa.table({"id": pa.array([2, 5], pa.int32())}), tmp_path / "gone.parquet")
    code, out, err = run(capsys, "delete", pk_uri, tmp_path / "gone.jsonl", tmp_path / "gone.parquet")
    assert code == 0 and out.startswith("deleted 3 keys listed in 2 files"), err
    assert state(pk_uri) == {}
    assert run(capsys, "upsert", pk_uri, tmp_path / "gone.jsonl")[0] == 0  # a fresh start
    assert state(pk_uri) == {3: {"id": 3, "name": None, "score": None, "visits": None}}


def test_lookup_prints_found_rows_and_counts_the_missing(pk_uri, tmp_path, capsys):
    """lookup prints only existing keys in scan's formats, exits 0, and counts misses on stderr."""
    code, out, err = run(capsys, "lookup", pk_uri, "--key", "id=2", "--key", "id=7",
                         "--key", "id=3", "--format", "jsonl")
    assert code == 0 and sorted(r["id"] for r in jsonl(out)) == [2, 3]
    expected = flussfs.open_table(pk_uri).lookup(pa.table({"id": [2, 3]})).to_pylist()
    assert sorted(jsonl(out), key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    assert "3 keys: 2 found, 1 not found" in err
    (tmp_path / "ids.csv").write_text("id\n1\n5\n1\n")
    code, out, err = run(capsys, "lookup", pk_uri, "--keys-file", tmp_path / "ids.csv",
                         "--format", "csv")
    assert code == 0 and out.splitlines() == ['"id","name","score","visits"', '1,"a",1,10']
    assert "2 keys: 1 found, 1 not found" in err
    code, out, err = run(capsys, "lookup", pk_uri, "--key", "id=8")
    assert code == 0 and out.rstrip().endswith("(0 rows)") and "1 not found" in err


def test_composite_keys_and_string_values_with_commas(tmp_path, capsys):
    """A two-column key is given as COL=VALUE,COL=VALUE in any order; values may hold commas."""
    uri = tmp_path / "t"
    run(capsys, "create", uri, "--schema", "region:string,day:date32,n:int64",
        "--primary-key", "region,day")
    (tmp_path / "rows.csv").write_text('region,day,n\n"eu,west",2024-05-01,1\nus,2024-05-01,2\n')
    assert run(capsys, "upsert", uri, tmp_path / "rows.csv")[0] == 0
    code, out, err = run(capsys, "lookup", uri, "--key", "day=2024-05-01,region=eu,west",
                         "--format", "jsonl")
    assert code == 0 and jsonl(out) == [{"region": "eu,west", "day": "2024-05-01", "n": 1}], err
    assert run(capsys, "delete", uri, "--key", "region=us, day=2024-05-01")[0] == 0
    rows = flussfs.open_table(str(uri)).scan().to_arrow().to_pylist()
    assert [r["region"] for r in rows] == ["eu,west"]


def test_describe_shows_key_and_engine(tmp_path, pk_uri, capsys):
    """describe names the key and merge engine, and calls a table without one a log table."""
    code, out, _ = run(capsys, "describe", pk_uri, "--json")
    d = json.loads(out)
    assert code == 0 and d["primary_key"] == ["id"] and d["merge_engine"] == "last_row"
    assert d["kind"] == "primary-key table"
    uri = tmp_path / "v"
    run(capsys, "create", uri, "--schema", "k:string,ver:int64", "--primary-key", "k",
        "--merge-engine", "versioned:ver")
    code, text, _ = run(capsys, "describe", uri)
    assert code == 0 and "primary key  k\n" in text and "merge engine versioned:ver\n" in text
    run(capsys, "create", tmp_path / "log", "--schema", "x:int64")
    code, out, _ = run(capsys, "describe", tmp_path / "log", "--json")
    d = json.loads(out)
    assert (d["kind"], d["primary_key"], d["merge_engine"]) == ("log table (append-only)", None, None)
    code, text, _ = run(capsys, "describe", tmp_path / "log")
    assert "kind         log table (append-only)\n" in text and "merge engine" not in text


def test_tail_shows_the_change_types(pk_uri, tmp_path, capsys):
    """tail on a primary-key table prints the changes an upsert and a delete made."""
    (tmp_path / "u.csv").write_text("id,name\n1,z\n")
    run(capsys, "upsert", pk_uri, tmp_path / "u.csv")
    run(capsys, "delete", pk_uri, "--key", "id=2")
    code, out, _ = run(capsys, "tail", pk_uri, "--columns", "id")
    kinds = {(r["id"], r["_change_type"]) for r in jsonl(out)}
    assert code == 0 and {(1, "+U"), (2, "-D")} <= kinds


@pytest.mark.parametrize("argv, words", [
    (["--primary-key", "nope"], ["'nope'"]),
    (["--primary-key", "id", "--merge-engine", "versioned:nope"], ["'nope'"]),
    (["--primary-key", "id", "--merge-engine", "aggregate:visits=avg"], ["'avg'"]),
])
def test_create_with_bad_key_or_engine_exits_1(tmp_path, capsys, argv, words):
    """An unknown key or engine column or aggregate function is the library's error: exit 1."""
    code, _, err = run(capsys, "create", tmp_path / "t", "--schema", SCHEMA_SPEC, *argv)
    assert code == 1 and err.startswith("error:") and all(w in err for w in words), err
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize("argv, words", [
    (["--merge-engine", "first_row"], ["--merge-engine", "--primary-key"]),
    (["--primary-key", "id", "--merge-engine", "newest"], ["--merge-engine", "versioned:COL"]),
    (["--primary-key", "id", "--merge-engine", "aggregate:visits"], ["COL=FN"]),
    (["--primary-key", ","], ["--primary-key"]),
])
def test_create_with_malformed_key_or_engine_exits_2(tmp_path, capsys, argv, words):
    """A merge engine on a log table or malformed engine text is a usage error: exit 2."""
    code, _, err = run(capsys, "create", tmp_path / "t", "--schema", SCHEMA_SPEC, *argv)
    assert code == 2 and all(w in err for w in words), err
    assert not (tmp_path / "t").exists()


def test_bad_files_commit_nothing(pk_uri, tmp_path, capsys):
    """Files that do not fit the command fail with exit 1 naming the column, before any commit."""
    before = flussfs.open_table(pk_uri).end_offsets()
    (tmp_path / "good.csv").write_text("id,name\n9,x\n")
    (tmp_path / "keys.csv").write_text("id\n2\n")
    (tmp_path / "extra.csv").write_text("id,name\n1,x\n")
    (tmp_path / "unknown.csv").write_text("id,colour\n1,red\n")
    (tmp_path / "nokey.jsonl").write_text('{"name": "x"}\n')
    (tmp_path / "badvalue.csv").write_text("id,visits\n1,many\n")
    for argv, words in [
        (["delete", pk_uri, "keys.csv", "extra.csv"], ["extra.csv", "extra column", "'name'"]),
        (["delete", pk_uri, "nokey.jsonl"], ["nokey.jsonl", "'name'", "lacks 'id'"]),
        (["upsert", pk_uri, "good.csv", "unknown.csv"], ["unknown.csv", "'colour'"]),
        (["upsert", pk_uri, "good.csv", "nokey.jsonl"], ["nokey.jsonl", "'id'"]),
        (["upsert", pk_uri, "good.csv", "badvalue.csv"], ["'visits'", "nothing was committed"]),
        (["lookup", pk_uri, "--keys-file", "extra.csv"], ["extra.csv", "'name'"]),
        (["append", pk_uri, "good.csv"], ["primary key", "upsert"]),
    ]:
        argv = [tmp_path / a if a.endswith(("csv", "jsonl")) else a for a in argv]
        code, out, err = run(capsys, *argv)
        assert code == 1 and "Traceback" not in err and all(w in err for w in words), (argv, err)
        assert out == ""
    assert flussfs.open_table(pk_uri).end_offsets() == before


def test_partial_update_of_a_whole_row_engine_commits_nothing(tmp_path, capsys):
    """On a first_row table a file lacking columns is rejected up front, even after a good file."""
    uri = tmp_path / "t"
    run(capsys, "create", uri, "--schema", SCHEMA_SPEC, "--primary-key", "id",
        "--merge-engine", "first_row")
    (tmp_path / "full.csv").write_text("id,name,score,visits\n1,a,1,1\n")
    (tmp_path / "part.csv").write_text("id,name\n2,b\n")
    code, _, err = run(capsys, "upsert", uri, tmp_path / "full.csv", tmp_path / "part.csv")
    assert code == 1 and "part.csv" in err and "'score'" in err and "first_row" in err, err
    assert state(uri) == {}


def test_key_flags_are_checked_before_anything_runs(pk_uri, tmp_path, capsys):
    """Bad --key values or flag combinations exit 2 naming the flag; a log table exits 1."""
    before = flussfs.open_table(pk_uri).end_offsets()
    (tmp_path / "k.csv").write_text("id\n1\n")
    for argv, words in [
        (["delete", pk_uri, "--key", "nope=1"], ["'nope' is not a key column", "id=VALUE"]),
        (["delete", pk_uri, "--key", "id=abc"], ["'abc'", "'id'", "int64"]),
        (["delete", pk_uri, "--key", "id=1.5"], ["'1.5'", "'id'"]),
        (["delete", pk_uri, "--key", "1"], ["id=VALUE"]),
        (["delete", pk_uri], ["FILE", "--key"]),
        (["delete", pk_uri, tmp_path / "k.csv", "--key", "id=1"], ["not both"]),
        (["lookup", pk_uri], ["--keys-file"]),
        (["lookup", pk_uri, "--key", "id=1", "--keys-file", tmp_path / "k.csv"], ["not both"]),
    ]:
        code, _, err = run(capsys, *argv)
        assert code == 2 and all(w in err for w in words), (argv, err)
    assert flussfs.open_table(pk_uri).end_offsets() == before
    run(capsys, "create", tmp_path / "log", "--schema", "id:int64")
    log = tmp_path / "log"
    for argv in (["upsert", log, tmp_path / "k.csv"], ["lookup", log, "--key", "id=1"],
                 ["delete", log, "--key", "id=1"]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "log table (append-only)" in err, err


def test_error_after_a_chunk_says_how_much_was_committed(pk_uri, tmp_path, capsys, monkeypatch):
    """An upsert longer than a chunk commits whole chunks in order and reports them on an error."""
    monkeypatch.setattr(cli, "APPEND_CHUNK_ROWS", 1)
    (tmp_path / "good.csv").write_text("id,name\n10,x\n11,y\n")
    (tmp_path / "null.csv").write_text("id,name\n,z\n")
    code, _, err = run(capsys, "upsert", pk_uri, tmp_path / "good.csv", tmp_path / "null.csv")
    assert code == 1 and "'id'" in err and "2 rows of this input were committed" in err, err
    assert sorted(state(pk_uri)) == [1, 2, 3, 10, 11]


def test_s3_round_trip(s3_uri, s3_options, tmp_path, capsys):
    """create, upsert, delete, lookup and scan a primary-key table on S3 through the flags."""
    flags = []
    for key, value in s3_options.items():
        for k, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            flags += ["--storage-option", f"{key}.{k}={v}" if k else f"{key}={v}"]
    assert run(capsys, *flags, "create", s3_uri, "--schema", SCHEMA_SPEC, "--primary-key", "id",
               "--merge-engine", "aggregate:visits=sum")[0] == 0
    (tmp_path / "a.jsonl").write_text('{"id": 1, "visits": 2}\n{"id": 2, "visits": 5}\n')
    (tmp_path / "b.csv").write_text("id,visits,name\n1,3,one\n")
    code, _, err = run(capsys, "upsert", s3_uri, tmp_path / "a.jsonl", tmp_path / "b.csv", *flags)
    assert code == 0, err
    assert run(capsys, "delete", s3_uri, "--key", "id=2", *flags)[0] == 0
    code, out, err = run(capsys, "lookup", s3_uri, "--key", "id=1", "--key", "id=2",
                         "--format", "jsonl", *flags)
    assert code == 0 and jsonl(out) == [{"id": 1, "name": "one", "score": None, "visits": 5}]
    assert "1 not found" in err
    assert state(s3_uri, storage_options=s3_options) == {1: jsonl(out)[0]}
