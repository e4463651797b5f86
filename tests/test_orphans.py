"""A crash between segment upload and commit leaves nothing visible, and the orphaned segment is
collected once it is older than the grace period, while committed segments are kept."""
import multiprocessing
import time

import pytest

import flussfs
from flussfs import paths
from flussfs.gc import collect_orphans
from flussfs.log import COMMIT_DEADLINE_S
from helpers import wide, wide_schema

ROWS = 40_000  # enough for a referenced segment (over the inline limit)


def _segments(t):
    return [i.key for b in range(t.buckets) for i in t.store.list(paths.segments_dir(b))]


def _crash_after_upload(uri, storage_options):
    t = flussfs.open_table(uri, storage_options=storage_options)
    t.prepare(wide(ROWS, start=10**6))  # segments uploaded, commit never written
    import os
    os._exit(3)  # a crash: no cleanup, no atexit


def test_crash_between_segment_upload_and_commit(table_uri):
    """A process that dies after uploading segments leaves no visible rows; gc collects them."""
    uri, so = table_uri
    t = flussfs.create_table(uri, wide_schema(), buckets=2, storage_options=so)
    t.append(wide(ROWS))
    committed = set(_segments(t))
    assert committed, "the committed append should have used a segment"
    proc = multiprocessing.get_context("spawn").Process(target=_crash_after_upload, args=(uri, so))
    proc.start()
    proc.join(120)
    assert proc.exitcode == 3
    orphans = set(_segments(t)) - committed
    assert orphans, "the crashed writer should have left its segment behind"
    reader = flussfs.open_table(uri, storage_options=so)
    assert reader.scan(columns=["c00"]).to_arrow().num_rows == ROWS
    assert sum(reader.end_offsets().values()) == ROWS

    young = collect_orphans(reader)  # default grace: everything is too young to touch
    assert young.deleted == [] and young.kept_young == len(committed) + len(orphans)
    later = time.time() + 2 * 3600
    dry = collect_orphans(reader, now=later, dry_run=True)
    assert set(dry.deleted) == orphans and set(_segments(t)) == committed | orphans
    done = collect_orphans(reader, now=later)
    assert set(done.deleted) == orphans and done.kept_referenced == len(committed)
    assert set(_segments(t)) == committed
    assert reader.scan().to_arrow().equals(t.scan().to_arrow())
    assert reader.scan(columns=["c00"]).to_arrow().num_rows == ROWS


def test_a_draft_past_the_commit_deadline_is_not_committed(tmp_path):
    """Segments older than the commit deadline may have been collected: committing them is refused."""
    t = flussfs.create_table(str(tmp_path / "t"), wide_schema(), buckets=1)
    drafts = t.prepare(wide(ROWS))
    for d in drafts.values():
        assert d.has_segments
        d.prepared_at -= COMMIT_DEADLINE_S + 1
    with pytest.raises(flussfs.ConflictError, match="uploaded over"):
        t.commit_drafts(drafts)
    assert t.end_offsets() == {0: 0}
