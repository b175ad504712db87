"""Served-feature logging through Feast feature logging, off the request path and out of its process.

Requests hand their served vectors to a writer process over a pipe as plain records
(`served_records`; `ServedFeatureLogger.enqueue`: records are buffered for `SEND_SECONDS` and sent
as one pickle, one write and one wake-up of the writer per batch; nothing waits for TiDB). The
writer process (`_writer_main`, its own `FeatureStore` from the same repo and environment) buffers
them, names Feast's log columns (`log_rows`) and writes them to TiDB in batches
with `FeatureStore.write_logged_features` (the feature service's `TiDBLoggingDestination`) every
`flush_seconds`.

Why a process and not a thread: building the Arrow table and the pymysql insert are Python work
that holds the GIL; in a thread of the serving process they stalled the requests that arrived
during a flush (the p99 of `benchmarks/online.py` at concurrency 1 was 27 ms with a thread; see
docs/benchmarks.md). Processes share the cores without sharing a lock.

What is not lost:
- stopping (`stop`, the app's shutdown) sends an end marker; the writer drains the pipe, writes
  everything, then exits, and `stop` waits for it;
- SIGINT/SIGTERM sent to the whole process group (Ctrl-C, `docker stop`) are ignored by the
  writer: it finishes when the server tells it to, or when the pipe closes because the server died;
- a failed write (TiDB down) is retried at the next flush; when `max_rows` rows are waiting, the
  writer stops reading the pipe, so requests wait for room instead of dropping rows.
What can be lost: rows a writer held when it was itself killed (e.g. by the OOM killer). The next
batch sent finds the pipe broken, logs an error and starts a new writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections import defaultdict
from multiprocessing.connection import Connection
from typing import Any

import pyarrow as pa
from feast import FeatureStore
from feast.feature_logging import FeatureServiceLoggingSource

from providers.tidb.source import vouched_column, vouched_field

log = logging.getLogger(__name__)

SEND_SECONDS = 0.05  # how long rows wait in the serving process before going to the writer
# One served entity row: (entity, request id, served at (epoch s),
# [(feature, value, event ts, status, vouched at (epoch s, 0 unknown))])
Record = tuple[dict[str, Any], str, float, list[tuple[str, Any, int, str, float]]]
STATUS_CODES = {"INVALID": 0, "PRESENT": 1, "NULL_VALUE": 2, "NOT_FOUND": 3, "OUTSIDE_MAX_AGE": 4}

# Writers are forked from a server process that has imported Feast once (fast to start, and safe:
# the server has no threads, unlike the serving process with uvicorn's and anyio's).
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


class ServedFeatureLogger:
    """The serving side: starts the writer process and hands it rows."""

    def __init__(self, repo_path: str, flush_seconds: float = 1.0, max_rows: int = 100_000):
        self.repo_path = str(repo_path)
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self.process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # enqueue may be called from the loop and from threads
        self._buffer: list[tuple[str, list[dict[str, Any]]]] = []
        self._send_scheduled = False

    def start(self, timeout: float = 120.0) -> None:
        """Start a writer and wait until it is ready: signals ignored, its FeatureStore loaded."""
        ours, theirs = _CONTEXT.Pipe()
        self.process = _CONTEXT.Process(
            target=_writer_main,
            args=(theirs, self.repo_path, dict(os.environ), self.flush_seconds, self.max_rows),
            name="served-feature-log",
            daemon=False,  # must outlive a stopping parent long enough to flush
        )
        self.process.start()
        theirs.close()  # the writer's end; closing ours lets it see EOF if we die
        try:
            ready = ours.recv() if ours.poll(timeout) else f"not ready after {timeout:.0f} s"
        except EOFError:
            self.process.join(5)
            ready = f"exited with {self.process.exitcode}"
        if ready != "ready":
            self.process.kill()
            raise RuntimeError(f"The served-feature log writer could not start: {ready}")
        self._conn = ours

    def enqueue(self, service: str, rows: list[dict[str, Any]]) -> None:
        """Buffer the rows; they go to the writer `SEND_SECONDS` later, with the rows of the
        requests in between (one pipe write and one wake-up of the writer per batch, not per
        request). Without a running event loop, they are sent at once."""
        if not rows:
            return
        with self._lock:
            self._buffer.append((service, rows))
            if self._send_scheduled:
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._send_locked()
                return
            self._send_scheduled = True
        loop.call_later(SEND_SECONDS, self._send)

    def _send(self) -> None:
        with self._lock:
            self._send_locked()

    def _send_locked(self) -> None:
        self._send_scheduled = False
        if not self._buffer or self._conn is None:
            return
        batch, self._buffer = self._buffer, []
        try:
            self._conn.send(batch)
        except OSError:  # BrokenPipeError: the writer died
            log.error(
                "The served-feature log writer (pid %s) died with exit code %s; rows it "
                "held but had not written are lost. Starting a new writer.",
                self.process.pid if self.process else None,
                self.process.exitcode if self.process else None,
            )
            self._conn.close()
            self.start()
            self._conn.send(batch)

    def stop(self, timeout: float = 30.0) -> None:
        """Tell the writer to write everything it has and exit; wait up to `timeout` seconds.

        The writer answers over the pipe when it is done; its exit code alone is not enough (a
        fork server killed by a signal to the process group reports 255 for a writer that is
        still running and writing).
        """
        with self._lock:
            if self._conn is None or self.process is None:
                return
            self._send_locked()  # what is still buffered
            conn, self._conn = self._conn, None
            try:
                conn.send(None)
                answer = conn.recv() if conn.poll(timeout) else None
            except (OSError, EOFError):
                answer = "gone"
            conn.close()
            if answer is None:
                log.error(
                    "The served-feature log writer did not finish within %.0f s; stopping it. "
                    "Rows it had not written are lost.",
                    timeout,
                )
                self.process.kill()
            elif answer != "done":
                log.error("The served-feature log writer stopped early: %s", answer)
            self.process.join(5)


def _writer_main(
    conn: Connection, repo_path: str, environ: dict[str, str], flush_seconds: float, max_rows: int
) -> None:
    """The writer process: read (service, records) until the end marker or EOF, write in batches."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    os.setsid()  # out of the server's process group: a signal to the group does not reach us
    os.environ.clear()  # the server's environment now, not the fork server's from its start
    os.environ.update(environ)
    logging.basicConfig(level=logging.INFO)
    try:
        writer = BatchWriter(FeatureStore(repo_path=repo_path), flush_seconds, max_rows)
    except Exception as exc:
        conn.send(f"{type(exc).__name__}: {exc}")
        raise
    writer.start()
    conn.send("ready")
    try:
        while True:
            try:
                item = conn.recv()
            except EOFError:  # the server died without saying so: write what we have
                break
            if item is None:
                break
            for service, records in item:
                writer.enqueue(service, records)
    finally:
        writer.stop()
        lost = writer.pending()
        with contextlib.suppress(OSError):
            conn.send("done" if not lost else f"{lost} rows could not be written")


