"""The `flussfs` command line, run in-process through main(argv) and once as a real process."""
import io
import json
import os
import re
import select
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import flussfs
from flussfs import cli
from flussfs.progress import Progress
from helpers import jsonl, run

SCHEMA_SPEC = "id:int64!,name:string,score:float64,ts:timestamp[us,UTC]"
SUBPROCESS_TIMEOUT_S = 60


def write_inputs(tmp_path):
    """Three files, 2 + 2 + 3 rows, one per input format; ids 1..7."""
    pq.write_table(pa.table({"id": [1, 2], "name": ["a", "b"], "score": [0.5, 1.5]}),
                   tmp_path / "one.parquet")
    (tmp_path / "two.csv").write_text("id,name,ts\n3,\"c, d\",2024-05-01T00:00:00Z\n4,e,\n")
    (tmp_path / "three.jsonl").write_text(
        '{"id": 5, "score": 2.5}\n{"id": 6, "name": "f"}\n'
        '{"id": 7, "name": "g", "ts": "2024-05-02T12:00:00Z"}\n')
    return [tmp_path / "one.parquet", tmp_path / "two.csv", tmp_path / "three.jsonl"]


@pytest.fixture
def table_uri(tmp_path, capsys):
    """A fresh table with SCHEMA_SPEC and 3 buckets, holding the 7 rows of write_inputs."""
    uri = tmp_path / "t"
    assert run(capsys, "create", uri, "--schema", SCHEMA_SPEC, "--buckets", 3)[0] == 0
    code, out, err = run(capsys, "append", uri, *write_inputs(tmp_path))
    assert code == 0, err
    return str(uri)


def test_create_makes_the_schema_asked_for(tmp_path, capsys):
    """create parses names, types, '!' (non-nullable), bracketed types, buckets and bucket key."""
    uri = tmp_path / "t"
    code, out, _ = run(capsys, "create", uri, "--schema", SCHEMA_SPEC + ",d:decimal[10,2]",
                       "--buckets", 2, "--bucket-key", "id")
    assert code == 0 and "created table t" in out
    table = flussfs.open_table(str(uri))
    assert table.schema == pa.schema([pa.field("id", pa.int64(), nullable=False),
                                      pa.field("name", pa.string()), pa.field("score", pa.float64()),
                                      pa.field("ts", pa.timestamp("us", tz="UTC")),
                                      pa.field("d", pa.decimal128(10, 2))])
    assert table.buckets == 2 and table.metadata.bucket_key == ("id",)


def test_append_reads_parquet_csv_and_jsonl(table_uri, capsys):
    """append streams all three input formats into the table, typed by the table's schema."""
    rows = flussfs.open_table(table_uri).scan().to_arrow().sort_by("id").to_pylist()
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert rows[2]["name"] == "c, d" and rows[2]["ts"].isoformat() == "2024-05-01T00:00:00+00:00"
    assert rows[4] == {"id": 5, "name": None, "score": 2.5, "ts": None}


def test_append_prints_a_summary(tmp_path, capsys):
    """append reports rows, files, commits and buckets of what it committed."""
    uri = tmp_path / "t"
    run(capsys, "create", uri, "--schema", SCHEMA_SPEC, "--buckets", 3)
    code, out, _ = run(capsys, "append", uri, *write_inputs(tmp_path))
    m = re.search(r"appended 7 rows from 3 files .*: (\d+) commits? across (\d+) buckets?$", out)
    assert code == 0 and m, out
    heads = [h for h in flussfs.open_table(str(uri)).heads() if h is not None]
    assert (int(m[1]), int(m[2])) == (sum(h.number + 1 for h in heads), len(heads))


def test_scan_projects_limits_and_formats(table_uri, capsys):
    """scan --columns returns those columns in order; --limit caps rows; csv, jsonl, table work."""
    code, out, _ = run(capsys, "scan", table_uri, "--columns", "score,id", "--limit", 4,
                       "--format", "jsonl")
    rows = jsonl(out)
    assert code == 0 and len(rows) == 4 and all(list(r) == ["score", "id"] for r in rows)

    code, out, _ = run(capsys, "scan", table_uri, "--columns", "id,name", "--format", "csv")
    lines = out.splitlines()
    assert code == 0 and lines[0] == '"id","name"' and len(lines) == 8

    code, out, _ = run(capsys, "scan", table_uri, "--limit", 2)
    assert code == 0 and out.split()[:4] == ["id", "name", "score", "ts"]
    assert out.rstrip().endswith("(2 rows)")


