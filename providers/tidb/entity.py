"""Entity rows for `get_historical_features`: put them in a scratch table the join can read.

Three inputs, one shape: a scratch table `_feast_entity_<hex>` holding a row id, each join key in
its canonical form (`keys`: BIGINT, or the value's bytes) and the event time (DATETIME(6), UTC),
created before the query and dropped after it. Its column names are internal
(`pit_sql.key_column(i)`, `pit_sql.TS`), so no user-chosen name becomes an SQL identifier.

- a pandas DataFrame: the keys are checked against their entities' declared types and uploaded
  with the timestamp, in bounded multi-row INSERT batches; the caller's other columns never leave
  the process and are re-attached to the result by row id, with their dtypes intact;
- a SQL query: copied server-side with INSERT ... SELECT (TiDB has no CREATE TABLE ... SELECT),
  its key columns converted to the canonical form on the way;
- no entity rows (start_date/end_date): the distinct (keys, event time) of every requested
  view's rows in the range that were known at the pinned knowledge time, if one is pinned.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.feature_view import DUMMY_ENTITY_ID, FeatureView
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.types import FeastType
from feast.value_type import ValueType

from providers.tidb import connection, declared, keys, pit_sql, sql, types
from providers.tidb.errors import (
    InvalidEntityDataFrame,
    TiDBKeyTypeError,
    TiDBSourceColumnNotFound,
    TiDBSourceNotFound,
)

Step = Callable[..., None]
YEAR_ONE = dt.datetime(1, 1, 1, tzinfo=dt.UTC)


@dataclass
class ViewSpec:
    """One requested feature view, as declared: source columns, output names, declared types."""

    name: str
    source_from: str
    join_keys: list[tuple[str, str, ValueType]]  # (source column, entity column, declared type)
    features: list[tuple[str, str, FeastType]]  # (source column, output name, declared type)
    timestamp_field: str
    created_timestamp_column: str | None
    ttl: dt.timedelta | None


def view_spec(fv: FeatureView, features: list[str], full_feature_names: bool) -> ViewSpec:
    source = fv.batch_source
    assert source is not None
    reverse = {v: k for k, v in source.field_mapping.items()}
    join_keys = [
        (
            reverse.get(col.name, col.name),
            fv.projection.join_key_map.get(col.name, col.name),
            col.dtype.to_value_type(),
        )
        for col in fv.entity_columns
        if col.name != DUMMY_ENTITY_ID
    ]
    prefix = fv.projection.name_to_use()
    dtypes = {f.name: f.dtype for f in fv.features}
    outputs = [
        (reverse.get(f, f), f"{prefix}__{f}" if full_feature_names else f, dtypes[f])
        for f in features
    ]
    return ViewSpec(
        name=prefix,
        source_from=source.get_table_query_string(),
        join_keys=join_keys,
        features=outputs,
        timestamp_field=reverse.get(source.timestamp_field, source.timestamp_field),
        created_timestamp_column=reverse.get(
            source.created_timestamp_column, source.created_timestamp_column
        )
        or None,
        ttl=fv.ttl or None,
    )


def key_kinds(specs: list[ViewSpec]) -> dict[str, keys.KeyKind]:
    """Each entity join key the views need, in order, with its kind; views must agree."""
    kinds: dict[str, keys.KeyKind] = {}
    for spec in specs:
        for _, entity_column, value_type in spec.join_keys:
            kind = keys.kind_of(value_type, entity_column, f"Feature view '{spec.name}'")
            if kinds.setdefault(entity_column, kind) is not kind:
                raise TiDBKeyTypeError(
                    f"Join key '{entity_column}' is {kinds[entity_column].value} in one requested "
                    f"feature view and {kind.value} in '{spec.name}'; declare one type."
                )
    return kinds


def probe_source(
    conn,
    owner: str,
    source_from: str,
    columns: list[str],
    collated: list[str] = (),  # type: ignore[assignment]
) -> dict[str, keys.SourceColumn]:
    """`connection.probe`, with errors that name the source and say what to fix."""
    import pymysql

    try:
        return connection.probe(conn, source_from, columns, list(collated))
    except pymysql.err.MySQLError as exc:
        try:
            available = {f.name for f in connection.describe(conn, source_from)}
        except pymysql.err.MySQLError:
            raise TiDBSourceNotFound(owner, source_from, exc) from exc
        missing = [c for c in columns if c not in available]
        if missing:
            raise TiDBSourceColumnNotFound(owner, missing[0], "named", available) from exc
        raise TiDBSourceNotFound(owner, source_from, exc) from exc


@dataclass(frozen=True)
class SourceRead:
    """How to read a source exactly: its columns as the server types them, the SQL reading each
    (`declared.read_expression`, keyed by column; the plain column where nothing is needed) and
    each key column's canonical form, for grouping and matching (`keys`)."""

    columns: dict[str, keys.SourceColumn]
    read: dict[str, str]
    kinds: dict[str, keys.KeyKind]
    canonical: dict[str, str]

    def read_as(self) -> dict[str, str]:
        """Only the columns that need more than their name."""
        return {c: e for c, e in self.read.items() if e != f"s.{sql.quote_identifier(c)}"}


