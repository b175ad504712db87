"""`feast materialize` from TiDB into Redis without Feast's per-value Python overhead.

Configured in feature_store.yaml:

    batch_engine:
      type: providers.tidb.materialization.TiDBRedisEngine
      batch_rows: 50000
      processes: 2

Feast's local engine converts every value through pandas-aware helpers, serializes every entity
key and hashes every field name per row, and writes with redis-py one command at a time:
about 14k (key, view) pairs/s on 2 cores whatever the offline store (benchmarks/materialize.py).
This engine keeps Feast's results byte for byte (the same Redis keys, hash fields, ValueProto and
Timestamp bytes, and the same rule: a row replaces the stored one only if its event time is
later) and does the per-row work once per view or per column instead:

- the latest row per key in the window is chosen by TiDB (the offline store's pull_latest), and
  only keys, features and the event time (as integer microseconds) come back;
- field hashes (`_mmh3`) are computed once per view, not once per row;
- entity keys of a single INT64/INT32/STRING join key are packed with `struct` in Feast's v3
  layout (other keys go through Feast's `serialize_entity_key`);
- scalar values become ValueProto bytes straight from Arrow columns (lists and other types go
  through Feast's `python_values_to_proto_values`);
- Redis compares and writes inside one Lua script call per 500 keys (`WRITE_NEWER`); a Redis
  Cluster or Sentinel, or key TTLs, take Feast's way instead: a pipeline of reads, then writes;
- the views are written by `processes` forked processes at once (the work is Python-bound);
  this process reads them from TiDB and hands each child its rows over a pipe;
- the bytes themselves come from `providers.feast_redis`.

Anything else (a non-TiDB source, another online store, a batch feature view with a transform)
is handed to Feast's own local engine. tests/integration/test_materialization_engine.py holds
the Redis contents equal to the local engine's, key by key and byte by byte.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import FeastConfigBaseModel
from pydantic import Field, StrictInt
from tqdm import tqdm

from providers import feast_redis
from providers.tidb import connection, declared, entity, reader, sql

log = logging.getLogger(__name__)


class TiDBRedisEngineConfig(FeastConfigBaseModel):
    """`batch_engine:` settings."""

    type: Literal["providers.tidb.materialization.TiDBRedisEngine"] = (
        "providers.tidb.materialization.TiDBRedisEngine"
    )
    batch_rows: StrictInt = Field(
        50_000, ge=100, le=1_000_000, description="Rows per Redis read/write pipeline."
    )
    processes: StrictInt = Field(
        2,
        ge=1,
        le=64,
        description="Processes writing views at once (forked; 1: all in this process). The work "
        "is Python-bound, so more than the cores available does not help.",
    )


# Messages to a forked writer: a batch (Arrow IPC stream), a failed read (its error), a view's end.
_BATCH, _FAILED, _END = b"B", b"E", b"."


def _aggregated_stream_view(view: Any) -> bool:
    """A stream feature view with aggregations: Feast itself cannot materialize it (0.67's local
    engine refuses time windows); its batch source holds the aggregated rows."""
    from feast.stream_feature_view import StreamFeatureView

    return type(view) is StreamFeatureView and bool(view.aggregations)


def _features(view: Any, fields: bool = False) -> list:
    """The view's features without its join keys (Feast 0.67 lists a stream view's entity
    columns among its features once read back from the registry)."""
    keys = {c.name for c in view.entity_columns}
    kept = [f for f in view.features if f.name not in keys]
    return kept if fields else [f.name for f in kept]


def _job(task: MaterializationTask, error: Exception | None) -> LocalMaterializationJob:
    job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
    if error is None:
        return LocalMaterializationJob(job_id, MaterializationJobStatus.SUCCEEDED)
    return LocalMaterializationJob(job_id, MaterializationJobStatus.ERROR, error=error)


class _ViewRows:
    """One view's tables as `_send_views` sends them, up to its end mark; a failed read raises."""

    def __init__(self, pipe: Any):
        self.pipe = pipe
        self.ended = False

    def __iter__(self) -> Iterator[pa.Table]:
        while not self.ended:
            message = self.pipe.recv_bytes()
            kind, body = message[:1], message[1:]
            if kind == _END:
                self.ended = True
            elif kind == _FAILED:
                raise RuntimeError(body.decode())
            else:
                yield pa.ipc.open_stream(body).read_all()

    def skip(self) -> None:
        """Discard what is left of the view (its write failed), up to its end mark."""
        while not self.ended:
            self.ended = self.pipe.recv_bytes()[:1] == _END


