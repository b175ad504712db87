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
- the views are written by `processes` forked processes at once (the work is Python-bound).

Anything else (a non-TiDB source, another online store, a batch feature view with a transform)
is handed to Feast's own local engine. tests/integration/test_materialization_engine.py holds
the Redis contents equal to the local engine's, key by key and byte by byte.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any, Literal

import pyarrow as pa
from feast import FeatureView
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.compute import LocalComputeEngine
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.infra.registry.base_registry import BaseRegistry
from feast.protos.feast.types.Value_pb2 import Value
from feast.repo_config import FeastConfigBaseModel
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import Field, StrictInt

from providers.tidb import connection, declared, entity, keys, reader, sql

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


# ValueProto field setters for scalar Arrow columns (Feast's types, by ValueType).
_SCALAR = {
    ValueType.INT64: "int64_val",
    ValueType.INT32: "int32_val",
    ValueType.DOUBLE: "double_val",
    ValueType.FLOAT: "float_val",
    ValueType.STRING: "string_val",
    ValueType.BOOL: "bool_val",
}
_KEY_PACK = {ValueType.INT64: "<q", ValueType.INT32: "<i"}


def value_bytes(column: pa.Array | pa.ChunkedArray, value_type: ValueType) -> list[bytes]:
    """Serialized ValueProto per value, as Feast stores them (a null is an empty ValueProto)."""
    field = _SCALAR.get(value_type)
    if field is None:  # lists, bytes, timestamps...: Feast's own conversion
        from feast.type_map import python_values_to_proto_values

        protos = python_values_to_proto_values(column.to_pylist(), value_type)
        return [p.SerializeToString() for p in protos]
    empty = b""
    values = column.to_pylist()
    if value_type == ValueType.BOOL:
        return [empty if v is None else Value(bool_val=bool(v)).SerializeToString() for v in values]
    if value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        # NaN is stored as Feast stores it: an empty value (python_values_to_proto_values).
        return [
            empty if v is None or v != v else Value(**{field: v}).SerializeToString()
            for v in values
        ]
    return [empty if v is None else Value(**{field: v}).SerializeToString() for v in values]


def entity_keys(
    columns: Sequence[pa.Array | pa.ChunkedArray],
    join_keys: Sequence[tuple[str, ValueType]],
    project: str,
    version: int,
) -> list[bytes]:
    """Feast's Redis keys (serialize_entity_key + project) for every row."""
    suffix = project.encode("utf-8")
    if version >= 3 and len(join_keys) == 1:
        name, value_type = join_keys[0]
        encoded = name.encode("utf8")
        prefix = struct.pack("<III", 1, ValueType.STRING.value, len(encoded)) + encoded
        values = columns[0].to_pylist()
        if value_type in _KEY_PACK and None not in values:
            fmt = _KEY_PACK[value_type]
            head = prefix + struct.pack("<II", value_type.value, struct.calcsize(fmt))
            return [head + struct.pack(fmt, v) + suffix for v in values]
        if value_type == ValueType.STRING and None not in values:
            out = []
            for v in values:
                raw = v.encode("utf8")
                out.append(
                    prefix + struct.pack("<II", ValueType.STRING.value, len(raw)) + raw + suffix
                )
            return out
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.type_map import python_values_to_proto_values

    names = [name for name, _ in join_keys]
    protos = [
        python_values_to_proto_values(col.to_pylist(), vt)
        for col, (_, vt) in zip(columns, join_keys, strict=True)
    ]
    return [
        serialize_entity_key(EntityKey(join_keys=names, entity_values=list(row)), version) + suffix
        for row in zip(*protos, strict=True)
    ]


def timestamp_bytes(micros: pa.Array | pa.ChunkedArray) -> tuple[list[bytes], list[int]]:
    """Feast's stored event time (Timestamp proto) and the same instant in ns, per row, from the
    event times in microseconds since the epoch."""
    out, nanos = [], []
    for us in micros.to_pylist():
        seconds, rest = divmod(us, 1_000_000)
        out.append(Timestamp(seconds=seconds, nanos=rest * 1000).SerializeToString())
        nanos.append(us * 1000)
    return out, nanos


SCRIPT_KEYS = 500  # keys per script call: Redis runs a call whole, ~2-3 ms at this size

