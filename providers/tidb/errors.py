"""Named errors of the TiDB offline store. Each message says what to fix."""

from __future__ import annotations

from collections.abc import Iterable


class TiDBOfflineStoreError(Exception):
    """Base class of every error this store raises on purpose."""


class TiDBConfigError(TiDBOfflineStoreError, ValueError):
    """`offline_store:` in feature_store.yaml is incomplete or wrong."""


class InvalidIdentifier(TiDBOfflineStoreError, ValueError):
    def __init__(self, name: object, why: str):
        super().__init__(f"{name!r} cannot be used as a table or column name: {why}.")


class TiDBSourceDefinitionError(TiDBOfflineStoreError, ValueError):
    """A TiDBSource was declared in a way that cannot work (e.g. both table and query)."""


class TiDBSourceNotFound(TiDBOfflineStoreError):
    def __init__(self, source_name: str, what: str, cause: object):
        super().__init__(
            f"TiDBSource '{source_name}': {what} cannot be read ({cause}). "
            "Check that the table exists in the configured database, or that the query runs."
        )


class TiDBSourceColumnNotFound(TiDBOfflineStoreError, ValueError):
    def __init__(self, source_name: str, column: str, role: str, available: Iterable[str]):
        super().__init__(
            f"TiDBSource '{source_name}': the {role} column '{column}' is not in the source. "
            f"Available columns: {', '.join(sorted(available))}. Fix the source definition or the table."
        )


class InvalidEntityDataFrame(TiDBOfflineStoreError, ValueError):
    """The entity rows given to get_historical_features cannot be used."""


class TiDBWriteSchemaMismatch(TiDBOfflineStoreError, ValueError):
    def __init__(self, table: str, missing: Iterable[str], unexpected: Iterable[str]):
        missing, unexpected = sorted(missing), sorted(unexpected)
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if unexpected:
            parts.append(f"columns not in the table {unexpected}")
        super().__init__(
            f"Cannot write to table {table}: {'; '.join(parts)}. "
            "Send rows whose columns match the feature view's batch source table."
        )


class TiDBSavedDatasetExists(TiDBOfflineStoreError):
    def __init__(self, table: str):
        super().__init__(
            f"Saved dataset table {table} already exists. Pass allow_overwrite=True to replace it, "
            "or choose another table_ref."
        )


class TiDBKeyTypeError(TiDBOfflineStoreError, TypeError):
    """A join key whose declared type or source column cannot be matched exactly."""


class TiDBValueTypeError(TiDBOfflineStoreError, TypeError):
    """A value that does not fit the type its feature view declares."""


class AsOfNotInContext(TiDBOfflineStoreError, RuntimeError):
    """A retrieval ran where an `as_of` pin should hold but cannot be seen (another thread)."""


class TiDBReadError(TiDBOfflineStoreError):
    """The result of a query could not be read (the reader library's own error is the cause)."""


class ErasedSinceAsOf(TiDBOfflineStoreError):
    """An `as_of` retrieval asked for subjects erased after its knowledge time: what was known
    then about them is gone, so the result would differ from the training set it rebuilds."""
