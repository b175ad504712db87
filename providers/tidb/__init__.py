"""TiDB offline store for Feast.

feature_store.yaml:

    offline_store:
      type: providers.tidb.TiDBOfflineStore
      host: ${TIDB_HOST}
      port: ${TIDB_PORT}
      user: ${TIDB_USER}
      password: ${TIDB_PASSWORD}
      database: ${TIDB_DATABASE}
"""

from providers.tidb.as_of import as_of
from providers.tidb.errors import (
    ErasedSinceAsOf,
    InvalidEntityDataFrame,
    InvalidIdentifier,
    TiDBConfigError,
    TiDBOfflineStoreError,
    TiDBSavedDatasetExists,
    TiDBSourceColumnNotFound,
    TiDBSourceDefinitionError,
    TiDBSourceNotFound,
    TiDBWriteSchemaMismatch,
)
from providers.tidb.offline_store import TiDBOfflineStore, TiDBOfflineStoreConfig
from providers.tidb.retrieval import TiDBRetrievalJob
from providers.tidb.source import SavedDatasetTiDBStorage, TiDBLoggingDestination, TiDBSource

__all__ = [
    "as_of",
    "ErasedSinceAsOf",
    "InvalidEntityDataFrame",
    "InvalidIdentifier",
    "SavedDatasetTiDBStorage",
    "TiDBConfigError",
    "TiDBLoggingDestination",
    "TiDBOfflineStore",
    "TiDBOfflineStoreConfig",
    "TiDBOfflineStoreError",
    "TiDBRetrievalJob",
    "TiDBSavedDatasetExists",
    "TiDBSource",
    "TiDBSourceColumnNotFound",
    "TiDBSourceDefinitionError",
    "TiDBSourceNotFound",
    "TiDBWriteSchemaMismatch",
]
