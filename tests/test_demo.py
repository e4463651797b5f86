"""The demo (`python -m flussfs.demo`), run in-process on a temporary directory."""
import re

import flussfs
from flussfs import demo


def test_demo_runs_every_step_and_counts_every_streamed_row(tmp_path, capsys):
    """The demo prints each step, its subscriber counts exactly the rows streamed, and it exits 0."""
    code = demo.main(["--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    steps = ["create table", "backfill", "start a subscriber", "stream", "full scan",
             "projected + filtered scan", "end_offsets()", "describe", "fold the clicks",
             "lookup users", "latest state"]
    numbered = re.findall(r"^\[(\d+)\] (.*?)\s{2,}\S+ m?s$", out, re.MULTILINE)
    assert [int(n) for n, _ in numbered] == list(range(1, len(steps) + 1))
    for (_, title), step in zip(numbered, steps):
        assert step in title
    streamed = demo.BATCHES_DEFAULT * demo.BATCH_ROWS_DEFAULT
    assert f"subscriber received {streamed:,} of {streamed:,} rows" in out
    assert f"subscriber counted {streamed:,} rows, {streamed:,} appended while it ran" in out
    assert "end-to-end latency" in out and "p50" in out

    table = flussfs.open_table(str(tmp_path / "clicks"))
    total = demo.BACKFILL_ROWS + streamed
    assert sum(table.end_offsets().values()) == total
    assert f"{total:,} rows x 5 columns" in out
    assert f"profiles match a group-by over the {total:,} clicks" in out
