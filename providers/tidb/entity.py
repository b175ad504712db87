"""Entity rows for `get_historical_features`: put them in a scratch table the join can read.

Three inputs, one shape: a scratch table `_feast_entity_<hex>` holding a row id, the join keys
and the event timestamp (DATETIME(6), UTC), created before the query and dropped after it.

- a pandas DataFrame: only the join keys and the timestamp are uploaded, in bounded multi-row
  INSERT batches; the caller's other columns never leave the process and are re-attached to the
  result by row id, with their dtypes intact;
- a SQL query: copied server-side with INSERT ... SELECT (TiDB has no CREATE TABLE ... SELECT);
- no entity rows (start_date/end_date): the distinct (join keys, event time) of every requested
  view's rows in the range.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.feature_view import DUMMY_ENTITY_ID, FeatureView
from feast.infra.offline_stores.offline_utils import (
    DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL,
)

from providers.tidb import connection, sql, types
from providers.tidb.errors import InvalidEntityDataFrame

Step = Callable[..., None]


@dataclass
class ViewSpec:
    """One requested feature view, resolved to source columns and output names."""

    name: str
    source_from: str
    join_keys: list[tuple[str, str]]  # (source column, entity column)
    features: list[tuple[str, str]]  # (source column, output column)
    timestamp_field: str
    created_timestamp_column: str | None
    ttl: dt.timedelta | None
    json_outputs: set[str] = field(default_factory=set)

    def to_view_query(
        self,
        min_ts: dt.datetime | None,
        max_ts: dt.datetime | None,
        knowledge_time: dt.datetime | None = None,
    ) -> sql.ViewQuery:
        ttl_us = int(self.ttl / dt.timedelta(microseconds=1)) if self.ttl else 0
        lower = None
        if (
            self.ttl
            and min_ts is not None
            and min_ts - dt.datetime.min.replace(tzinfo=min_ts.tzinfo) > self.ttl
        ):
            lower = min_ts - self.ttl  # else the TTL reaches before year 1: no lower bound
        return sql.ViewQuery(
            name=self.name,
            source_from=self.source_from,
            join_keys=self.join_keys,
            features=self.features,
            timestamp_field=self.timestamp_field,
            created_timestamp_column=self.created_timestamp_column or None,
            ttl_us=ttl_us,
            min_event_timestamp=lower,
            max_event_timestamp=max_ts,
            knowledge_time=knowledge_time,
        )


def view_spec(fv: FeatureView, features: list[str], full_feature_names: bool) -> ViewSpec:
    source = fv.batch_source
    assert source is not None
    reverse = {v: k for k, v in source.field_mapping.items()}
    join_keys = [
        (reverse.get(col.name, col.name), fv.projection.join_key_map.get(col.name, col.name))
        for col in fv.entity_columns
        if col.name != DUMMY_ENTITY_ID
    ]
    prefix = fv.projection.name_to_use()
    outputs = [(reverse.get(f, f), f"{prefix}__{f}" if full_feature_names else f) for f in features]
    dtypes = {f.name: f.dtype for f in fv.features}
    json_outputs = {
        out
        for (_, out), feat in zip(outputs, features, strict=True)
        if feat in dtypes and dtypes[feat].to_value_type().name.endswith(("_LIST", "_SET"))
    }
    return ViewSpec(
        name=prefix,
        source_from=source.get_table_query_string(),
        join_keys=join_keys,
        features=outputs,
        timestamp_field=reverse.get(source.timestamp_field, source.timestamp_field),
        created_timestamp_column=reverse.get(
            source.created_timestamp_column, source.created_timestamp_column
        ),
        ttl=fv.ttl or None,
        json_outputs=json_outputs,
    )


def required_join_keys(specs: list[ViewSpec]) -> list[str]:
    return list(dict.fromkeys(ec for spec in specs for _, ec in spec.join_keys))


@dataclass
class EntityRows:
    """The scratch table of entity rows, and how to make, drop and finish with it."""

    table: str
    timestamp_column: str
    entity_columns: list[str]  # the caller's entity columns, in order
    select_columns: list[str]  # columns the join returns from the scratch table
    min_ts: dt.datetime | None
    max_ts: dt.datetime | None
    create: Step
    drop: Step
    finish: Callable[[pa.Table], pa.Table] | None = None
    prune: bool = True  # whether min_ts/max_ts may bound the scan of each source


def scratch_table_name() -> str:
    return f"_feast_entity_{uuid.uuid4().hex}"


def _drop(table: str) -> Step:
    def drop(conn) -> None:
        connection.execute(conn, sql.drop_table(table))

    return drop


def infer_timestamp_column(columns: dict[str, bool]) -> str:
    """`event_timestamp`, else the only timestamp-typed column. `columns`: name -> is timestamp."""
    if DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL in columns:
        return DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
    candidates = [name for name, is_ts in columns.items() if is_ts]
    if len(candidates) == 1:
        return candidates[0]
    raise InvalidEntityDataFrame(
        f"Cannot tell which entity column is the event timestamp (candidates: {candidates or 'none'}). "
        f"Name it '{DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL}'."
    )


def _missing_keys(available, required: list[str]) -> None:
    missing = [k for k in required if k not in available]
    if missing:
        raise InvalidEntityDataFrame(
            f"The entity rows lack the join key column(s) {missing} that the requested feature views "
            f"need. Columns given: {list(available)}."
        )


def _utc_timestamps(df: pd.DataFrame, column: str) -> pd.Series:
    values = df[column]
    try:
        if pd.api.types.is_datetime64_any_dtype(values):
            ts = (
                values.dt.tz_localize("UTC")
                if values.dt.tz is None
                else values.dt.tz_convert("UTC")
            )
        else:
            ts = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise InvalidEntityDataFrame(
            f"Entity column '{column}' must hold timestamps (naive values are read as UTC): {exc}"
        ) from exc
    if ts.isna().any():
        bad = list(np.flatnonzero(ts.isna().to_numpy())[:5])
        raise InvalidEntityDataFrame(
            f"Entity column '{column}' has empty timestamps at rows {bad}."
        )
    return ts.astype("datetime64[us, UTC]")


def from_dataframe(cfg, entity_df: pd.DataFrame, join_keys: list[str]) -> EntityRows:
    if entity_df.columns.duplicated().any():
        raise InvalidEntityDataFrame(
            f"Entity dataframe has duplicate column names: {list(entity_df.columns)}."
        )
    is_ts = {str(c): pd.api.types.is_datetime64_any_dtype(entity_df[c]) for c in entity_df.columns}
    ts_col = infer_timestamp_column(is_ts)
    _missing_keys(entity_df.columns, join_keys)
    timestamps = _utc_timestamps(entity_df, ts_col)

    upload = pd.DataFrame({sql.ROW_ID: np.arange(len(entity_df), dtype="int64")})
    for key in join_keys:
        upload[key] = entity_df[key].to_numpy()
    upload[ts_col] = timestamps.to_numpy()
    try:
        upload_table = pa.Table.from_pandas(upload, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidEntityDataFrame(
            f"Entity join keys must each hold one type of value: {exc}"
        ) from exc

    # The caller's columns come back as given, with the timestamp column in UTC.
    original = entity_df.reset_index(drop=True).copy()
    original[ts_col] = timestamps.reset_index(drop=True)
    table = scratch_table_name()
    columns = [(sql.ROW_ID, "BIGINT NOT NULL PRIMARY KEY")]
    columns += [
        (k, types.ddl_for_arrow(upload_table.schema.field(k).type, key=True)) for k in join_keys
    ]
    columns += [(ts_col, "DATETIME(6) NOT NULL")]

    def create(conn) -> None:
        connection.execute(conn, sql.create_table(table, columns))
        connection.insert_arrow(conn, table, upload_table, cfg.write_batch_rows)

    def finish(result: pa.Table) -> pa.Table:
        if result.num_rows != len(original):
            raise AssertionError(
                f"point-in-time join returned {result.num_rows} rows for {len(original)} entity rows"
            )
        out = pa.Table.from_pandas(original, preserve_index=False)
        for name in result.column_names:
            out = out.append_column(name, result.column(name))
        return out

    empty = len(entity_df) == 0
    return EntityRows(
        table=table,
        timestamp_column=ts_col,
        entity_columns=[str(c) for c in entity_df.columns],
        select_columns=[sql.ROW_ID],
        min_ts=None if empty else timestamps.min().to_pydatetime(),
        max_ts=None if empty else timestamps.max().to_pydatetime(),
        create=create,
        drop=_drop(table),
        finish=finish,
    )


def from_query(cfg, query: str, join_keys: list[str]) -> EntityRows:
    """Entity rows from a SQL query, copied into the scratch table inside the database."""
    source_from = sql.from_expression(None, query)
    with connection.connect(cfg) as conn:
        try:
            fields = connection.describe(conn, source_from)
        except Exception as exc:
            raise InvalidEntityDataFrame(f"The entity SQL query does not run: {exc}") from exc
        names = [f.name for f in fields]
        is_ts = {f.name: pa.types.is_timestamp(types.arrow_type_of(f)) for f in fields}
        ts_col = infer_timestamp_column(is_ts)
        if not is_ts[ts_col]:
            raise InvalidEntityDataFrame(
                f"Entity query column '{ts_col}' must be DATETIME or TIMESTAMP."
            )
        _missing_keys(names, join_keys)
        lo, hi = connection.fetch_one(conn, sql.min_max_of_query(source_from, ts_col)) or (
            None,
            None,
        )
    table = scratch_table_name()
    columns = [(f.name, types.ddl_for_field(f)) for f in fields]

    def create(conn) -> None:
        connection.execute(conn, sql.create_table(table, columns, row_id=True))
        connection.execute(conn, (sql.insert_select(table, names, sql.select_all(source_from)), []))

    return EntityRows(
        table=table,
        timestamp_column=ts_col,
        entity_columns=names,
        select_columns=names,
        min_ts=_utc(lo),
        max_ts=_utc(hi),
        create=create,
        drop=_drop(table),
        # The range above is read before the scratch copy is made, by a separate run of the
        # query, which may return other rows by then: metadata only, never a pruning bound.
        prune=False,
    )


def from_time_range(cfg, specs: list[ViewSpec], start: dt.datetime, end: dt.datetime) -> EntityRows:
    """Non-entity mode: one row per distinct (join keys, event time) seen in [start, end]."""
    key_sets = {tuple(sorted(ec for _, ec in s.join_keys)) for s in specs}
    if len(key_sets) > 1:
        raise InvalidEntityDataFrame(
            "Retrieval by start_date/end_date needs feature views with the same join keys; got "
            f"{sorted(key_sets)}. Pass an entity dataframe instead."
        )
    keys = [ec for _, ec in specs[0].join_keys]
    ts_col = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
    with connection.connect(cfg) as conn:
        fields = {f.name: f for f in connection.describe(conn, specs[0].source_from)}
    key_ddl = [(ec, types.ddl_for_field(fields[sc])) for sc, ec in specs[0].join_keys]
    parts = []
    for s in specs:
        by_entity = {ec: sc for sc, ec in s.join_keys}
        selections = [
            f"s.{sql.quote_identifier(by_entity[k])} AS {sql.quote_identifier(k)}" for k in keys
        ]
        parts.append((s.source_from, selections, s.timestamp_field))
    select_sql, params = sql.distinct_entity_rows(parts, start, end)
    table = scratch_table_name()
    columns = [*key_ddl, (ts_col, "DATETIME(6) NOT NULL")]

    def create(conn) -> None:
        connection.execute(conn, sql.create_table(table, columns, row_id=True))
        connection.execute(conn, (sql.insert_select(table, [*keys, ts_col], select_sql), params))

    return EntityRows(
        table=table,
        timestamp_column=ts_col,
        entity_columns=[*keys, ts_col],
        select_columns=[*keys, ts_col],
        min_ts=start,
        max_ts=end,
        create=create,
        drop=_drop(table),
    )


def _utc(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