class BatchWriter:
    """Buffers rows and writes them with `write_logged_features` every `flush_seconds` (a thread).

    A failed write keeps its rows for the next flush. `enqueue` waits while `max_rows` rows are
    buffered. `stop` writes everything, retrying failed writes for up to `retry_seconds`.
    """

    def __init__(self, store: FeatureStore, flush_seconds: float = 1.0, max_rows: int = 100_000):
        self.store = store
        self.flush_seconds = flush_seconds
        self._queue: queue.Queue[tuple[str, Record]] = queue.Queue(maxsize=max_rows)
        self._failed: dict[str, list[Record]] = defaultdict(list)  # flush thread only
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="served-feature-log", daemon=True)
        self._schemas: dict[str, pa.Schema] = {}
        self._views: dict[str, dict[str, str]] = {}  # service -> feature -> view (column prefix)
        self._erased: Any = None  # providers.erasure.MirrorCheck, made on the first flush

    def start(self) -> None:
        self._thread.start()

    def enqueue(self, service: str, records: list[Record]) -> None:
        for record in records:
            self._queue.put((service, record))

    def pending(self) -> int:
        return self._queue.qsize() + sum(len(rows) for rows in self._failed.values())

    def stop(self, retry_seconds: float = 25.0) -> None:
        """Write everything buffered, then stop; failed writes are retried for `retry_seconds`."""
        self._stop.set()
        self._thread.join()
        deadline = time.monotonic() + retry_seconds
        while self._flush() and time.monotonic() < deadline:
            time.sleep(min(self.flush_seconds, 1.0))
        if self.pending():
            log.error("%d served-feature rows could not be written and are lost.", self.pending())

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self._flush()

    def _schema(self, service: str) -> pa.Schema:
        if service not in self._schemas:
            svc = self.store.get_feature_service(service)
            self._schemas[service] = FeatureServiceLoggingSource(
                svc, self.store.project
            ).get_schema(self.store.registry)
            self._views[service] = {
                f.name: p.name_to_use() for p in svc.feature_view_projections for f in p.features
            }
            # Feast's log schema, and when the pipeline vouched for each view's values (on-demand
            # views are computed at request time: no column)
            on_demand = {v.name for v in self.store.list_on_demand_feature_views()}
            for projection in svc.feature_view_projections:
                if projection.name not in on_demand:
                    self._schemas[service] = self._schemas[service].append(
                        vouched_field(vouched_column(projection.name_to_use()))
                    )
        return self._schemas[service]

    def _without_erased(self, records: list[Record]) -> list[Record]:
        """Records of erased subjects are not logged (providers/erasure.py): a request for an
        erased user must not store them again. A Redis error raises (the batch waits)."""
        from providers.erasure import SUBJECT_KEY, MirrorCheck

        if self._erased is None:
            self._erased = MirrorCheck(self.store.config.online_store, self.store.project)
        keys = {r[0][SUBJECT_KEY] for r in records if r[0].get(SUBJECT_KEY) is not None}
        gone = self._erased.among(keys)
        if not gone:
            return records
        return [r for r in records if r[0].get(SUBJECT_KEY) not in gone]

    def _flush(self) -> bool:
        """Write what is buffered; True when something could not be written."""
        batches, self._failed = self._failed, defaultdict(list)
        while True:
            try:
                service, record = self._queue.get_nowait()
            except queue.Empty:
                break
            batches[service].append(record)
        for service, records in batches.items():
            if self._failed:  # an earlier service failed: TiDB is down, keep the rest for later
                self._failed[service] = records
                continue
            try:
                records = self._without_erased(records)
                if not records:
                    continue
                schema = self._schema(service)
                table = pa.Table.from_pylist(  # columns the rows lack (none, normally): null
                    log_rows(records, self._views[service]), schema=schema
                )
                self.store.write_logged_features(
                    logs=table, source=self.store.get_feature_service(service)
                )
            except Exception:
                log.exception(
                    "Writing %d served-feature rows failed; they are retried at the next flush.",
                    len(records),
                )
                self._failed[service] = records
        return bool(self._failed)