def source_read(
    conn,
    owner: str,
    source_from: str,
    key_kinds: dict[str, keys.KeyKind | None],
    columns: list[str],
) -> SourceRead:
    """Probe a source's key columns (kind None: the one their type implies) and other columns,
    refusing keys that cannot be matched exactly; the one place reads are planned for the
    point-in-time join, `pull_*` and the TiDB -> Redis engine."""
    key_columns = list(key_kinds)
    probed = probe_source(conn, owner, source_from, [*key_columns, *columns], key_columns)
    kinds = {k: kind or keys.source_kind(probed[k]) for k, kind in key_kinds.items()}
    for k, kind in kinds.items():
        keys.check_source_key(owner, probed[k], kind)
    quoted = {c: f"s.{sql.quote_identifier(c)}" for c in probed}
    return SourceRead(
        columns=probed,
        read={c: declared.read_expression(probed[c], quoted[c]) for c in probed},
        kinds=kinds,
        canonical={k: keys.canonical(probed[k], kinds[k], quoted[k]) for k in key_columns},
    )


@dataclass
class ResolvedView:
    """A view checked against its source on the server, ready to become a `pit_sql.ViewQuery`."""

    spec: ViewSpec
    keys: list[pit_sql.KeyJoin]
    features: list[tuple[str, str]]  # (SQL reading the value, result alias)
    aliases: dict[str, str]  # result alias -> output name
    declared: dict[str, FeastType]  # output name -> declared type

    def query(
        self,
        min_ts: dt.datetime | None,
        max_ts: dt.datetime | None,
        knowledge_time: dt.datetime | None,
    ) -> pit_sql.ViewQuery:
        ttl = self.spec.ttl
        ttl_us, floor, lower = 0, None, None
        if ttl:
            ttl_us = ttl // dt.timedelta(microseconds=1)
            try:
                reach = YEAR_ONE + ttl  # entity times before this look back to before year 1
            except OverflowError:
                ttl_us = 0  # the TTL reaches before year 1 from every possible time: unbounded
            else:
                if min_ts is None or min_ts < reach:
                    floor = reach
                if min_ts is not None and min_ts >= reach:
                    lower = min_ts - ttl
        return pit_sql.ViewQuery(
            name=self.spec.name,
            source_from=self.spec.source_from,
            keys=self.keys,
            features=self.features,
            timestamp_field=self.spec.timestamp_field,
            created_timestamp_column=self.spec.created_timestamp_column,
            ttl_us=ttl_us,
            ttl_floor=floor if ttl_us else None,
            min_event_timestamp=lower,
            max_event_timestamp=max_ts,
            knowledge_time=knowledge_time,
        )


def resolve(conn, i: int, spec: ViewSpec, kinds: dict[str, keys.KeyKind]) -> ResolvedView:
    """Check view `i`'s key columns against their entities and say how to read its features."""
    read = source_read(
        conn,
        f"Feature view '{spec.name}'",
        spec.source_from,
        {sc: kinds[ec] for sc, ec, _ in spec.join_keys},
        [sc for sc, _, _ in spec.features],
    )
    order = list(kinds)
    joins = [
        pit_sql.KeyJoin(read.columns[sc], kinds[ec], pit_sql.key_column(order.index(ec)))
        for sc, ec, _ in spec.join_keys
    ]
    features, aliases, types_ = [], {}, {}
    for j, (source_column, output, dtype) in enumerate(spec.features):
        alias = f"_feast_f{i}_{j}"
        features.append((read.read[source_column], alias))
        aliases[alias] = output
        types_[output] = dtype
    return ResolvedView(spec, joins, features, aliases, types_)


