"""Served-feature logging: every vector a model scored, written to the feature service's log
table through Feast, from a writer process off the request path (logger.py says how and what is
not lost)."""

from serving.feature_log.logger import (
    BatchWriter,
    Record,
    ServedFeatureLogger,
    log_rows,
    served_records,
)

__all__ = ["BatchWriter", "Record", "ServedFeatureLogger", "log_rows", "served_records"]
