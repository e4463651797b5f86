"""The flussfs compactor: merges a table's log into Parquet snapshots and publishes them as an
Apache Iceberg table at the table's URI (../shared/API.md, module `compactor`)."""
from .job import CompactionResult, compact

__all__ = ["compact", "CompactionResult"]
