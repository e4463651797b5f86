"""flussfs: a streaming log and table format that needs nothing but an object-store bucket."""
from .errors import (CommitOutcomeUnknownError, ConflictError, CorruptObjectError, DraftExpiredError,
                     FencedError,
                     FlussError, InvalidInputError, NotFoundError, StorageError, TableExistsError)
from .engines import Aggregate, Versioned
from .table import CommitResult, Table, create_table, open_table

__all__ = ["create_table", "open_table", "Table", "CommitResult", "Versioned", "Aggregate", "FlussError", "ConflictError",
           "TableExistsError", "NotFoundError", "InvalidInputError", "CorruptObjectError",
           "CommitOutcomeUnknownError", "DraftExpiredError", "FencedError", "StorageError"]
__version__ = "0.1.0"