# KEYS: the entity keys. ARGV: ts field, n, the n field hashes, then per key its Timestamp proto
# bytes and n value bytes. Writes a key's row only if its event time is later than the stored
# one (Feast's rule), comparing (seconds, nanos) decoded from the Timestamp protos (varints;
# event times before 1970 take the pipelined path). Returns how many keys were written.
WRITE_NEWER = """
local function stamp(b)
  local s, n, i = 0, 0, 1
  while i <= #b do
    local tag = string.byte(b, i)
    i = i + 1
    local v, mul, c = 0, 1, 128
    while c >= 128 do
      c = string.byte(b, i)
      i = i + 1
      v = v + (c % 128) * mul
      mul = mul * 128
    end
    if tag == 8 then s = v elseif tag == 16 then n = v end
  end
  return s, n
end
local ts_field = ARGV[1]
local nf = tonumber(ARGV[2])
local per = nf + 1
local base = 2 + nf
local written = 0
for k = 1, #KEYS do
  local o = base + (k - 1) * per
  local new_s, new_n = stamp(ARGV[o + 1])
  local old = redis.call('HGET', KEYS[k], ts_field)
  local newer = true
  if old and #old > 0 then
    local old_s, old_n = stamp(old)
    if (old_s > 0 or old_n > 0) and (old_s > new_s or (old_s == new_s and old_n >= new_n)) then
      newer = false
    end
  end
  if newer then
    local args = {ts_field, ARGV[o + 1]}
    for j = 1, nf do
      args[#args + 1] = ARGV[2 + j]
      args[#args + 1] = ARGV[o + 1 + j]
    end
    redis.call('HSET', KEYS[k], unpack(args))
    written = written + 1
  end
end
return written
"""


def _stored_nanos(raw: bytes | None) -> int:
    if not raw:
        return 0
    stamp = Timestamp()
    stamp.ParseFromString(raw)
    return stamp.seconds * 1_000_000_000 + stamp.nanos