class _LoadMarks:
    """The online store's load markers (feast_redis.loaded_key), one per feature view.

    A view without a marker has lost its data (Redis restarted without persistence, or was
    flushed) or was never loaded, so its task is widened to the view's whole TTL (or all
    history when the view has none): `feast materialize-incremental` then reloads it whole
    instead of writing only the new interval over an empty store. A view is marked once its
    job succeeded, and only if the epoch this run set or found at its start is still there: a
    flush or a restart without persistence during the run removes it (and what was written
    before), so nothing is marked and the next run loads the views whole."""

    def __init__(self, client: Any, project: str):
        import uuid

        self.client = client
        self.key = feast_redis.loaded_key(project)
        self.epoch_key = feast_redis.epoch_key(project)
        client.set(self.epoch_key, uuid.uuid4().hex, nx=True)
        self.epoch = client.get(self.epoch_key)
        self.loaded = {k.decode() if isinstance(k, bytes) else k for k in client.hkeys(self.key)}

    @classmethod
    def of(cls, engine: TiDBRedisEngine) -> _LoadMarks | None:
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        config = engine.repo_config
        if not isinstance(config.online_store, RedisOnlineStoreConfig):
            return None
        client = engine.online_store._get_client(config.online_store)  # type: ignore[attr-defined]
        return cls(client, config.project)

    def whole_if_unloaded(self, task: MaterializationTask) -> MaterializationTask:
        import dataclasses
        import datetime as dt

        view = task.feature_view
        if view.name in self.loaded or task.start_time is None:
            return task
        ttl = getattr(view, "ttl", None)
        start = task.end_time - ttl if ttl else dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
        if start >= task.start_time:
            return task
        log.warning(
            "%s has no load marker in the online store (restarted, flushed or never loaded): "
            "materializing it from %s, not %s",
            view.name,
            start.isoformat(),
            task.start_time.isoformat(),
        )
        return dataclasses.replace(task, start_time=start)

    def mark(self, tasks: list[MaterializationTask], jobs: list[Any]) -> bool:
        """Mark the views whose job succeeded; False if nothing could be marked."""
        done = [
            (task.feature_view.name, task.end_time.isoformat())
            for task, job in zip(tasks, jobs, strict=True)
            if job is not None and job.status() == MaterializationJobStatus.SUCCEEDED
        ]
        if not done or self.epoch is None:
            return False
        args = [self.epoch, *(value for pair in done for value in pair)]
        marked = self.client.eval(
            feast_redis.MARK_IF_SAME_EPOCH, 2, self.epoch_key, self.key, *args
        )
        if not marked:
            log.warning(
                "the online store was flushed or restarted during materialization: nothing "
                "marked loaded; the next run loads the views whole"
            )
        return bool(marked)


class _Progress:
    """What a run has read from TiDB, while it runs: a bar on stderr (rows, rows/s, views done),
    then one summary line. The rows are counted as this process reads them; a forked writer
    takes a batch only when it has written the one before, so reading keeps pace with writing.
    No total is known in advance (counting the window's latest rows would cost a second read),
    so the bar shows progress over views and a rate, not a row ETA."""

    def __init__(self, views: int):
        self.views, self.rows = views, 0
        self.started = time.monotonic()
        self.lock = threading.Lock()  # feeder threads of the forked path update it at once
        self.bar = tqdm(
            total=views, unit="view", desc="materialize", mininterval=1.0, dynamic_ncols=True
        )
        self.bar.set_postfix_str("0 rows")

    def read(self, rows: int) -> None:
        with self.lock:
            self.rows += rows
            rate = self.rows / max(time.monotonic() - self.started, 1e-9)
            self.bar.set_postfix_str(f"{self.rows:,} rows, {rate:,.0f} rows/s", refresh=False)
            self.bar.update(0)  # redrawn at most once a `mininterval`

    def view_done(self) -> None:
        with self.lock:
            self.bar.update(1)

    def close(self, failed: int) -> None:
        self.bar.close()
        seconds = time.monotonic() - self.started
        summary = (
            f"materialized {self.views - failed} of {self.views} views through TiDBRedisEngine: "
            f"{self.rows:,} rows read in {seconds:.1f} s ({self.rows / max(seconds, 1e-9):,.0f} rows/s)"
        )
        print(summary, file=sys.stderr, flush=True)