def test_scan_filter_is_parsed_without_eval(table_uri, capsys):
    """--filter supports `col OP literal` joined by `and`, `is [not] null`, typed literals."""
    code, out, _ = run(capsys, "scan", table_uri, "--filter", "id >= 3 and name != 'e'",
                       "--format", "jsonl", "--columns", "id")
    assert code == 0 and sorted(r["id"] for r in jsonl(out)) == [3, 6, 7]
    code, out, _ = run(capsys, "scan", table_uri, "--filter", "ts > '2024-05-01T12:00:00Z'",
                       "--format", "jsonl")
    assert [r["id"] for r in jsonl(out)] == [7]
    code, out, _ = run(capsys, "scan", table_uri, "--filter", "score is null", "--format", "jsonl")
    assert sorted(r["id"] for r in jsonl(out)) == [3, 4, 6, 7]
    schema = flussfs.open_table(table_uri).schema
    assert cli.parse_filter("id = 2", schema).equals(pc.field("id") == pa.scalar(2, pa.int64()))
    for bad in ["__import__('os').system('true')", "id = name", "nope = 1", "id = 'x'", "id 3"]:
        code, _, err = run(capsys, "scan", table_uri, "--filter", bad)
        assert code == 2 and "--filter" in err, bad


def test_tail_prints_rows_with_system_columns_and_stops(table_uri, capsys):
    """tail without --follow prints every row as JSON with system columns, then stops."""
    code, out, _ = run(capsys, "tail", table_uri, "--columns", "id")
    rows = jsonl(out)
    assert code == 0 and sorted(r["id"] for r in rows) == [1, 2, 3, 4, 5, 6, 7]
    assert all(list(r) == ["id", "_bucket", "_offset", "_timestamp", "_change_type"] for r in rows)
    assert {r["_change_type"] for r in rows} == {"+I"}
    offsets = flussfs.open_table(table_uri).end_offsets()
    bucket = max(offsets, key=offsets.get)
    code, out, _ = run(capsys, "tail", table_uri, "--from", f"{bucket}:1")
    assert [r["_offset"] for r in jsonl(out)] == list(range(1, offsets[bucket]))
    assert {r["_bucket"] for r in jsonl(out)} == {bucket}


def test_describe_json_reports_schema_and_buckets(table_uri, capsys):
    """describe --json gives field ids, nullability, per-bucket offsets, commits and bytes."""
    code, out, _ = run(capsys, "describe", table_uri, "--json")
    d = json.loads(out)
    assert code == 0
    assert [(f["id"], f["name"], f["nullable"]) for f in d["schema"]] == [
        (1, "id", False), (2, "name", True), (3, "score", True), (4, "ts", True)]
    assert d["buckets"] == 3 and d["bucket_function"] == "round_robin" and d["primary_key"] is None
    assert {p["bucket"]: p["end_offset"] for p in d["per_bucket"]} == \
        flussfs.open_table(table_uri).end_offsets()
    assert d["totals"]["rows"] == 7 and d["totals"]["commits"] >= 1
    assert all(p["bytes"] > 0 for p in d["per_bucket"] if p["commits"])
    code, text, _ = run(capsys, "describe", table_uri)
    assert code == 0 and "round_robin" in text and "timestamp[us, tz=UTC]" in text


