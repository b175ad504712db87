"""All SQL text of the TiDB offline store.

Rules: identifiers go through `quote_identifier` / `quote_table` (the one quoting helper);
values are always bound parameters (`%s`, pymysql's paramstyle); every statement is built here
and returned as `(sql, params)`. The SQL stays in the dialect subset that TiDB 7.5+/8.x, MySQL 8
and MariaDB 10.11 share: CTEs and window functions, no LATERAL, no CREATE TABLE ... SELECT
(TiDB lacks it), no DISTINCT ON.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from providers.tidb.errors import InvalidIdentifier

ROW_ID = "_feast_row_id"
RANK = "_feast_rn"
LATEST = "_feast_latest_ts"
MAX_IDENTIFIER_LENGTH = 64  # MySQL/TiDB limit for table and column names

Statement = tuple[str, list]


def quote_identifier(name: str) -> str:
    """Quote one identifier with backticks (backticks inside are doubled)."""
    if not isinstance(name, str) or not name:
        raise InvalidIdentifier(name, "it must be a non-empty string")
    if "\x00" in name:
        raise InvalidIdentifier(name, "it contains a NUL character")
    if len(name) > MAX_IDENTIFIER_LENGTH:
        raise InvalidIdentifier(name, f"it is longer than {MAX_IDENTIFIER_LENGTH} characters")
    if name != name.rstrip():
        raise InvalidIdentifier(name, "MySQL and TiDB do not allow trailing spaces in names")
    # `%` is doubled because every statement goes through pymysql's %-formatting.
    return "`" + name.replace("`", "``").replace("%", "%%") + "`"


def quote_table(name: str) -> str:
    """Quote `table` or `database.table` (a dot separates the database from the table)."""
    parts = name.split(".") if isinstance(name, str) else [name]
    if len(parts) > 2:
        raise InvalidIdentifier(name, "use `table` or `database.table`")
    return ".".join(quote_identifier(p) for p in parts)


def embed_query(query: str) -> str:
    """Make a user's SQL query safe to embed in a parameterised statement.

    pymysql interpolates `%s` with Python's `%` operator, so a literal `%` in the user's query
    (e.g. `LIKE 'a%'`) must be doubled. The query itself is definition text, not a value.
    """
    return query.strip().rstrip(";").replace("%", "%%")


def from_expression(table: str | None, query: str | None) -> str:
    if table:
        return quote_table(table)
    assert query, "a source has a table or a query"
    # The newline ends a trailing `-- comment` in the query before the closing parenthesis.
    return f"({embed_query(query)}\n)"


def naive_utc(ts: dt.datetime) -> dt.datetime:
    """Bind timestamps as naive UTC: sessions run with time_zone='+00:00'."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.UTC).replace(tzinfo=None)
    return ts


def _cols(alias: str, names: Sequence[str]) -> list[str]:
    return [f"{alias}.{quote_identifier(n)}" for n in names]


def _time_range(column: str, start: dt.datetime | None, end: dt.datetime | None) -> Statement:
    clauses, params = [], []
    if start is not None:
        clauses.append(f"{column} >= %s")
        params.append(naive_utc(start))
    if end is not None:
        clauses.append(f"{column} <= %s")
        params.append(naive_utc(end))
    return (" AND ".join(clauses) or "1 = 1"), params


# --------------------------------------------------------------------------- materialization