class TiDBRedisEngine(LocalComputeEngine):
    """Feast's local engine, with a fast path for TiDB feature views materialized into Redis."""

    def __init__(self, batch_rows: int = 50_000, processes: int = 2, **kwargs: Any):
        kwargs.pop("type", None)
        super().__init__(**kwargs)
        self._progress: _Progress | None = None  # set while `materialize` runs
        settings = TiDBRedisEngineConfig(batch_rows=batch_rows, processes=processes)
        self.batch_rows = settings.batch_rows
        self.processes = settings.processes

    @property
    def supports_batch(self) -> bool:
        """Feast hands every view's task over in one `materialize` call."""
        return True

    def materialize(
        self,
        registry: BaseRegistry,
        tasks: MaterializationTask | list[MaterializationTask],
        **kwargs: Any,
    ) -> list[Any]:
        tasks = [tasks] if isinstance(tasks, MaterializationTask) else list(tasks)
        kwargs.pop("lineage_parent", None)
        marks = _LoadMarks.of(self)
        coverage: dict[str, int] = {}
        if marks is not None:
            tasks = [marks.whole_if_unloaded(t) for t in tasks]
            coverage = self._coverage(marks.client, tasks)
        fast = [t for t in tasks if self._fast_path(t)]
        done: dict[int, LocalMaterializationJob] = {}
        progress = self._progress = _Progress(len(fast)) if fast else None
        jobs: list[Any] = []
        try:
            if fast:
                self._sync_erased()
            if self.processes > 1 and len(fast) > 1:
                done = self._materialize_forked(registry, fast)
            for t in tasks:  # one at a time: a raise leaves the finished ones counted
                jobs.append(done.get(id(t)) or self._materialize_one(registry, t, **kwargs))
        finally:
            self._progress = None
            if progress is not None:
                finished = [*jobs, *(done.get(id(t)) for t in tasks[len(jobs) :])]
                ok = {
                    id(t)
                    for t, job in zip(tasks, finished, strict=True)
                    if job is not None and job.status() == MaterializationJobStatus.SUCCEEDED
                }
                progress.close(failed=sum(id(t) not in ok for t in fast))
        if marks is not None and marks.mark(tasks, jobs):
            succeeded = {
                task.feature_view.name
                for task, job in zip(tasks, jobs, strict=True)
                if job is not None and job.status() == MaterializationJobStatus.SUCCEEDED
            }
            key = feast_redis.progress_key(self.repo_config.project)
            for view, micros in coverage.items():
                if view in succeeded:
                    marks.client.eval(feast_redis.SET_IF_GREATER, 1, key, view, micros)
        return jobs

    def _coverage(self, client: Any, tasks: list) -> dict[str, int]:
        """Per view tagged VOUCHED_TAG: the instant (epoch micros) up to which this run vouches
        for its values, decided before anything is read, recorded only if the run succeeds.

        From the view's current progress, it advances one day at a time while the day's feature
        set partition was recorded before this run started and its as-of instant (the midnight
        after it) is one this run loads (inside the task's interval) or one already vouched for.
        It stops at the first gap: a day never computed, or computed after an earlier
        materialization had passed it (its rows never reached Redis). It never moves back.
        """
        import datetime as dt

        from providers.tidb import connection

        tagged = [t for t in tasks if feast_redis.VOUCHED_TAG in (t.feature_view.tags or {})]
        if not tagged:
            return {}
        started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with connection.connect(self.repo_config.offline_store) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT feature_set, partition_day FROM feature_run_partitions "
                "WHERE status = 'succeeded' AND finished_at < %s GROUP BY feature_set, partition_day",
                (started,),
            )
            recorded = {(name, day) for name, day in cur.fetchall()}
        key = feast_redis.progress_key(self.repo_config.project)
        names = [t.feature_view.name for t in tagged]
        current = dict(zip(names, client.hmget(key, names), strict=True))
        out = {}
        for task in tagged:
            view = task.feature_view
            feature_set = view.tags[feast_redis.VOUCHED_TAG]
            days = sorted(day for name, day in recorded if name == feature_set)
            if not days:
                continue
            mine = set(days)
            vouched = int(current.get(view.name) or 0)
            if vouched:
                instant = dt.datetime.fromtimestamp(vouched / 1e6, dt.UTC)
                day = instant.date() - dt.timedelta(days=1)  # the as-of day of that instant
            else:
                day = days[0] - dt.timedelta(days=1)
            start = task.start_time or dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
            while True:
                nxt = day + dt.timedelta(days=1)
                instant = dt.datetime.combine(nxt + dt.timedelta(days=1), dt.time(), dt.UTC)
                loaded = start <= instant <= task.end_time
                if nxt not in mine or not (loaded or instant.timestamp() * 1e6 <= vouched):
                    break
                day = nxt
            through = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
            micros = int(through.timestamp() * 1_000_000)
            if micros > vouched:
                out[view.name] = micros
        return out

    def _materialize_forked(
        self, registry: BaseRegistry, tasks: list[MaterializationTask]
    ) -> dict[int, LocalMaterializationJob]:
        """Views split over `processes` forked children, which encode the rows and write them to
        Redis (the Python-bound work). This process does the reading: connectorx's thread pool
        does not survive a fork, so a child never reads from TiDB; a thread per child hands it
        its views' rows as Arrow IPC over a pipe, a batch at a time. The registry is read here
        too, before the fork; each child reports each view's outcome back."""
        import multiprocessing
        import os

        plans = [(task, self._columns(registry, task)) for task in tasks]
        context = multiprocessing.get_context("fork")
        n = min(self.processes, len(plans))
        children = []
        parent_ends: list = []  # this process's pipe ends: a child closes the ones it inherits
        for group in (plans[k::n] for k in range(n)):
            rows_out, rows_in = context.Pipe(duplex=False)
            result_out, result_in = context.Pipe(duplex=False)
            parent_ends += [rows_in, result_out]

            def run(group=group, rows=rows_out, result=result_in, inherited=tuple(parent_ends)):
                for end in inherited:  # else a dead parent would leave this child waiting
                    end.close()
                outcome: list[str | None] = []
                for task, _ in group:
                    view_rows = _ViewRows(rows)
                    try:
                        self._write_tables(task, view_rows)
                        outcome.append(None)
                    except Exception as exc:  # reported to the parent, which fails the job
                        outcome.append(f"{type(exc).__name__}: {exc}")
                        view_rows.skip()
                result.send(outcome)
                result.close()
                os._exit(0)  # not the parent's atexit handlers

            process = context.Process(target=run, name="tidb-materialize")
            process.start()
            rows_out.close()
            result_in.close()
            children.append((process, rows_in, result_out, group))
        # Every child is forked before a reading thread starts. Threads left from earlier reads
        # (connectorx's pool) may exist; a child touches none of their state: it only decodes
        # Arrow IPC and talks to Redis.
        feeders = [
            threading.Thread(
                target=self._send_views, args=(group, rows), name="tidb-materialize-read"
            )
            for _, rows, _, group in children
        ]
        for feeder in feeders:
            feeder.start()
        jobs = {}
        for (process, _, results, group), feeder in zip(children, feeders, strict=True):
            try:
                outcome = results.recv()
            except EOFError:
                outcome = [f"the writer process died (exit code {process.exitcode})"] * len(group)
            process.join()
            feeder.join()
            for (task, _), error in zip(group, outcome, strict=True):
                jobs[id(task)] = _job(task, None if error is None else RuntimeError(error))
        return jobs

    def _send_views(self, group: list, pipe: Any) -> None:
        """Each view's rows to a child: batches, an error if the read fails, then an end mark."""
        try:
            for task, columns in group:
                try:
                    for table in self._read_view(task, columns):
                        sink = pa.BufferOutputStream()
                        with pa.ipc.new_stream(sink, table.schema) as stream:
                            stream.write_table(table)
                        pipe.send_bytes(_BATCH + sink.getvalue().to_pybytes())
                except (BrokenPipeError, ConnectionResetError):
                    raise
                except Exception as exc:
                    pipe.send_bytes(_FAILED + f"{type(exc).__name__}: {exc}".encode())
                pipe.send_bytes(_END)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the child died; its missing report fails its views
        finally:
            pipe.close()

    def _fast_path(self, task: MaterializationTask) -> bool:
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        from providers.tidb.source import TiDBSource

        view = task.feature_view
        config = self.repo_config
        return (
            (type(view) is FeatureView or _aggregated_stream_view(view))
            and isinstance(view.batch_source, TiDBSource)
            and bool(view.entity_columns)  # entityless views: Feast's dummy entity
            and isinstance(config.online_store, RedisOnlineStoreConfig)
            and config.entity_key_serialization_version >= 3
            and not getattr(view, "current_version_number", 0)
            and task.start_time is not None
        )

    def _materialize_one(
        self, registry: BaseRegistry, task: MaterializationTask, **kwargs: Any
    ) -> LocalMaterializationJob:
        if not self._fast_path(task):
            return super()._materialize_one(registry, task, **kwargs)
        try:
            self.materialize_view(registry, task)
        except Exception as exc:
            return _job(task, exc)
        return _job(task, None)

    def materialize_view(self, registry: BaseRegistry, task: MaterializationTask) -> int:
        """Pull the latest row per key in the window and write the newer ones; rows written."""
        return self._write_view(task, self._columns(registry, task))

    @staticmethod
    def _columns(registry: BaseRegistry, task: MaterializationTask) -> tuple:
        """(join key columns, feature columns, timestamp field, created field) in the source."""
        from feast.utils import _get_column_names

        view = task.feature_view
        entities = [registry.get_entity(name, task.project) for name in view.entities]
        joins, features, ts_field, created_field = _get_column_names(view, entities)
        if _aggregated_stream_view(view):
            # Feast names the aggregations' input columns; this view's batch source holds the
            # aggregated values (written by spark_jobs/stream.py and the velocity backfill).
            features = _features(view)
        return joins, features, ts_field, created_field

    def _write_view(self, task: MaterializationTask, columns: tuple) -> int:
        return self._write_tables(task, self._read_view(task, columns))

    def _read_view(self, task: MaterializationTask, columns: tuple) -> Iterator[pa.Table]:
        """The latest row per key in the task's window, `batch_rows` at a time, named and typed
        as the view declares (the source's field mapping applied), with the event time in
        microseconds (`sql.EVENT_US`)."""
        from feast.utils import _run_pyarrow_field_mapping

        from providers.tidb.source import TiDBSource

        view: FeatureView = task.feature_view
        source = view.batch_source
        assert isinstance(source, TiDBSource)  # _fast_path checked it
        cfg = self.repo_config.offline_store
        join_columns, feature_columns, ts_field, created_field = columns
        source_from = source.get_table_query_string()
        with connection.connect(cfg) as conn:
            if (
                _aggregated_stream_view(view)
                and source.table
                and not connection.table_exists(conn, source.table)
            ):
                # The stream job and the velocity backfill create a velocity view's table from its
                # declaration; until one has run there is nothing to load (the stream writes Redis
                # itself), so a daily materialize does not fail on a view nobody computed yet.
                log.warning(
                    "%s: table %s does not exist yet (no stream or velocity backfill has run); "
                    "nothing to materialize",
                    view.name,
                    source.table,
                )
                if self._progress is not None:
                    self._progress.view_done()
                return
            read = entity.source_read(
                conn,
                f"Feature view '{view.name}'",
                source_from,
                dict.fromkeys(join_columns),
                list(feature_columns),
            )
        statement = sql.latest_for_online(
            source_from,
            join_columns,
            feature_columns,
            ts_field,
            created_field,
            task.start_time,
            task.end_time,
            partition_by=read.canonical,
            read_as=read.read_as(),
        )
        dtypes = {f.name: f.dtype for f in [*view.features, *view.entity_columns]}
        _, batches = reader.read_batches(cfg, statement, self.batch_rows)
        progress = self._progress
        for raw in batches:
            table = pa.Table.from_batches([raw])
            if source.field_mapping:
                table = _run_pyarrow_field_mapping(table, source.field_mapping)
            if progress is not None:
                progress.read(table.num_rows)
            yield declared.conform(table, dtypes)
        if progress is not None:
            progress.view_done()

    def _sync_erased(self) -> None:
        """Add what `subject_tombstones` holds to the online Redis's mirror of it (it may have
        restarted empty): every materialization repairs it (providers/erasure.py)."""
        from providers import erasure

        client = self.online_store._get_client(self.repo_config.online_store)  # type: ignore[attr-defined]
        erasure.sync_mirror(self.repo_config.offline_store, client, self.repo_config.project)

    def _without_erased(self, client: Any, batch: pa.Table, join_keys: list) -> pa.Table:
        """`batch` without erased subjects' rows, checked against the mirror per batch: a
        subject erased while this run reads is not written after its erasure."""
        from providers import erasure

        if erasure.SUBJECT_KEY not in {k for k, _ in join_keys}:
            return batch
        project = self.repo_config.project
        try:
            erased = erasure.erased_members(client, project)
        except erasure.MirrorMissing:
            self._sync_erased()
            erased = erasure.erased_members(client, project)
        if not erased:
            return batch
        column = batch.column(erasure.SUBJECT_KEY).cast(pa.int64())
        keys = pa.array(sorted(erased), pa.int64())
        return batch.filter(pc.invert(pc.is_in(column, value_set=keys)))

    def _write_tables(self, task: MaterializationTask, tables: Iterable[pa.Table]) -> int:
        """Write the newer of `tables`' rows to Redis in Feast's format; rows written."""
        from feast.infra.online_stores.redis import _versioned_fv_name

        view: FeatureView = task.feature_view
        config = self.repo_config
        name = _versioned_fv_name(view, config)
        features = [(f.name, f.dtype.to_value_type()) for f in _features(view, fields=True)]
        ts_field_key, fields = feast_redis.view_fields(name, [f for f, _ in features])
        join_keys = [(c.name, c.dtype.to_value_type()) for c in view.entity_columns]
        online = config.online_store
        client = self.online_store._get_client(online)  # type: ignore[attr-defined]
        # One script call per SCRIPT_KEYS keys (compare and write inside Redis); a cluster's keys
        # live in different slots and key TTLs need an EXPIRE per key: those take two pipelines.
        scripted = online.redis_type == "redis" and not online.key_ttl_seconds
        written, rows = 0, 0
        for batch in tables:
            rows += batch.num_rows
            batch = self._without_erased(client, batch, join_keys)
            redis_keys = feast_redis.entity_keys(
                [batch.column(k) for k, _ in join_keys],
                join_keys,
                config.project,
                config.entity_key_serialization_version,
            )
            stamps, nanos = feast_redis.timestamp_bytes(batch.column(sql.EVENT_US))
            values = [feast_redis.value_bytes(batch.column(f), vt) for f, vt in features]
            if scripted and nanos and min(nanos) >= 0:
                written += self._write_scripted(
                    client, redis_keys, ts_field_key, fields, stamps, values
                )
            else:
                written += self._write_pipelined(
                    client,
                    redis_keys,
                    ts_field_key,
                    fields,
                    stamps,
                    nanos,
                    values,
                    online.key_ttl_seconds,
                )
        log.info("materialized %s: %d of %d rows written", view.name, written, rows)
        return written

    def _write_scripted(
        self,
        client: Any,
        keys: list[bytes],
        ts_field: str,
        fields: list[bytes],
        stamps: list[bytes],
        values: list[list[bytes]],
    ) -> int:
        """Compare-and-write SCRIPT_KEYS keys per call of WRITE_NEWER (one round trip each)."""
        return feast_redis.write_scripted(client, keys, ts_field, fields, stamps, values)

    @staticmethod
    def _write_pipelined(
        client: Any,
        keys: list[bytes],
        ts_field: str,
        fields: list[bytes],
        stamps: list[bytes],
        nanos: list[int],
        values: list[list[bytes]],
        ttl_seconds: int | None = None,
    ) -> int:
        """Feast's way: one pipeline reads the stored event times, one writes the newer rows."""
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, ts_field)
            stored = pipe.execute()
        latest: dict[bytes, int] = {}
        written = 0
        with client.pipeline(transaction=False) as pipe:
            for i, key in enumerate(keys):
                seen = max(feast_redis.stored_nanos(stored[i]), latest.get(key, 0))
                if seen and nanos[i] <= seen:  # Feast's rule: only a later event replaces
                    continue
                latest[key] = nanos[i]
                mapping: dict[str | bytes, bytes] = {ts_field: stamps[i]}
                mapping.update(zip(fields, (col[i] for col in values), strict=True))
                pipe.hset(key, mapping=mapping)
                if ttl_seconds:
                    pipe.expire(key, ttl_seconds)
                written += 1
            pipe.execute()
        return written