@dataclass
class EntityRows:
    """The scratch table of entity rows, and how to make, drop and finish with it."""

    table: str
    head: list[tuple[str, str]]  # (scratch column the join returns, output name)
    keys: list[str]  # the caller's entity columns but the timestamp (Feast's metadata keys)
    timestamp_column: str  # the caller's name for the event time
    min_ts: dt.datetime | None
    max_ts: dt.datetime | None
    create: Step
    drop: Step
    declared: dict[str, Any] = field(default_factory=dict)  # output name -> declared type
    finish: Callable[[pa.Table], pa.Table] | None = None
    prune: bool = True  # whether min_ts/max_ts may bound the scan of each source


def scratch_table_name(cfg) -> str:
    """A fresh scratch table, in the store's scratch database when it has one."""
    name = f"_feast_entity_{uuid.uuid4().hex}"
    scratch = getattr(cfg, "scratch_database", None)
    return f"{scratch}.{name}" if scratch else name


def _drop(table: str) -> Step:
    def drop(conn) -> None:
        connection.execute(conn, sql.drop_table(table))

    return drop


def _key_columns(kinds: dict[str, keys.KeyKind]) -> list[tuple[str, str]]:
    return [(pit_sql.key_column(i), keys.scratch_ddl(k)) for i, k in enumerate(kinds.values())]


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


def _missing_keys(available, required) -> None:
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


def from_dataframe(cfg, entity_df: pd.DataFrame, kinds: dict[str, keys.KeyKind]) -> EntityRows:
    if entity_df.columns.duplicated().any():
        raise InvalidEntityDataFrame(
            f"Entity dataframe has duplicate column names: {list(entity_df.columns)}."
        )
    is_ts = {str(c): pd.api.types.is_datetime64_any_dtype(entity_df[c]) for c in entity_df.columns}
    ts_col = infer_timestamp_column(is_ts)
    _missing_keys(entity_df.columns, kinds)
    timestamps = _utc_timestamps(entity_df, ts_col)

    arrays = [pa.array(np.arange(len(entity_df), dtype="int64"))]
    arrays += [keys.entity_column(entity_df[k], k, kind) for k, kind in kinds.items()]
    arrays.append(pa.array(timestamps.to_numpy(), type=pa.timestamp("us")))
    names = [sql.ROW_ID, *(c for c, _ in _key_columns(kinds)), pit_sql.TS]
    upload = pa.Table.from_arrays(arrays, names=names)

    # The caller's columns come back as given, with the timestamp column in UTC.
    original = entity_df.reset_index(drop=True).copy()
    original[ts_col] = timestamps.reset_index(drop=True)
    table = scratch_table_name(cfg)
    columns = [(sql.ROW_ID, "BIGINT NOT NULL PRIMARY KEY"), *_key_columns(kinds)]
    columns.append((pit_sql.TS, "DATETIME(6) NOT NULL"))

    def create(conn) -> None:
        connection.execute(conn, sql.create_table(table, columns))
        connection.insert_arrow(conn, table, upload, cfg.write_batch_rows)

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
        head=[(sql.ROW_ID, sql.ROW_ID)],
        keys=[str(c) for c in entity_df.columns if c != ts_col],
        timestamp_column=ts_col,
        min_ts=None if empty else timestamps.min().to_pydatetime(),
        max_ts=None if empty else timestamps.max().to_pydatetime(),
        create=create,
        drop=_drop(table),
        finish=finish,
    )


