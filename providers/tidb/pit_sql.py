"""SQL text of the point-in-time join and of its entity rows (the rules of `sql.py` apply).

The entity rows sit in a scratch table with internal column names: a row id, each join key in
its canonical form (`keys`: BIGINT or the value's bytes) and the event time. Feature columns come
back under internal aliases too; the retrieval job names them. So no name the user chose is an
SQL identifier here, whatever its length or characters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from providers.tidb import keys
from providers.tidb.sql import (
    LATEST,
    RANK,
    ROW_ID,
    Statement,
    _time_range,
    known_at,
    naive_utc,
    quote_identifier,
    quote_table,
)

TS = "_feast_ts"  # the entity table's event time


def key_column(i: int) -> str:
    """The entity table's i-th canonical join key column."""
    return f"_feast_k{i}"


@dataclass(frozen=True)
class KeyJoin:
    """How one join key of a view meets the entity rows."""

    source: keys.SourceColumn  # the key column of the view's source
    kind: keys.KeyKind
    entity_column: str  # the canonical key column of the entity table


@dataclass(frozen=True)
class ViewQuery:
    """What the point-in-time join needs to know about one feature view."""

    name: str
    source_from: str  # quoted table or (query)
    keys: list[KeyJoin]
    features: list[tuple[str, str]]  # (SQL reading the value from source row `s`, result alias)
    timestamp_field: str
    created_timestamp_column: str | None
    ttl_us: int  # 0 means unbounded
    # Entity times before this one see back to year 1 only: their TTL would reach before it,
    # where DATE_SUB gives NULL. None: no entity time is that close to year 1.
    ttl_floor: dt.datetime | None = None
    min_event_timestamp: dt.datetime | None = None  # pruning bound: min entity ts - ttl
    max_event_timestamp: dt.datetime | None = None  # pruning bound: max entity ts
    knowledge_time: dt.datetime | None = None  # as_of: rows known later are invisible


@dataclass(frozen=True)
class _ViewJoin:
    cte: str  # `_feast_fvN AS (...)`: one row per distinct (keys, time) that has a feature row
    params: list
    select: list[str]  # its feature columns in the outer SELECT
    join: str  # `LEFT JOIN _feast_fvN ON ...` back to the entity rows `e`


def _view_join(
    i: int,
    v: ViewQuery,
    et: str,
    ts: str,
    filter_by_created_timestamp: bool,
    latest_by_order: bool,
) -> _ViewJoin:
    """One view's part of the point-in-time join (see `point_in_time_join`)."""
    alias = f"_feast_fv{i}"  # prefixed: a CTE name hides a real table of the same name
    ekeys = [quote_identifier(k.entity_column) for k in v.keys]
    s_ts = f"s.{quote_identifier(v.timestamp_field)}"
    known = known_at(v.timestamp_field, v.created_timestamp_column)

    def visible(row: str) -> Statement:
        """Feature rows `s` that entity row `row` may see: same keys, not later, TTL, known."""
        conditions = [
            keys.match(k.source, k.kind, f"s.{quote_identifier(k.source.name)}", f"{row}.{ekey}")
            for k, ekey in zip(v.keys, ekeys, strict=True)
        ]
        conditions.append(f"{s_ts} <= {row}.{ts}")
        values: list = []
        if v.ttl_us:
            start = f"{row}.{ts}"
            if v.ttl_floor is not None:
                start = f"GREATEST({start}, CAST(%s AS DATETIME(6)))"
                values.append(naive_utc(v.ttl_floor))
            conditions.append(f"{s_ts} >= DATE_SUB({start}, INTERVAL %s MICROSECOND)")
            values.append(v.ttl_us)
        if filter_by_created_timestamp and v.created_timestamp_column:
            conditions.append(f"{known} <= {row}.{ts}")
        if v.knowledge_time is not None:
            conditions.append(f"{known} <= %s")
            values.append(naive_utc(v.knowledge_time))
        return " AND ".join(conditions), values

    where, where_params = _time_range(s_ts, v.min_event_timestamp, v.max_event_timestamp)
    latest, latest_params = visible("e")
    # Step 1: per distinct (keys, time) of the entity rows, the latest visible event time: one
    # index range read on (keys, event time) per row, instead of joining the whole history.
    # The outer DISTINCT (a no-op on distinct rows) keeps the optimizer from merging this into
    # step 2, which would evaluate the subquery again in step 2's join condition.
    lookup = (
        f"SELECT {s_ts} FROM {v.source_from} AS s WHERE {latest} AND {where} "
        f"ORDER BY {s_ts} DESC LIMIT 1"
        if latest_by_order
        else f"SELECT MAX({s_ts}) FROM {v.source_from} AS s WHERE {latest} AND {where}"
    )
    times = (
        f"SELECT DISTINCT {', '.join(f'e.{c}' for c in [*ekeys, ts])}, ({lookup}) AS {LATEST} "
        f"FROM (SELECT DISTINCT {', '.join([*ekeys, ts])} FROM {et}) AS e"
    )
    # Step 2: the rows at exactly that time; ties broken by the row known last.
    at, at_params = visible("t")
    at += f" AND {s_ts} = t.{LATEST}"
    group = [*(f"t.{k}" for k in ekeys), f"t.{ts}"]
    feats = [f"{expr} AS {quote_identifier(out)}" for expr, out in v.features]
    inner = (
        f"SELECT {', '.join(group)}, {', '.join(feats)}, "
        f"ROW_NUMBER() OVER (PARTITION BY {', '.join(group)} ORDER BY {known} DESC) AS {RANK} "
        f"FROM ({times}) AS t JOIN {v.source_from} AS s ON {at}"
    )
    out_cols = [*ekeys, ts, *(quote_identifier(out) for _, out in v.features)]
    cte = f"{alias} AS (SELECT {', '.join(out_cols)} FROM ({inner}) AS r WHERE r.{RANK} = 1)"
    # Placeholders in text order: step 1's conditions and range, then step 2's conditions.
    params = latest_params + where_params + at_params
    select = [f"{alias}.{quote_identifier(out)}" for _, out in v.features]
    join_on = [f"{alias}.{k} = e.{k}" for k in ekeys] + [f"{alias}.{ts} = e.{ts}"]
    join = f"LEFT JOIN {alias} ON {' AND '.join(join_on)}"
    return _ViewJoin(cte, params, select, join)


