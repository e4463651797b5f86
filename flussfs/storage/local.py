"""A table in a local directory (format_spec/spec-v1.md, "Storage: local directories").

Invariant: an object is visible only complete. put_if_absent writes a temporary file in the
same directory, fsyncs it, hard-links it to the final name (`os.link` fails if the name exists,
which is the put-if-absent) and fsyncs the directory; `os.rename` would overwrite, so it is
never used for objects that must not be replaced. Temporary names start with '.', and list
skips them, so keys with a component that starts with '.' (or is empty) are refused on write.
Directories are not objects: head, get and delete treat a key that names one as
missing, as S3 treats a key that is only a prefix of others. OSErrors leave as StorageError.
"""
from __future__ import annotations

import os
import stat
import uuid
from typing import Iterator

from ..errors import InvalidInputError, NotFoundError, StorageError
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
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFoundError(f"object {key} not found in {self.url}") from None
        except OSError as e:
            raise StorageError(f"reading {key} in {self.url}: {e}") from e

    def get_ranges(self, key, ranges) -> list[bytes]:
        return [self.get(key, s, e) for s, e in ranges]

    def put_if_absent(self, key, data) -> PutOutcome:
        self._check_writable(key)
        final = self._path(key)
        tmp = self._write_temp(final, data)
        try:
            os.link(tmp, final)
        except FileExistsError:
            if os.path.isdir(final):
                # Not an object that someone wrote: a directory cannot also be a file here.
                raise StorageError(f"writing {key} in {self.url}: a directory has that name") from None
            return PutOutcome.EXISTS
        except OSError as e:
            raise StorageError(f"writing {key} in {self.url}: {e}") from e
        finally:
            os.unlink(tmp)
        self._fsync_dir(os.path.dirname(final))
        return PutOutcome.CREATED

    def put(self, key, data) -> None:
        self._check_writable(key)
        final = self._path(key)
        tmp = self._write_temp(final, data)
        try:
            os.replace(tmp, final)
        except OSError as e:
            os.unlink(tmp)
            raise StorageError(f"writing {key} in {self.url}: {e}") from e
        self._fsync_dir(os.path.dirname(final))

    @staticmethod
    def _check_writable(key: str) -> None:
        if any(not part or part.startswith(".") for part in key.split("/")):
            raise InvalidInputError(f"object key {key!r}: a local store cannot hold a key with an "
                                    f"empty or '.'-prefixed component (list would skip it)")

    def _write_temp(self, final: str, data: bytes) -> str:
        directory = os.path.dirname(final)
        tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
        try:
            os.makedirs(directory, exist_ok=True)
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
        try:
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise StorageError(f"syncing directory {directory}: {e}") from e

    def head(self, key) -> ObjectInfo | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as e:
            raise StorageError(f"reading {key} in {self.url}: {e}") from e
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(key, st.st_size, st.st_mtime)

    def list(self, prefix, start_after=None, limit=None) -> Iterator[ObjectInfo]:
        assert prefix == "" or prefix.endswith("/"), f"list prefixes are directories: {prefix!r}"
        count = 0
        for key in self._walk(prefix, start_after):
            if start_after is not None and key <= start_after:
                continue
            if limit is not None and count >= limit:
                return
            info = self.head(key)
            if info is not None:  # deleted while we listed
                count += 1
                yield info

    def _walk(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Keys under `prefix` in lexicographic order of the full key (as S3 lists them).

        Sorting a directory's entries by name, with '/' appended to subdirectories, gives that
        order. Subtrees whose every key sorts before `start_after` are skipped unread."""
        try:
            with os.scandir(self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root) as it:
                entries = sorted(((e.name + "/" if e.is_dir() else e.name) for e in it
                                  if not e.name.startswith(".")))
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            raise StorageError(f"listing {prefix} in {self.url}: {e}") from e
        for name in entries:
            key = prefix + name
            if not name.endswith("/"):
                yield key
            elif start_after is None or start_after < key or start_after.startswith(key):
                yield from self._walk(key, start_after)

    def delete(self, key) -> None:
        try:
            os.unlink(self._path(key))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as e:
            if os.path.isdir(self._path(key)):
                return  # some systems refuse unlink on a directory with EPERM
            raise StorageError(f"deleting {key} in {self.url}: {e}") from e