def pull_all(
    source_from: str,
    join_keys: Sequence[str],
    features: Sequence[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
) -> Statement:
    """Every row in [start, end] (what `feast materialize` reads by default)."""
    where, params = _time_range(f"s.{quote_identifier(timestamp_field)}", start, end)
    if features:
        timestamps = [timestamp_field] + (
            [created_timestamp_column] if created_timestamp_column else []
        )
        select = ", ".join(_cols("s", _unique([*join_keys, *features, *timestamps])))
    else:  # BatchFeatureView transforms ask for all columns
        select = "s.*"
    return f"SELECT {select} FROM {source_from} AS s WHERE {where}", params


def pull_latest(
    source_from: str,
    join_keys: Sequence[str],
    features: Sequence[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    start: dt.datetime,
    end: dt.datetime,
) -> Statement:
    """The latest row per entity key in [start, end], deduplicated in the database."""
    where, params = _time_range(f"s.{quote_identifier(timestamp_field)}", start, end)
    timestamps = [timestamp_field] + (
        [created_timestamp_column] if created_timestamp_column else []
    )
    order = ", ".join(f"{c} DESC" for c in _cols("s", timestamps))
    partition = f"PARTITION BY {', '.join(_cols('s', join_keys))} " if join_keys else ""
    if features:
        inner = ", ".join(_cols("s", _unique([*join_keys, *features, *timestamps])))
        outer = ", ".join(_cols("r", _unique([*join_keys, *features, *timestamps])))
    else:
        inner, outer = "s.*", "r.*"
    sql = (
        f"SELECT {outer} FROM ("
        f"SELECT {inner}, ROW_NUMBER() OVER ({partition}ORDER BY {order}) AS {RANK} "
        f"FROM {source_from} AS s WHERE {where}"
        f") AS r WHERE r.{RANK} = 1"
    )
    return sql, params  # with `r.*` the rank column comes back too: the job drops it


EVENT_US = "_feast_event_us"


def latest_for_online(
    source_from: str,
    join_keys: Sequence[str],
    features: Sequence[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    start: dt.datetime,
    end: dt.datetime,
) -> Statement:
    """`pull_latest`'s rows with only what an online write needs: keys, features, and the event
    time as integer microseconds since the epoch (cheaper to fetch than a DATETIME)."""
    inner, params = pull_latest(
        source_from, join_keys, features, timestamp_field, created_timestamp_column, start, end
    )
    cols = ", ".join(_cols("x", _unique([*join_keys, *features])))
    ts = f"x.{quote_identifier(timestamp_field)}"
    text = (
        f"SELECT {cols}, TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {ts}) AS {EVENT_US} "
        f"FROM ({inner}) AS x"
    )
    return text, params


# --------------------------------------------------------------------------- point in time


@dataclass(frozen=True)
class ViewQuery:
    """What the point-in-time join needs to know about one feature view."""

    name: str  # projection name used as prefix for full feature names
    source_from: str  # quoted table or (query)
    join_keys: list[tuple[str, str]]  # (source column, entity-table column)
    features: list[tuple[str, str]]  # (source column, output column)
    timestamp_field: str
    created_timestamp_column: str | None
    ttl_us: int  # 0 means unbounded
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
) -> _ViewJoin:
    """One view's part of the point-in-time join (see `point_in_time_join`)."""
    alias = f"_feast_fv{i}"  # prefixed: a CTE name hides a real table of the same name
    keys = [quote_identifier(ec) for _, ec in v.join_keys]
    s_ts = f"s.{quote_identifier(v.timestamp_field)}"

    def visible(row: str, v: ViewQuery = v, s_ts: str = s_ts) -> Statement:
        """Feature rows `s` that entity row `row` may see: same keys, not later, TTL, known."""
        # `=` lets the database use an index; the binary comparison makes the match exact,
        # whatever the collation (case- or accent-insensitive ones would match 'abc' to 'ABC').
        conditions = [
            f"s.{quote_identifier(sc)} = {row}.{quote_identifier(ec)} AND "
            f"CAST(s.{quote_identifier(sc)} AS BINARY) = CAST({row}.{quote_identifier(ec)} AS BINARY)"
            for sc, ec in v.join_keys
        ]
        conditions.append(f"{s_ts} <= {row}.{ts}")
        values: list = []
        if v.ttl_us:
            conditions.append(f"{s_ts} >= DATE_SUB({row}.{ts}, INTERVAL %s MICROSECOND)")
            values.append(v.ttl_us)
        if filter_by_created_timestamp and v.created_timestamp_column:
            conditions.append(f"s.{quote_identifier(v.created_timestamp_column)} <= {row}.{ts}")
        if v.knowledge_time is not None:
            known = v.created_timestamp_column or v.timestamp_field
            conditions.append(f"s.{quote_identifier(known)} <= %s")
            values.append(naive_utc(v.knowledge_time))
        return " AND ".join(conditions), values

    where, where_params = _time_range(s_ts, v.min_event_timestamp, v.max_event_timestamp)
    latest, latest_params = visible("e")
    # Step 1: per distinct (keys, time) of the entity rows, the latest visible event time: one
    # index range read on (keys, event time) per row, instead of joining the whole history.
    # The outer DISTINCT (a no-op on distinct rows) keeps the optimizer from merging this into
    # step 2, which would evaluate the subquery again in step 2's join condition.
    times = (
        f"SELECT DISTINCT {', '.join(f'e.{c}' for c in [*keys, ts])}, "
        f"(SELECT MAX({s_ts}) FROM {v.source_from} AS s WHERE {latest} AND {where}) AS {LATEST} "
        f"FROM (SELECT DISTINCT {', '.join([*keys, ts])} FROM {et}) AS e"
    )
    # Step 2: the rows at exactly that time; ties broken by the latest created timestamp.
    at, at_params = visible("t")
    at += f" AND {s_ts} = t.{LATEST}"
    order = (
        f"s.{quote_identifier(v.created_timestamp_column)} DESC"
        if v.created_timestamp_column
        else f"{s_ts} DESC"
    )
    group = [*(f"t.{k}" for k in keys), f"t.{ts}"]
    feats = [f"s.{quote_identifier(sc)} AS {quote_identifier(oc)}" for sc, oc in v.features]
    inner = (
        f"SELECT {', '.join(group)}, {', '.join(feats)}, "
        f"ROW_NUMBER() OVER (PARTITION BY {', '.join(group)} ORDER BY {order}) AS {RANK} "
        f"FROM ({times}) AS t JOIN {v.source_from} AS s ON {at}"
    )
    out_cols = [*keys, ts, *(quote_identifier(oc) for _, oc in v.features)]
    cte = f"{alias} AS (SELECT {', '.join(out_cols)} FROM ({inner}) AS r WHERE r.{RANK} = 1)"
    # Placeholders in text order: step 1's conditions and range, then step 2's conditions.
    params = latest_params + where_params + at_params
    select = [f"{alias}.{quote_identifier(oc)}" for _, oc in v.features]
    join_on = [f"{alias}.{k} = e.{k}" for k in keys] + [f"{alias}.{ts} = e.{ts}"]
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
    event_timestamp_column: str,
    views: Sequence[ViewQuery],
    entity_columns: Sequence[str],
    filter_by_created_timestamp: bool = False,
) -> Statement:
    """The point-in-time join of `entity_table` with each view, run by the database.

    For each entity row and view: the feature row with the same join keys and the latest event
    time <= the entity row's time (and >= that time minus the TTL when the TTL is not 0), ties on
    event time broken by the latest created timestamp. Work is done once per distinct
    (join keys, event time) of the entity rows, then joined back to every entity row, so
    duplicate entity rows cost nothing extra. Per view, two steps: the latest visible event time
    (a correlated MAX, one index range read on the source's (keys, event time) per row; TiDB
    decorrelates it into a join and an aggregate), then the rows at exactly that time, ranked by
    created timestamp. Joining every row to the whole history instead cost seconds per 10k
    entity rows with TTL-0 views (benchmarks/historical.py). Output: `entity_columns`, then each view's features,
    ordered by the entity table's row id (the entity dataframe's order).
    """
    et = quote_table(entity_table)
    ts = quote_identifier(event_timestamp_column)
    parts = [_view_join(i, v, et, ts, filter_by_created_timestamp) for i, v in enumerate(views)]
    return _assemble(et, parts, entity_columns)


def point_in_time_join_parts(
    entity_table: str,
    event_timestamp_column: str,
    views: Sequence[ViewQuery],
    entity_columns: Sequence[str],
    filter_by_created_timestamp: bool = False,
    parts: int = 1,
) -> list[Statement]:
    """`point_in_time_join` split into up to `parts` statements that can run at once.

    Each statement joins a share of the views to every entity row, in row-id order, so their
    results line up row by row; only the first returns `entity_columns` (fewer values to fetch). Placed side by side they
    are exactly `point_in_time_join`'s result.
    """
    et = quote_table(entity_table)
    ts = quote_identifier(event_timestamp_column)
    joins = [_view_join(i, v, et, ts, filter_by_created_timestamp) for i, v in enumerate(views)]
    n = max(1, min(parts, len(joins)))
    shares = [joins[k::n] for k in range(n)]
    return [
        _assemble(et, share, entity_columns if k == 0 else []) for k, share in enumerate(shares)
    ]


def distinct_entity_rows(
    sources: Sequence[tuple[str, list[str], str]],
    start: dt.datetime,
    end: dt.datetime,
) -> Statement:
    """Non-entity mode: the distinct (join keys, event time) of every view's rows in [start, end].

    `sources` holds (source_from, [join key source columns aliased to entity names], timestamp
    column). Columns are named by entity join key and `event_timestamp`.
    """
    parts, params = [], []
    for source_from, key_selections, ts_col in sources:
        s_ts = f"s.{quote_identifier(ts_col)}"
        where, p = _time_range(s_ts, start, end)
        parts.append(
            f"SELECT DISTINCT {', '.join([*key_selections, f'{s_ts} AS `event_timestamp`'])} "
            f"FROM {source_from} AS s WHERE {where}"
        )
        params += p
    return " UNION ".join(parts), params


# --------------------------------------------------------------------------- DDL and DML


def create_table(
    table: str,
    columns: Sequence[tuple[str, str]],
    row_id: bool = False,
    if_not_exists: bool = False,
) -> Statement:
    cols = [f"{quote_identifier(n)} {ddl}" for n, ddl in columns]
    if row_id:
        cols.insert(0, f"{quote_identifier(ROW_ID)} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY")
    exists = "IF NOT EXISTS " if if_not_exists else ""
    return f"CREATE TABLE {exists}{quote_table(table)} ({', '.join(cols)})", []


def drop_table(table: str) -> Statement:
    return f"DROP TABLE IF EXISTS {quote_table(table)}", []


def insert(table: str, columns: Sequence[str]) -> str:
    """INSERT for `cursor.executemany` (pymysql batches it into multi-row statements)."""
    cols = ", ".join(quote_identifier(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    return f"INSERT INTO {quote_table(table)} ({cols}) VALUES ({marks})"


def insert_select(table: str, columns: Sequence[str], select_sql: str) -> str:
    cols = ", ".join(quote_identifier(c) for c in columns)
    return f"INSERT INTO {quote_table(table)} ({cols}) SELECT {cols} FROM ({select_sql}) AS q"


def select_all(source_from: str) -> str:
    return f"SELECT * FROM {source_from} AS q0"


def select_limit_0(source_from: str) -> Statement:
    return f"SELECT * FROM {source_from} AS s LIMIT 0", []


def min_max_of_query(source_from: str, column: str) -> Statement:
    c = quote_identifier(column)
    return f"SELECT MIN(q.{c}), MAX(q.{c}) FROM {source_from} AS q", []


def create_database(name: str) -> Statement:
    return f"CREATE DATABASE IF NOT EXISTS {quote_identifier(name)}", []


def add_column(table: str, column: str, ddl: str) -> Statement:
    return f"ALTER TABLE {quote_table(table)} ADD COLUMN {quote_identifier(column)} {ddl}", []


def columns_info(table: str) -> Statement:
    """Name, and whether the server can fill the column itself (nullable, defaulted, generated)."""
    schema, params = _schema_and_table(table)
    sql = (
        "SELECT COLUMN_NAME, (IS_NULLABLE = 'YES' OR COLUMN_DEFAULT IS NOT NULL OR EXTRA <> '') "
        f"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = %s "
        "ORDER BY ORDINAL_POSITION"
    )
    return sql, params


def table_exists(table: str) -> Statement:
    schema, params = _schema_and_table(table)
    sql = f"SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = %s"
    return sql, params


def count_between(table: str, column: str, start: dt.datetime, end: dt.datetime) -> Statement:
    """Rows with start <= column < end."""
    c = quote_identifier(column)
    return f"SELECT COUNT(*) FROM {quote_table(table)} WHERE {c} >= %s AND {c} < %s", [
        naive_utc(start),
        naive_utc(end),
    ]


def select_logged(table: str, start: dt.datetime, end: dt.datetime) -> Statement:
    """Served-feature log rows with start <= __log_timestamp < end, oldest first."""
    ts = quote_identifier("__log_timestamp")
    return (
        f"SELECT * FROM {quote_table(table)} WHERE {ts} >= %s AND {ts} < %s ORDER BY {ts}",
        [naive_utc(start), naive_utc(end)],
    )


def count_all(table: str) -> Statement:
    return f"SELECT COUNT(*) FROM {quote_table(table)}", []


def truncate(table: str) -> Statement:
    return f"TRUNCATE TABLE {quote_table(table)}", []


def delete_where(table: str, equals: dict[str, object]) -> Statement:
    """DELETE the rows whose columns equal the given values (all bound)."""
    if not equals:
        raise ValueError("delete_where needs at least one condition")
    where = " AND ".join(f"{quote_identifier(c)} = %s" for c in equals)
    return f"DELETE FROM {quote_table(table)} WHERE {where}", list(equals.values())


def _schema_and_table(table: str) -> tuple[str, list[str]]:
    """information_schema filter for `table` / `db.table`: (schema expression, params)."""
    parts = table.split(".")
    return ("%s", parts) if len(parts) == 2 else ("DATABASE()", parts)


def json_columns(table: str) -> Statement:
    """Columns whose type is JSON (MySQL 8, TiDB). Portable: only information_schema.COLUMNS."""
    schema, params = _schema_and_table(table)
    sql = (
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
        f"WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = %s AND DATA_TYPE = 'json'"
    )
    return sql, params


def mariadb_json_alias_columns(table: str) -> Statement:
    """MariaDB only: its JSON type is LONGTEXT with a `json_valid` check.

    Uses CHECK_CONSTRAINTS.TABLE_NAME, which MariaDB has and TiDB/MySQL do not: run it only
    on a server that reports itself as MariaDB.
    """
    schema, params = _schema_and_table(table)
    sql = (
        "SELECT c.COLUMN_NAME FROM information_schema.COLUMNS c "
        "JOIN information_schema.CHECK_CONSTRAINTS k ON k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA "
        "AND k.TABLE_NAME = c.TABLE_NAME "
        "AND k.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)') "
        f"WHERE c.TABLE_SCHEMA = {schema} AND c.TABLE_NAME = %s"
    )
    return sql, params


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))