def _assemble(et: str, parts: Sequence[_ViewJoin], head_columns: Sequence[str]) -> Statement:
    head = [f"e.{quote_identifier(c)}" for c in head_columns]
    text = (
        (f"WITH {', '.join(p.cte for p in parts)} " if parts else "")
        + f"SELECT {', '.join(head + [c for p in parts for c in p.select])} FROM {et} AS e "
        + " ".join(p.join for p in parts)
        + f" ORDER BY e.{quote_identifier(ROW_ID)}"
    )
    return text, [x for p in parts for x in p.params]


def point_in_time_join(
    entity_table: str,
    views: Sequence[ViewQuery],
    head_columns: Sequence[str],
    filter_by_created_timestamp: bool = False,
    latest_by_order: bool = False,
) -> Statement:
    """The point-in-time join of `entity_table` with each view, run by the database.

    For each entity row and view: the feature row with exactly the same join keys and the latest
    event time <= the entity row's time (and >= that time minus the TTL when the TTL is not 0),
    ties on event time broken by the latest created timestamp. Work is done once per distinct
    (join keys, event time) of the entity rows, then joined back to every entity row, so
    duplicate entity rows cost nothing extra. Per view, two steps: the latest visible event time
    (a correlated MAX, which TiDB decorrelates into a join and an aggregate; with
    `latest_by_order`, for MariaDB and MySQL, which run it per row, `ORDER BY time DESC LIMIT 1`,
    which stops at the first visible row of a backward read of the source's (keys, event time)
    index: 15% less time per view in benchmarks/historical.py), then the rows at exactly that
    time, ranked by created timestamp. Joining every row to the whole history instead cost seconds per 10k
    entity rows with TTL-0 views (benchmarks/historical.py). Output: `head_columns` of the
    entity table, then each view's features under their aliases, in the entity table's row-id
    order (the entity dataframe's order).
    """
    (statement,) = point_in_time_join_parts(
        entity_table, views, head_columns, filter_by_created_timestamp, 1, latest_by_order
    )
    return statement


def point_in_time_join_parts(
    entity_table: str,
    views: Sequence[ViewQuery],
    head_columns: Sequence[str],
    filter_by_created_timestamp: bool = False,
    parts: int = 1,
    latest_by_order: bool = False,
) -> list[Statement]:
    """`point_in_time_join` split into up to `parts` statements that can run at once.

    Each statement joins a share of the views to every entity row, in row-id order, so their
    results line up row by row; only the first returns `head_columns` (fewer values to fetch).
    Placed side by side they are exactly `point_in_time_join`'s result.
    """
    et = quote_table(entity_table)
    ts = quote_identifier(TS)
    joins = [
        _view_join(i, v, et, ts, filter_by_created_timestamp, latest_by_order)
        for i, v in enumerate(views)
    ]
    n = max(1, min(parts, len(joins)))
    shares = [joins[k::n] for k in range(n)]
    return [_assemble(et, share, head_columns if k == 0 else []) for k, share in enumerate(shares)]


@dataclass(frozen=True)
class EntitySource:
    """One view's source, for the entity rows of a time range (non-entity retrieval)."""

    source_from: str
    keys: list[tuple[str, str | None]]  # per canonical key column: (SQL over `s`, filter or None)
    timestamp_field: str
    created_timestamp_column: str | None


def distinct_entity_rows(
    sources: Sequence[EntitySource],
    start: dt.datetime,
    end: dt.datetime,
    knowledge_time: dt.datetime | None = None,
) -> Statement:
    """Non-entity mode: the distinct (canonical join keys, event time) of every view's rows in
    [start, end], known at `knowledge_time` when one is pinned. Columns: `key_column(i)`, `TS`."""
    parts, params = [], []
    for source in sources:
        s_ts = f"s.{quote_identifier(source.timestamp_field)}"
        where, p = _time_range(s_ts, start, end)
        conditions = [where, *(f for _, f in source.keys if f)]
        if knowledge_time is not None:
            conditions.append(
                f"{known_at(source.timestamp_field, source.created_timestamp_column)} <= %s"
            )
            p.append(naive_utc(knowledge_time))
        selections = [
            f"{expr} AS {quote_identifier(key_column(i))}"
            for i, (expr, _) in enumerate(source.keys)
        ]
        parts.append(
            f"SELECT DISTINCT {', '.join([*selections, f'{s_ts} AS {quote_identifier(TS)}'])} "
            f"FROM {source.source_from} AS s WHERE {' AND '.join(conditions)}"
        )
        params += p
    return " UNION ".join(parts), params