def served_records(
    entity_rows: list[dict[str, Any]], features: list[dict[str, Any]], request_ids: list[str]
) -> list[Record]:
    """What a request hands the writer, per entity row: (entity, request id, served at (epoch
    seconds), [(feature, value, event timestamp, status, vouched at)]). Plain tuples, no column
    names: the writer names the columns (`log_rows`), so the request path and the pipe carry a
    fraction of the bytes (rows of 60+ named columns filled the pipe while the writer flushed, and the event
    loop waited on it)."""
    now = time.time()
    return [
        (
            entity,
            request_id,
            now,
            [
                (name, f.value, f.event_timestamp, f.status, f.vouched_timestamp)
                for name, f in served.items()
            ],
        )
        for entity, served, request_id in zip(entity_rows, features, request_ids, strict=True)
    ]


def log_rows(records: list[Record], service_views: dict[str, str]) -> list[dict[str, Any]]:
    """Log rows in Feast's schema: keys and request data, `view__feature`, its timestamp and status,
    `__log_timestamp` (when it was served), `__log_date`, `__request_id`; and per view, when the
    pipeline last vouched for its values (`vouched_column`, null when unknown), which the skew
    report ages values from."""
    out = []
    for entity, request_id, served_at, served in records:
        row: dict[str, Any] = dict(entity)
        for name, value, event_timestamp, status, vouched in served:
            view = service_views[name]
            column = f"{view}__{name}"
            row[column] = value
            row[f"{column}__timestamp"] = dt.datetime.fromtimestamp(event_timestamp, dt.UTC)
            row[f"{column}__status"] = STATUS_CODES.get(status, 0)
            if vouched:
                row[vouched_column(view)] = dt.datetime.fromtimestamp(vouched, dt.UTC)
        logged = dt.datetime.fromtimestamp(served_at, dt.UTC)
        row.update(
            {"__log_timestamp": logged, "__log_date": logged.date(), "__request_id": request_id}
        )
        out.append(row)
    return out
