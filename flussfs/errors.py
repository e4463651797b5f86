"""The error tree of flussfs, grouped by what a caller does about an error.

Every error the library raises on purpose derives from `FlussError`; library errors (OSError,
botocore) are wrapped at the storage boundary and never leak raw through the public API.
"""


class FlussError(Exception):
    """Root of every error flussfs raises on purpose."""


class ConflictError(FlussError):
    """Someone else got there first (a commit race lost too often, a table that already exists).
    Nothing of the call was committed; re-read and try again if it still makes sense."""


class DraftExpiredError(ConflictError):
    """Prepared data whose segments are older than the commit deadline; it was not committed.
    Prepare the rows again."""


class TableExistsError(ConflictError):
    """create_table over an existing table."""


class NotFoundError(FlussError):
    """A table, object or offset that does not exist."""


class InvalidInputError(FlussError):
    """Bad arguments or data. The message names the column, key or object; nothing was committed."""


class CorruptObjectError(FlussError):
    """An object failed its checksum or structural checks. It is never returned as data."""


class CommitOutcomeUnknownError(FlussError):
    """The store did not say whether a commit landed and reading it back failed too.

    The data may or may not be committed. `drafts`, when set, is what was being committed:
    `table.commit_drafts(error.drafts)` resolves it without duplicating (see
    format_spec/spec-v1.md, "Idempotent writers")."""
    drafts = None


class FencedError(FlussError):
    """A newer process (writer epoch, compactor epoch) has taken over; this one must stop."""


class StorageError(FlussError):
    """The object store failed in a way that is none of the above (network, permissions).
    Transient ones are worth retrying later."""