class TiDBRedisEngine(LocalComputeEngine):
    """Feast's local engine, with a fast path for TiDB feature views materialized into Redis."""

    def __init__(self, batch_rows: int = 50_000, processes: int = 2, **kwargs: Any):
        kwargs.pop("type", None)
        super().__init__(**kwargs)
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
        fast = [t for t in tasks if self._fast_path(t)]
        done: dict[int, LocalMaterializationJob] = {}
        if self.processes > 1 and len(fast) > 1:
            done = self._materialize_forked(registry, fast)
        return [done.get(id(t)) or self._materialize_one(registry, t, **kwargs) for t in tasks]

    def _materialize_forked(
        self, registry: BaseRegistry, tasks: list[MaterializationTask]
    ) -> dict[int, LocalMaterializationJob]:
        """Views split over `processes` forked children. The registry is read here, before the
        fork; each child opens its own TiDB and Redis connections and reports through a pipe."""
        import multiprocessing
        import os

        plans = [(task, self._columns(registry, task)) for task in tasks]
        context = multiprocessing.get_context("fork")
        n = min(self.processes, len(plans))
        children = []
        for group in (plans[k::n] for k in range(n)):
            reader, writer = context.Pipe(duplex=False)

            def run(group=group, writer=writer) -> None:
                outcome: list[str | None] = []
                for task, columns in group:
                    try:
                        self._write_view(task, columns)
                        outcome.append(None)
                    except Exception as exc:  # reported to the parent, which fails the job
                        outcome.append(f"{type(exc).__name__}: {exc}")
                writer.send(outcome)
                writer.close()
                os._exit(0)  # not the parent's atexit handlers

            process = context.Process(target=run, name="tidb-materialize")
            process.start()
            writer.close()
            children.append((process, reader, group))
        jobs = {}
        for process, reader, group in children:
            try:
                outcome = reader.recv()
            except EOFError:
                outcome = [f"the writer process died (exit code {process.exitcode})"] * len(group)
            process.join()
            for (task, _), error in zip(group, outcome, strict=True):
                job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
                jobs[id(task)] = (
                    LocalMaterializationJob(job_id, MaterializationJobStatus.SUCCEEDED)
                    if error is None
                    else LocalMaterializationJob(
                        job_id, MaterializationJobStatus.ERROR, error=RuntimeError(error)
                    )
                )
        return jobs

    def _fast_path(self, task: MaterializationTask) -> bool:
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig

        from providers.tidb.source import TiDBSource

        view = task.feature_view
        config = self.repo_config
        return (
            type(view) is FeatureView
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
        job_id = f"{task.feature_view.name}-{task.start_time}-{task.end_time}"
        try:
            self.materialize_view(registry, task)
        except Exception as exc:
            return LocalMaterializationJob(job_id, MaterializationJobStatus.ERROR, error=exc)
        return LocalMaterializationJob(job_id, MaterializationJobStatus.SUCCEEDED)

    def materialize_view(self, registry: BaseRegistry, task: MaterializationTask) -> int:
        """Pull the latest row per key in the window and write the newer ones; rows written."""
        return self._write_view(task, self._columns(registry, task))

    @staticmethod
    def _columns(registry: BaseRegistry, task: MaterializationTask) -> tuple:
        """(join key columns, feature columns, timestamp field, created field) in the source."""
        from feast.utils import _get_column_names

        view = task.feature_view
        entities = [registry.get_entity(name, task.project) for name in view.entities]
        return _get_column_names(view, entities)

    def _write_view(self, task: MaterializationTask, columns: tuple) -> int:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import _versioned_fv_name
        from feast.utils import _run_pyarrow_field_mapping

        from providers.tidb.source import TiDBSource

        view: FeatureView = task.feature_view
        source = view.batch_source
        assert isinstance(source, TiDBSource)  # _fast_path checked it
        config = self.repo_config
        cfg = config.offline_store
        join_columns, feature_columns, ts_field, created_field = columns
        source_from = source.get_table_query_string()
        with connection.connect(cfg) as conn:
            probed = entity.probe_source(
                conn,
                f"Feature view '{view.name}'",
                source_from,
                [*join_columns, *feature_columns],
                join_columns,
            )
        statement = sql.latest_for_online(
            source_from,
            join_columns,
            feature_columns,
            ts_field,
            created_field,
            task.start_time,
            task.end_time,
            partition_by={
                k: keys.canonical(
                    probed[k], keys.source_kind(probed[k]), f"s.{sql.quote_identifier(k)}"
                )
                for k in join_columns
            },
            read_as={
                c: declared.read_expression(probed[c], f"s.{sql.quote_identifier(c)}")
                for c in feature_columns
            },
        )
        # Values typed as the view declares them (the names after the source's field mapping).
        dtypes = {f.name: f.dtype for f in [*view.features, *view.entity_columns]}
        _, batches = reader.read_batches(cfg, statement, self.batch_rows)
        name = _versioned_fv_name(view, config)
        features = [(f.name, f.dtype.to_value_type()) for f in view.features]
        fields = [_mmh3(f"{name}:{f}") for f, _ in features]
        ts_field_key = f"_ts:{name}"
        join_keys = [(c.name, c.dtype.to_value_type()) for c in view.entity_columns]
        online = config.online_store
        client = self.online_store._get_client(online)  # type: ignore[attr-defined]
        # One script call per SCRIPT_KEYS keys (compare and write inside Redis); a cluster's keys
        # live in different slots and key TTLs need an EXPIRE per key: those take two pipelines.
        scripted = online.redis_type == "redis" and not online.key_ttl_seconds
        written, rows = 0, 0
        for raw in batches:
            table = pa.Table.from_batches([raw])
            if source.field_mapping:
                table = _run_pyarrow_field_mapping(table, source.field_mapping)
            batch = declared.conform(table, dtypes)
            rows += batch.num_rows
            redis_keys = entity_keys(
                [batch.column(k) for k, _ in join_keys],
                join_keys,
                config.project,
                config.entity_key_serialization_version,
            )
            stamps, nanos = timestamp_bytes(batch.column(sql.EVENT_US))
            values = [value_bytes(batch.column(f), vt) for f, vt in features]
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
        script = client.register_script(WRITE_NEWER)
        written = 0
        for start in range(0, len(keys), SCRIPT_KEYS):
            end = min(start + SCRIPT_KEYS, len(keys))
            args: list[Any] = [ts_field, len(fields), *fields]
            for i in range(start, end):
                args.append(stamps[i])
                args.extend(col[i] for col in values)
            written += int(script(keys=keys[start:end], args=args))
        return written

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
                seen = max(_stored_nanos(stored[i]), latest.get(key, 0))
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
