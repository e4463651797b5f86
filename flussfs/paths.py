"""Every object key a table writes, built in one place (format_spec/spec-v1.md, "Layout").

Invariants: keys are relative to the table root; numbers are 20-digit zero-padded decimals so
that lexicographic order (the order LIST returns) equals numeric order; bucket directories are
5-digit zero-padded.
"""

ROOT = "_flussfs/"
TABLE_METADATA_DIR = ROOT + "table/"
LOG_DIR = ROOT + "log/"
NUMBER_DIGITS = 20
BUCKET_DIGITS = 5
BUCKETS_MAX = 10 ** BUCKET_DIGITS


def number(n: int) -> str:
    """A non-negative integer as a 20-digit, zero-padded decimal."""
    if n < 0 or n >= 10 ** NUMBER_DIGITS:
        raise ValueError(f"number {n} out of range for a {NUMBER_DIGITS}-digit key")
    return f"{n:0{NUMBER_DIGITS}d}"


def parse_number(name: str) -> int:
    """The number in a key's last component, e.g. '.../00000000000000000042.commit' -> 42."""
    stem = name.rsplit("/", 1)[-1].split(".", 1)[0]
    if len(stem) != NUMBER_DIGITS or not stem.isdigit():
        raise ValueError(f"not a numbered key: {name!r}")
    return int(stem)


def table_metadata(version: int) -> str:
    return f"{TABLE_METADATA_DIR}{number(version)}.meta"


def bucket_dir(bucket: int) -> str:
    return f"{LOG_DIR}{bucket:0{BUCKET_DIGITS}d}/"


def commits_dir(bucket: int) -> str:
    return bucket_dir(bucket) + "commits/"


def commit(bucket: int, commit_number: int) -> str:
    return f"{commits_dir(bucket)}{number(commit_number)}.commit"


def segments_dir(bucket: int) -> str:
    return bucket_dir(bucket) + "segments/"


def segment(bucket: int, writer_id: str, writer_seq: int, part: int) -> str:
    return f"{segments_dir(bucket)}{writer_id}-{number(writer_seq)}-{part:05d}.seg"


def checkpoints_dir(bucket: int) -> str:
    return bucket_dir(bucket) + "checkpoints/"


def checkpoint(bucket: int, last_commit_number: int) -> str:
    return f"{checkpoints_dir(bucket)}{number(last_commit_number)}.ckpt"


def checkpoint_hint(bucket: int) -> str:
    return bucket_dir(bucket) + "_last_checkpoint"


SNAPSHOTS_DIR = ROOT + "snapshots/"
DATA_DIR = "data/"
ICEBERG_METADATA_DIR = "metadata/"
VERSION_HINT = ICEBERG_METADATA_DIR + "version-hint.text"


def snapshot(snapshot_number: int) -> str:
    return f"{SNAPSHOTS_DIR}{number(snapshot_number)}.snap"


def data_file(bucket: int, epoch: int, token: str, name: str) -> str:
    """A Parquet file a compaction at `epoch` wrote (`token`: that compactor's id, so racing
    compactors never share a key)."""
    return f"{DATA_DIR}{bucket:0{BUCKET_DIGITS}d}/{number(epoch)}-{token}-{name}.parquet"


BATCHES_DIR = ROOT + "batches/"


def batch_claim(writer_id: str) -> str:
    """The claim of an exactly-once batch (its writer id is derived from the batch id)."""
    return f"{BATCHES_DIR}{writer_id}.claim"


def batch_done(writer_id: str) -> str:
    return f"{BATCHES_DIR}{writer_id}.done"


def changelog_dir(bucket: int) -> str:
    return f"{ROOT}changelog/{bucket:0{BUCKET_DIGITS}d}/"


def changelog_piece(bucket: int, first_offset: int, epoch: int, token: str) -> str:
    return f"{changelog_dir(bucket)}{number(first_offset)}-{number(epoch)}-{token}.parquet"


def iceberg_metadata(version: int) -> str:
    return f"{ICEBERG_METADATA_DIR}v{version}.metadata.json"
