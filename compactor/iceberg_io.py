"""A pyiceberg FileIO over a flussfs Store, so every Iceberg read and write of the compactor goes
through the store (and through whatever wraps it: metering, fault injection, latency).

Invariants: a location maps to a table-relative key only if it lies under the table's own
location (`flussfs.parquet.location(uri, "")`), else CorruptObjectError; an output file is
uploaded once, with put-if-absent, when pyiceberg closes it (never overwriting anything); an
input file is one GET of the whole object (manifests and manifest lists are small).
"""
from __future__ import annotations

import io

from pyiceberg.io import FileIO, InputFile, OutputFile

from flussfs.errors import ConflictError, CorruptObjectError
from flussfs.parquet import location
from flussfs.storage import PutOutcome


class StoreFileIO(FileIO):
    """Iceberg file IO for the table at `uri`, whose objects live in `store`."""

    def __init__(self, store, uri: str):
        super().__init__({})
        self.store, self.prefix = store, location(uri, "")

    def key(self, loc: str) -> str:
        """The table-relative key of an absolute location inside the table."""
        path = loc[len("file://"):] if loc.startswith("file://") else loc
        path = path[len("file:"):] if path.startswith("file:/") else path
        path = path.replace("s3a://", "s3://", 1)
        if not path.startswith(self.prefix) or len(path) == len(self.prefix):
            # Only stored metadata can name such a location: Iceberg metadata holds absolute
            # locations, so a table copied or moved elsewhere points back at the original.
            raise CorruptObjectError(f"location {loc} lies outside the table at {self.prefix} "
                                     f"(was the table copied or moved?)")
        return path[len(self.prefix):]

    def new_input(self, location: str) -> InputFile:
        return StoreInputFile(self, location)

    def new_output(self, location: str) -> OutputFile:
        return StoreOutputFile(self, location)

    def delete(self, location) -> None:
        loc = location if isinstance(location, str) else location.location
        self.store.delete(self.key(loc))


class StoreInputFile(InputFile):
    def __init__(self, fio: StoreFileIO, loc: str):
        super().__init__(loc)
        self.fio, self.key, self._size = fio, fio.key(loc), None

    def __len__(self) -> int:
        if self._size is None:
            info = self.fio.store.head(self.key)
            if info is None:
                raise FileNotFoundError(self.location)
            self._size = info.size
        return self._size

    def exists(self) -> bool:
        return self.fio.store.head(self.key) is not None

    def open(self, seekable: bool = True) -> io.BytesIO:
        data = self.fio.store.get(self.key)
        self._size = len(data)
        return io.BytesIO(data)


class _UploadOnClose(io.BytesIO):
    """A buffer that put-if-absents its contents when closed (once)."""

    def __init__(self, out: "StoreOutputFile"):
        super().__init__()
        self.out = out

    def close(self) -> None:
        if not self.closed:
            self.out.upload(self.getvalue())
        super().close()


class StoreOutputFile(OutputFile):
    def __init__(self, fio: StoreFileIO, loc: str):
        super().__init__(loc)
        self.fio, self.key, self.size = fio, fio.key(loc), None

    def __len__(self) -> int:
        if self.size is None:
            raise ValueError(f"{self.location} has not been written yet")
        return self.size

    def exists(self) -> bool:
        return self.fio.store.head(self.key) is not None

    def to_input_file(self) -> InputFile:
        return StoreInputFile(self.fio, self.location)

    def create(self, overwrite: bool = False) -> _UploadOnClose:
        # Every Iceberg file the compactor writes has a fresh uuid in its name, so "overwrite"
        # never happens; the store's put-if-absent is the only write this class does.
        if not overwrite and self.exists():
            raise FileExistsError(self.location)
        return _UploadOnClose(self)

    def upload(self, data: bytes) -> None:
        if self.fio.store.put_if_absent(self.key, data) is PutOutcome.EXISTS:
            # Our own earlier attempt whose response was lost holds the key (names carry a
            # uuid); anything else there is a conflict we must not paper over.
            if self.fio.store.get(self.key) != data:
                raise ConflictError(f"{self.key} already exists with other contents")
        self.size = len(data)
