"""A table in a local directory (format_spec/spec-v1.md, "Storage: local directories").

Invariant: an object is visible only complete. put_if_absent writes a temporary file in the
same directory, fsyncs it, hard-links it to the final name (`os.link` fails if the name exists,
which is the put-if-absent) and fsyncs the directory; `os.rename` would overwrite, so it is
never used for objects that must not be replaced. Temporary names start with '.', and list
skips them.
"""
from __future__ import annotations

import os
import uuid
from typing import Iterator

from ..errors import NotFoundError, StorageError
from .base import ObjectInfo, PutOutcome


class LocalStore:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.url = self.root

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *key.split("/"))

    def get(self, key, start=None, end=None) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                if start:
                    f.seek(start)
                return f.read() if end is None else f.read(end - (start or 0))
        except FileNotFoundError:
            raise NotFoundError(f"object {key} not found in {self.url}") from None
        except OSError as e:
            raise StorageError(f"reading {key} in {self.url}: {e}") from e

    def get_ranges(self, key, ranges) -> list[bytes]:
        return [self.get(key, s, e) for s, e in ranges]

    def put_if_absent(self, key, data) -> PutOutcome:
        final = self._path(key)
        tmp = self._write_temp(final, data)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return PutOutcome.EXISTS
        except OSError as e:
            raise StorageError(f"writing {key} in {self.url}: {e}") from e
        finally:
            os.unlink(tmp)
        self._fsync_dir(os.path.dirname(final))
        return PutOutcome.CREATED

    def put(self, key, data) -> None:
        final = self._path(key)
        tmp = self._write_temp(final, data)
        os.replace(tmp, final)
        self._fsync_dir(os.path.dirname(final))

    def _write_temp(self, final: str, data: bytes) -> str:
        directory = os.path.dirname(final)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise StorageError(f"writing {final}: {e}") from e
        return tmp

    @staticmethod
    def _fsync_dir(directory: str) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def head(self, key) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix, start_after=None, limit=None) -> Iterator[ObjectInfo]:
        assert prefix.endswith("/"), f"list prefixes are directories: {prefix!r}"
        count = 0
        for key in self._walk(prefix):
            if start_after is not None and key <= start_after:
                continue
            if limit is not None and count >= limit:
                return
            info = self.head(key)
            if info is not None:  # deleted while we listed
                count += 1
                yield info

    def _walk(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix` in lexicographic order of the full key (as S3 lists them)."""
        try:
            entries = sorted(os.scandir(self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root),
                             key=lambda e: e.name + ("/" if e.is_dir() else ""))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                yield from self._walk(f"{prefix}{entry.name}/")
            else:
                yield prefix + entry.name

    def delete(self, key) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