def test_unknown_csv_column_commits_nothing(table_uri, tmp_path, capsys):
    """A CSV with a column the table lacks fails with exit 1 naming it, before any commit."""
    before = flussfs.open_table(table_uri).end_offsets()
    good = tmp_path / "good.csv"
    good.write_text("id,name\n10,x\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("id,colour\n11,red\n")
    code, out, err = run(capsys, "append", table_uri, good, bad)
    assert code == 1 and "error:" in err and "'colour'" in err and "Traceback" not in err
    assert flussfs.open_table(table_uri).end_offsets() == before


def test_bad_value_in_a_later_file_commits_nothing(table_uri, tmp_path, capsys):
    """A value that does not convert, in the second file, fails the whole append: nothing committed."""
    before = flussfs.open_table(table_uri).end_offsets()
    (tmp_path / "good.csv").write_text("id,name\n10,x\n")
    (tmp_path / "bad.csv").write_text("id,score\n11,lots\n")
    code, _, err = run(capsys, "append", table_uri, tmp_path / "good.csv", tmp_path / "bad.csv")
    assert code == 1 and "'score'" in err and "nothing was committed" in err
    assert flussfs.open_table(table_uri).end_offsets() == before


def test_error_after_a_chunk_says_how_much_was_committed(table_uri, tmp_path, capsys, monkeypatch):
    """With inputs longer than one chunk, an error reports exactly the rows already committed."""
    monkeypatch.setattr(cli, "APPEND_CHUNK_ROWS", 1)
    before = sum(flussfs.open_table(table_uri).end_offsets().values())
    (tmp_path / "good.csv").write_text("id\n10\n11\n")
    (tmp_path / "null.csv").write_text("id,name\n,x\n")
    code, _, err = run(capsys, "append", table_uri, tmp_path / "good.csv", tmp_path / "null.csv")
    after = sum(flussfs.open_table(table_uri).end_offsets().values())
    assert code == 1 and "non-nullable column 'id'" in err
    assert f"{after - before} rows of this input were committed" in err and after - before == 2


def test_missing_table_exits_1_naming_it(tmp_path, capsys):
    """Every command on a missing table fails with exit 1 and a message naming the table."""
    missing = tmp_path / "no_such_table"
    for argv in (["scan", missing], ["tail", missing], ["describe", missing],
                 ["append", missing, tmp_path / "x.csv"]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "no_such_table" in err and "Traceback" not in err
    assert not missing.exists()


def test_bad_usage_exits_2(table_uri, tmp_path, capsys):
    """Bad arguments exit 2: unknown type, bad --from, unknown extension, no command."""
    assert run(capsys, "create", tmp_path / "u", "--schema", "id:int65")[0] == 2
    assert run(capsys, "create", tmp_path / "u", "--schema", "id")[0] == 2
    assert run(capsys, "tail", table_uri, "--from", "soon")[0] == 2
    (tmp_path / "data.txt").write_text("id\n1\n")
    code, _, err = run(capsys, "append", table_uri, tmp_path / "data.txt")
    assert code == 2 and "--format" in err
    assert run(capsys)[0] == 2
    assert not (tmp_path / "u").exists()


def test_existing_table_exits_1(table_uri, capsys):
    """create over an existing table is a FlussError: exit 1, no traceback."""
    code, _, err = run(capsys, "create", table_uri, "--schema", "id:int64")
    assert code == 1 and err.startswith("error:") and "already exists" in err


def test_storage_options_nest_dotted_keys():
    """--storage-option KEY=VALUE pairs build the nested fsspec dict; true/false become bools."""
    assert cli.parse_storage_options([]) is None
    assert cli.parse_storage_options(
        ["endpoint_url=http://h:1", "key=k", "client_kwargs.region_name=us-east-1",
         "anon=false", "secret=a=b"]) == {
        "endpoint_url": "http://h:1", "key": "k", "anon": False, "secret": "a=b",
        "client_kwargs": {"region_name": "us-east-1"}}
    with pytest.raises(cli.UsageError):
        cli.parse_storage_options(["a=1", "a.b=2"])
    with pytest.raises(cli.UsageError):
        cli.parse_storage_options(["novalue"])


def test_s3_round_trip_through_storage_option_flags(s3_uri, s3_options, tmp_path, capsys):
    """create, append and scan an s3:// table, passing credentials only as --storage-option."""
    flags = []
    for key, value in s3_options.items():
        for k, v in (value.items() if isinstance(value, dict) else [(None, value)]):
            flags += ["--storage-option", f"{key}.{k}={v}" if k else f"{key}={v}"]
    assert run(capsys, *flags, "create", s3_uri, "--schema", SCHEMA_SPEC)[0] == 0
    code, _, err = run(capsys, "append", s3_uri, *write_inputs(tmp_path), *flags)
    assert code == 0, err
    code, out, _ = run(capsys, "scan", s3_uri, "--format", "jsonl", "--columns", "id", *flags)
    assert code == 0 and sorted(r["id"] for r in jsonl(out)) == [1, 2, 3, 4, 5, 6, 7]
    table = flussfs.open_table(s3_uri, storage_options=s3_options)
    assert sum(table.end_offsets().values()) == 7


def flussfs_command():
    script = os.path.join(os.path.dirname(sys.executable), "flussfs")
    return [script] if os.path.exists(script) else [sys.executable, "-m", "flussfs.cli"]


def test_console_script_runs_and_tail_follow_ends_cleanly_on_ctrl_c(table_uri):
    """The installed `flussfs` runs as a process; `tail --follow` exits 0 on SIGINT, no traceback."""
    done = subprocess.run(flussfs_command() + ["describe", table_uri, "--json"],
                          capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT_S)
    assert done.returncode == 0 and json.loads(done.stdout)["totals"]["rows"] == 7

    proc = subprocess.Popen(flussfs_command() + ["tail", table_uri, "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
        while time.monotonic() < deadline:  # bounded wait for the first row
            if select.select([proc.stdout], [], [], 0.5)[0]:
                break
        assert json.loads(proc.stdout.readline())["_change_type"] == "+I"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_progress_draws_only_when_asked():
    """The progress bar stays silent off a terminal and draws a bar and a final line when forced."""
    quiet = io.StringIO()
    with Progress(100, stream=quiet) as p:
        p.update(50)
    assert quiet.getvalue() == ""

    drawn = io.StringIO()
    with Progress(2048, unit="bytes", label="load", stream=drawn, force=True,
                  redraw_interval_s=0) as p:
        p.update(1024)
        p.update(1024)
    text = drawn.getvalue()
    assert text.startswith("\rload [") and "100.0%" in text and "2.0 KiB/2.0 KiB" in text
    assert text.endswith("\n")
