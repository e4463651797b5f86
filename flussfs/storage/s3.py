"""A table on S3 or an S3-compatible store, through s3fs (format_spec/spec-v1.md, "Storage: S3").

Invariants: put-if-absent is a PutObject with `If-None-Match: *` (412 -> EXISTS); a multipart
upload whose condition fails is aborted (s3fs aborts on any failure of CompleteMultipartUpload);
ranged reads go straight to `cat_file`/`cat_ranges`, never through a read-ahead cache, one GET
per range (an empty range costs a HEAD instead; it and a range past the end read b"", as a local
file does); listings call ListObjectsV2 directly, so s3fs's directory cache never hides a new key.
"""
from __future__ import annotations

from typing import Iterator

import s3fs

from ..errors import CommitOutcomeUnknownError, NotFoundError, StorageError
from .base import LIST_PAGE_KEYS_MAX, ObjectInfo, PutOutcome

MULTIPART_PART_BYTES = 64 * 2**20  # s3fs uses one PUT below twice this size, multipart above


class S3Store:
    def __init__(self, url: str, storage_options: dict | None = None,
                 part_bytes: int = MULTIPART_PART_BYTES):
        self.url = url.rstrip("/")
        path = self.url.split("://", 1)[1]
        self.bucket, _, prefix = path.partition("/")
        self.prefix = prefix + "/" if prefix else ""
        self.fs = s3fs.S3FileSystem(**(storage_options or {}))
        self.part_bytes = part_bytes

    def _path(self, key: str) -> str:
        return f"{self.bucket}/{self.prefix}{key}"

    def get(self, key, start=None, end=None) -> bytes:
        if _is_empty(start, end):
            # S3 ignores an empty Range header ("bytes=5-4") and answers with the whole object.
            if self.head(key) is None:
                raise NotFoundError(f"object {key} not found in {self.url}")
            return b""
        try:
            # max_concurrency=1: one GET. Otherwise s3fs spends a HEAD on the size of every
            # whole-object read, to decide whether to split it into parallel ranged GETs.
            return self.fs.cat_file(self._path(key), start=start, end=end, max_concurrency=1)
        except FileNotFoundError:
            raise NotFoundError(f"object {key} not found in {self.url}") from None
        except Exception as e:
            if _error_code(e) == "InvalidRange":
                return b""  # the range starts at or past the end: as a local file read does
            raise StorageError(f"reading {key} in {self.url}: {e}") from e

    def get_ranges(self, key, ranges) -> list[bytes]:
        out = [b""] * len(ranges)
        wanted = [i for i, (s, e) in enumerate(ranges) if not _is_empty(s, e)]
        if len(wanted) <= 1:
            if wanted:
                out[wanted[0]] = self.get(key, *ranges[wanted[0]])
            elif ranges and self.head(key) is None:
                raise NotFoundError(f"object {key} not found in {self.url}")
            return out
        path = self._path(key)
        try:
            got = self.fs.cat_ranges([path] * len(wanted), [ranges[i][0] for i in wanted],
                                     [ranges[i][1] for i in wanted], on_error="return")
        except Exception as e:
            raise StorageError(f"reading {key} in {self.url}: {e}") from e
        for i, item in zip(wanted, got):
            if isinstance(item, FileNotFoundError):
                raise NotFoundError(f"object {key} not found in {self.url}")
            if isinstance(item, Exception):
                if _error_code(item) == "InvalidRange":
                    continue
                raise StorageError(f"reading {key} in {self.url}: {item}") from item
            out[i] = item
        return out

    def put_if_absent(self, key, data) -> PutOutcome:
        try:
            self.fs.pipe_file(self._path(key), bytes(data), mode="create", chunksize=self.part_bytes)
        except FileExistsError:
            return PutOutcome.EXISTS
        except PermissionError as e:
            raise StorageError(f"writing {key} in {self.url}: permission denied: {e}") from e
        except Exception as e:
            # The request may have reached the store: only a read-back can tell.
            raise CommitOutcomeUnknownError(f"writing {key} in {self.url}: {e}") from e
        return PutOutcome.CREATED

    def put(self, key, data) -> None:
        try:
            self.fs.pipe_file(self._path(key), bytes(data), chunksize=self.part_bytes)
        except Exception as e:
            raise StorageError(f"writing {key} in {self.url}: {e}") from e

    def head(self, key) -> ObjectInfo | None:
        try:
            out = self.fs.call_s3("head_object", Bucket=self.bucket, Key=self.prefix + key)
        except FileNotFoundError:
            return None
        except Exception as e:
            raise StorageError(f"reading {key} in {self.url}: {e}") from e
        return ObjectInfo(key, out["ContentLength"], out["LastModified"].timestamp())

    def list(self, prefix, start_after=None, limit=None) -> Iterator[ObjectInfo]:
        request = {"Bucket": self.bucket, "Prefix": self.prefix + prefix,
                   "MaxKeys": min(limit or LIST_PAGE_KEYS_MAX, LIST_PAGE_KEYS_MAX)}
        if start_after is not None:
            request["StartAfter"] = self.prefix + start_after
        count, cut = 0, len(self.prefix)
        while True:
            try:
                page = self.fs.call_s3("list_objects_v2", **request)
            except Exception as e:
                raise StorageError(f"listing {prefix} in {self.url}: {e}") from e
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][cut:], item["Size"], item["LastModified"].timestamp())
                count += 1
                if limit is not None and count >= limit:
                    return
            if not page.get("IsTruncated"):
                return
            request["ContinuationToken"] = page["NextContinuationToken"]

    def delete(self, key) -> None:
        try:
            self.fs.call_s3("delete_object", Bucket=self.bucket, Key=self.prefix + key)
        except FileNotFoundError:
            pass
        except Exception as e:
            raise StorageError(f"deleting {key} in {self.url}: {e}") from e


def _is_empty(start, end) -> bool:
    return end is not None and end <= (start or 0)


def _error_code(e: BaseException) -> str | None:
    """The S3 error code behind an exception s3fs translated (it keeps the ClientError as cause)."""
    cause = e.__cause__ if e.__cause__ is not None else e
    response = getattr(cause, "response", None) or {}
    return response.get("Error", {}).get("Code")
