"""Served-feature logging through Feast feature logging, off the request path.

Requests enqueue their rows; a background thread writes them to TiDB in batches with
`FeatureStore.write_logged_features` (the feature service's `TiDBLoggingDestination`). Stopping
drains the queue, so nothing queued is lost on shutdown. If the queue is full (TiDB down for a
long time), requests wait for room rather than drop rows.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections import defaultdict
from typing import Any

import pyarrow as pa
from feast import FeatureStore
from feast.feature_logging import FeatureServiceLoggingSource

log = logging.getLogger(__name__)


class ServedFeatureLogger:
    def __init__(self, store: FeatureStore, flush_seconds: float = 1.0, max_rows: int = 100_000):
        self.store = store
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue(maxsize=max_rows)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="served-feature-log", daemon=True)
        self._schemas: dict[str, pa.Schema] = {}
        self.written = 0
        self.failures = 0

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, service: str, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self._queue.put((service, row))

    def stop(self, timeout: float = 30.0) -> None:
        """Flush everything queued, then stop."""
        self._stop.set()
        self._thread.join(timeout)
        self._flush()  # whatever arrived after the thread's last pass

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._flush()
        self._flush()

    def _schema(self, service: str) -> pa.Schema:
        if service not in self._schemas:
            svc = self.store.get_feature_service(service)
            self._schemas[service] = FeatureServiceLoggingSource(
                svc, self.store.project
            ).get_schema(self.store.registry)
        return self._schemas[service]

    def _flush(self) -> None:
        batches: dict[str, list[dict[str, Any]]] = defaultdict(list)
        while True:
            try:
                service, row = self._queue.get_nowait()
            except queue.Empty:
                break
            batches[service].append(row)
        for service, rows in batches.items():
            schema = self._schema(service)
            table = pa.Table.from_pylist(
                [{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema
            )
            try:
                self.store.write_logged_features(
                    logs=table, source=self.store.get_feature_service(service)
                )
                self.written += len(rows)
            except Exception:
                self.failures += 1
                log.exception(
                    "Writing %d served-feature rows failed; they are put back in the queue.",
                    len(rows),
                )
                for row in rows:
                    self._queue.put((service, row))
                return


def log_rows(
    entity_rows: list[dict[str, Any]],
    features: list[dict[str, Any]],
    request_ids: list[str],
    service_views: dict[str, str],
) -> list[dict[str, Any]]:
    """Log rows in Feast's schema: keys and request data, `view__feature`, its timestamp and status."""
    now = dt.datetime.now(dt.UTC)
    status_codes = {
        "INVALID": 0,
        "PRESENT": 1,
        "NULL_VALUE": 2,
        "NOT_FOUND": 3,
        "OUTSIDE_MAX_AGE": 4,
    }
    out = []
    for entity, served, request_id in zip(entity_rows, features, request_ids, strict=True):
        row: dict[str, Any] = dict(entity)
        for name, feature in served.items():
            column = f"{service_views[name]}__{name}"
            row[column] = feature.value
            row[f"{column}__timestamp"] = dt.datetime.fromtimestamp(feature.event_timestamp, dt.UTC)
            row[f"{column}__status"] = status_codes.get(feature.status, 0)
        row.update({"__log_timestamp": now, "__log_date": now.date(), "__request_id": request_id})
        out.append(row)
    return out
