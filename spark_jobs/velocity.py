"""The velocity views as the registry declares them, their tables, and the per-key computation
both engines run (the stream job's state processor and the backfill's grouped map).

Nothing here lists features: `load_views` reads every stream feature view with aggregations from
Feast's registry and checks it can be computed as declared (its stream is an event stream of
providers/events.py, its batch source a TiDB table, each aggregation named, in the schema, with
the type its function returns). The table of a view is created from the same declaration, and
gains a column when an aggregation is added (a backfill then fills its history).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd

from providers.events import EventKind, kind_of_stream
from providers.tidb import sql
from spark_jobs.windows import Event, KeyWindows, WindowAgg, WindowSpecError

# Feast type name -> (SQL column type, Python conversion of an engine value)
_TYPES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "Int64": ("BIGINT", int),
    "Float64": ("DOUBLE", float),
    "String": ("VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin", str),
}
_RESULT_TYPES = {
    "count": {"Int64"},
    "count_distinct": {"Int64"},
    "sum": {"Float64"},
    "mean": {"Float64"},
    "min": {"Float64"},
    "max": {"Float64"},
    "last": set(_TYPES),
}
VERSION_COLUMNS = ("event_ts", "created_ts", "run_id", "commit_id")


@dataclass(frozen=True)
class VelocityView:
    name: str
    kind: EventKind
    table: str
    join_key: str
    aggs: tuple[WindowAgg, ...]
    types: tuple[str, ...]  # Feast type name of each aggregation's feature
    udf: Callable[[pd.DataFrame], pd.DataFrame] | None
    definition_hash: str

    @property
    def features(self) -> list[str]:
        return [a.feature for a in self.aggs]

    @property
    def columns(self) -> list[str]:
        """The table's columns in order: key, features, version columns."""
        return [self.join_key, *self.features, *VERSION_COLUMNS]


def _error(view: str, message: str) -> WindowSpecError:
    return WindowSpecError(f"stream feature view {view!r}: {message}")


def to_velocity_view(sfv) -> VelocityView:
    """One registry stream feature view, checked (WindowSpecError says what to change)."""
    from feast.data_source import KafkaSource

    from providers.tidb import TiDBSource

    name = sfv.name
    source = sfv.stream_source
    if not isinstance(source, KafkaSource):
        raise _error(name, "its source must be a KafkaSource naming an event stream (topic)")
    try:
        kind = kind_of_stream(source.kafka_options.topic)
    except ValueError as exc:
        raise _error(name, str(exc)) from None
    batch = sfv.batch_source
    if not isinstance(batch, TiDBSource) or not batch.table:
        raise _error(name, "its batch source must be a TiDBSource with a table (the rows written)")
    if len(sfv.entity_columns) != 1 or sfv.entity_columns[0].name not in kind.model.model_fields:
        raise _error(name, f"needs one entity whose join key is a field of {kind.name} events")
    join_key = sfv.entity_columns[0].name
    # Feast 0.67 lists a stream view's entity columns among its features once read back.
    schema = {f.name: str(f.dtype) for f in sfv.features if f.name != join_key}
    aggs, types = [], []
    for agg in sfv.aggregations:
        if not agg.name:
            raise _error(name, f"name every aggregation (the {agg.function} of {agg.column})")
        if agg.time_window is None:
            raise _error(name, f"aggregation {agg.name!r} has no time_window")
        declared = schema.get(agg.name)
        if declared not in _RESULT_TYPES.get(agg.function, {declared}):
            raise _error(
                name,
                f"feature {agg.name!r} is declared {declared}; {agg.function} returns "
                f"{' or '.join(sorted(_RESULT_TYPES[agg.function]))}",
            )
        if declared not in _TYPES:
            raise _error(name, f"feature {agg.name!r}: type {declared} is not supported")
        aggs.append(
            WindowAgg(
                agg.name,
                agg.column,
                agg.function,
                _us(agg.time_window),
                _us(agg.slide_interval or agg.time_window),
            )
        )
        types.append(declared)
    if set(schema) != {a.feature for a in aggs}:
        raise _error(name, "its schema must list exactly the aggregations' names")
    definition = json.dumps(
        [kind.stream, batch.table, join_key, [vars(a) for a in aggs], types, sfv.udf_string or ""]
    )
    return VelocityView(
        name=name,
        kind=kind,
        table=batch.table,
        join_key=join_key,
        aggs=tuple(aggs),
        types=tuple(types),
        udf=sfv.udf,
        definition_hash=hashlib.sha256(definition.encode()).hexdigest()[:16],
    )