def from_query(cfg, conn, query: str, kinds: dict[str, keys.KeyKind]) -> EntityRows:
    """Entity rows from a SQL query, copied into the scratch table inside the database."""
    source_from = sql.from_expression(None, query)
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
    _missing_keys(names, kinds)
    probed = probe_source(
        conn,
        "The entity query",
        source_from,
        list(kinds),
        [k for k, kind in kinds.items() if kind is not keys.KeyKind.INTEGER],
    )
    canonical = []
    for name, kind in kinds.items():
        column = probed[name]
        keys.check_source_key("The entity query", column, kind)
        if keys.integral_only(column, kind, "q") is not None:
            raise TiDBKeyTypeError(
                f"The entity query's key column '{name}' is a DECIMAL with a fractional part; "
                f"select it as `CAST({name} AS SIGNED)` for integer keys."
            )
        canonical.append(keys.canonical(column, kind, f"q.{sql.quote_identifier(name)}"))
    lo, hi = connection.fetch_one(conn, sql.min_max_of_query(source_from, ts_col)) or (None, None)
    table = scratch_table_name(cfg)
    key_columns = _key_columns(kinds)
    columns = [(f.name, types.ddl_for_field(f)) for f in fields]
    columns += [*key_columns, (pit_sql.TS, "DATETIME(6) NOT NULL")]
    ts = f"q.{sql.quote_identifier(ts_col)}"
    select = [f"q.{sql.quote_identifier(n)}" for n in names] + canonical + [ts]
    targets = [*names, *(c for c, _ in key_columns), pit_sql.TS]

    def create(conn) -> None:
        connection.execute(conn, sql.create_table(table, columns, row_id=True))
        connection.execute(conn, sql.insert_select_expressions(table, targets, select, source_from))

    return EntityRows(
        table=table,
        head=[(n, n) for n in names],
        keys=[n for n in names if n != ts_col],
        timestamp_column=ts_col,
        min_ts=_utc(lo),
        max_ts=_utc(hi),
        create=create,
        drop=_drop(table),
        # The range above is read before the scratch copy is made, by a separate run of the
        # query, which may return other rows by then: metadata only, never a pruning bound.
        prune=False,
    )


def from_time_range(
    cfg,
    conn,
    views: list[ResolvedView],
    kinds: dict[str, keys.KeyKind],
    start: dt.datetime,
    end: dt.datetime,
    knowledge_time: dt.datetime | None,
) -> EntityRows:
    """Non-entity mode: one row per distinct (join keys, event time) seen in [start, end] (and
    known at `knowledge_time`, when one is pinned)."""
    key_sets = {tuple(sorted(ec for _, ec, _ in v.spec.join_keys)) for v in views}
    if len(key_sets) > 1:
        raise InvalidEntityDataFrame(
            "Retrieval by start_date/end_date needs feature views with the same join keys; got "
            f"{sorted(key_sets)}. Pass an entity dataframe instead."
        )
    order = list(kinds)
    sources = []
    for view in views:
        by_column = {k.entity_column: k for k in view.keys}
        selections = []
        for i in range(len(order)):
            join = by_column[pit_sql.key_column(i)]
            column = f"s.{sql.quote_identifier(join.source.name)}"
            selections.append(
                (
                    keys.canonical(join.source, join.kind, column),
                    keys.integral_only(join.source, join.kind, column),
                )
            )
        sources.append(
            pit_sql.EntitySource(
                view.spec.source_from,
                selections,
                view.spec.timestamp_field,
                view.spec.created_timestamp_column,
            )
        )
    select_sql, params = pit_sql.distinct_entity_rows(sources, start, end, knowledge_time)
    table = scratch_table_name(cfg)
    key_columns = _key_columns(kinds)
    columns = [*key_columns, (pit_sql.TS, "DATETIME(6) NOT NULL")]
    targets = [c for c, _ in columns]

    def create(conn) -> None:
        connection.execute(conn, sql.create_table(table, columns, row_id=True))
        connection.execute(conn, (sql.insert_select(table, targets, select_sql), params))

    ts_col = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
    head = [(c, name) for (c, _), name in zip(key_columns, order, strict=True)]
    # The canonical keys come back as declared (a STRING key's bytes as text).
    key_types = {ec: vt for _, ec, vt in views[0].spec.join_keys}
    return EntityRows(
        table=table,
        head=[*head, (pit_sql.TS, ts_col)],
        keys=order,
        timestamp_column=ts_col,
        min_ts=start,
        max_ts=end,
        create=create,
        drop=_drop(table),
        declared=key_types,
    )


def _utc(value) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value
    return dt.datetime.combine(value, dt.time(), tzinfo=dt.UTC)