def _us(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def load_views(store, names: Iterable[str] | None = None) -> list[VelocityView]:
    """The registry's stream feature views with aggregations (all, or those named)."""
    views = {
        v.name: v for v in store.list_stream_feature_views(allow_cache=False) if v.aggregations
    }
    wanted = list(names) if names else sorted(views)
    missing = [n for n in wanted if n not in views]
    if missing:
        raise WindowSpecError(
            f"no stream feature view with aggregations named {missing}; the registry has "
            f"{sorted(views)} (run `feast apply`)"
        )
    return [to_velocity_view(views[n]) for n in wanted]


# --- tables ---------------------------------------------------------------------------------------


def create_table_sql(view: VelocityView) -> str:
    q = sql.quote_identifier
    features = ",\n".join(
        f"  {q(f)} {_TYPES[t][0]} NULL" for f, t in zip(view.features, view.types, strict=True)
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {sql.quote_table(view.table)} (\n"
        f"  {q(view.join_key)} BIGINT NOT NULL,\n{features},\n"
        "  event_ts DATETIME(6) NOT NULL COMMENT 'the change point this value holds from',\n"
        "  created_ts DATETIME(6) NOT NULL COMMENT 'when this version became known',\n"
        "  run_id VARCHAR(36) NOT NULL,\n"
        "  commit_id BIGINT NOT NULL COMMENT 'micro-batch (stream) or chunk (backfill)',\n"
        f"  KEY idx_key_ts ({q(view.join_key)}, event_ts, created_ts),\n"
        "  KEY idx_run (run_id, commit_id)\n)"
    )


def ensure_table(conn, view: VelocityView) -> None:
    """Create the view's table, or add the columns of aggregations declared since."""
    from providers.tidb import connection

    with conn.cursor() as cur:
        cur.execute(create_table_sql(view))
    present = connection.columns_info(conn, view.table)
    for feature, type_name in zip(view.features, view.types, strict=True):
        if feature not in present:
            with conn.cursor() as cur:
                cur.execute(
                    f"ALTER TABLE {sql.quote_table(view.table)} ADD COLUMN "
                    f"{sql.quote_identifier(feature)} {_TYPES[type_name][0]} NULL"
                )
    conn.commit()


# --- the per-key computation both engines share ---------------------------------------------------


def _scalar(value: Any) -> Any:
    """A JSON scalar for the window state (NumPy scalars, decimals and NaN normalized)."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and value != value:
        return None
    return value


def prepared(view: VelocityView, frame: pd.DataFrame, carry: list[str] = ()) -> pd.DataFrame:
    """Events as both engines aggregate them: the view's udf applied (it may add columns and drop
    rows), then per event its key, instant (`event_us`), id and the JSON of the columns its
    aggregations read. `carry`: columns passed through the udf untouched (the stream's broker
    time). One function for the stream and the backfill, so they cannot prepare events apart."""
    if view.udf is not None:
        frame = view.udf(frame)
    columns = sorted({a.column for a in view.aggs})
    missing = [c for c in [*columns, *carry] if c not in frame.columns]
    if missing:
        raise WindowSpecError(
            f"stream feature view {view.name!r} needs columns {missing}, which neither the "
            f"{view.kind.name} event nor the view's udf provides (a udf must keep the columns "
            "it is given)"
        )
    stamps = pd.to_datetime(frame["event_ts"], utc=True).dt.tz_convert(None)
    values = {c: [_scalar(v) for v in frame[c].tolist()] for c in columns}
    out = pd.DataFrame(
        {
            "key": frame[view.join_key].astype("int64").to_numpy(),
            "event_ts": stamps.to_numpy(dtype="datetime64[ns]"),
            "event_us": (stamps.astype("int64") // 1000).to_numpy(),
            "event_id": frame["event_id"].astype("int64").to_numpy(),
            "values": [json.dumps({c: values[c][i] for c in columns}) for i in range(len(frame))],
        }
    )
    for column in carry:
        out[column] = frame[column].to_numpy()
    return out


def events_of(view: VelocityView, frame: pd.DataFrame) -> list[Event]:
    """The window engine's events from a frame of event fields (through `prepared`)."""
    ready = prepared(view, frame)
    return [
        Event(int(ts), int(event_id), json.loads(values))
        for ts, event_id, values in zip(
            ready["event_us"].tolist(),
            ready["event_id"].tolist(),
            ready["values"].tolist(),
            strict=True,
        )
    ]


def typed_rows(
    view: VelocityView, key: int, rows: list[tuple[int, list[Any]]]
) -> Iterator[dict[str, Any]]:
    """Engine rows -> table rows (declared types; `event_ts` as UTC datetimes)."""
    converters = [_TYPES[t][1] for t in view.types]
    epoch = dt.datetime(1970, 1, 1)
    for point, values in rows:
        row: dict[str, Any] = {view.join_key: key}
        for feature, convert, value in zip(view.features, converters, values, strict=True):
            row[feature] = None if value is None else convert(value)
        row["event_ts"] = epoch + dt.timedelta(microseconds=point)
        yield row


BACKFILL_SLICE = 256  # events per step: the engine's pending events stay few


def backfill_key(
    view: VelocityView, key: int, frame: pd.DataFrame, until_us: int
) -> list[dict[str, Any]]:
    """Every change point of one key up to `until_us`, from its whole history, fed to the engine
    in time order a slice at a time with the watermark at each slice's start (as the stream would
    see it; all at once would keep every event pending and cost quadratic time)."""
    state = KeyWindows(view.aggs)
    events = sorted(events_of(view, frame), key=lambda e: (e.ts, e.event_id))
    rows: dict[int, list[Any]] = {}
    for start in range(0, len(events), BACKFILL_SLICE):
        part = events[start : start + BACKFILL_SLICE]
        rows.update(state.advance(part, watermark_us=part[0].ts, until_us=until_us))
    rows.update(state.advance([], watermark_us=until_us, until_us=until_us))
    return list(typed_rows(view, key, sorted(rows.items())))


def decode_frame(view: VelocityView, messages: pd.Series, keep_index: bool = False) -> pd.DataFrame:
    """Broker messages of the view's event kind as a frame of event fields (the backfill builds
    the same frame from the raw table). Messages that are not valid events are skipped here; the
    landing query records them in `dead_letter_events`. `keep_index`: rows keep the index of
    their message."""
    from pydantic import ValidationError

    from providers.events import decode

    records, index = [], []
    for position, message in messages.items():
        if message is None:
            continue
        try:
            records.append(decode(view.kind, message).model_dump())
        except ValidationError:
            continue
        index.append(position)
    frame = pd.DataFrame(records, columns=list(view.kind.model.model_fields))
    if keep_index:
        frame.index = pd.Index(index)
    return frame


def raw_frame(view: VelocityView, frame: pd.DataFrame) -> pd.DataFrame:
    """Raw table rows as the frame `decode_frame` gives (the id column named `event_id`)."""
    return frame.rename(columns={view.kind.id_column: "event_id"})[
        list(view.kind.model.model_fields)
    ]
