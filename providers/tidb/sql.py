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


def _select(alias: str, names: Sequence[str], read_as: dict[str, str] | None) -> str:
    """`alias.name` per column, or `expression AS name` where `read_as` says how to read it."""
    read_as = read_as or {}
    return ", ".join(
        f"{read_as[n]} AS {quote_identifier(n)}"
        if n in read_as
        else f"{alias}.{quote_identifier(n)}"
        for n in names
    )


def known_at(timestamp_field: str, created_timestamp_column: str | None, alias: str = "s") -> str:
    """When a row became known: its created timestamp, or its event time where there is none
    (no created column, or a NULL in it)."""
    event = f"{alias}.{quote_identifier(timestamp_field)}"
    if not created_timestamp_column:
        return event
    return f"COALESCE({alias}.{quote_identifier(created_timestamp_column)}, {event})"


def pull_all(
    source_from: str,
    join_keys: Sequence[str],
    features: Sequence[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    start: dt.datetime | None,
    end: dt.datetime | None,
    read_as: dict[str, str] | None = None,
) -> Statement:
    """Every row in [start, end] (what `feast materialize` reads by default). `read_as`: column ->
    SQL reading it exactly (`types.read_expression`)."""
    where, params = _time_range(f"s.{quote_identifier(timestamp_field)}", start, end)
    if features:
        timestamps = [timestamp_field] + (
            [created_timestamp_column] if created_timestamp_column else []
        )
        select = _select("s", _unique([*join_keys, *features, *timestamps]), read_as)
    else:  # BatchFeatureView transforms ask for all columns
        select = "s.*"
    return f"SELECT {select} FROM {source_from} AS s WHERE {where}", params


def pull_latest(
    source_from: str,
    join_keys: Sequence[str],
    features: Sequence[str],
    timestamp_field: str,
    created_timestamp_column: str | None,
    start: dt.datetime | None,
    end: dt.datetime,
    partition_by: dict[str, str] | None = None,
    read_as: dict[str, str] | None = None,
) -> Statement:
    """The latest row per entity key in [start, end] (no lower bound when `start` is None),
    deduplicated in the database.

    `partition_by`: key column -> the SQL that groups it exactly (`keys.canonical`: string keys
    by their bytes, not under the column's collation). Ties on event time go to the row known
    last (`known_at`)."""
    where, params = _time_range(f"s.{quote_identifier(timestamp_field)}", start, end)
    timestamps = [timestamp_field] + (
        [created_timestamp_column] if created_timestamp_column else []
    )
    order = f"s.{quote_identifier(timestamp_field)} DESC"
    if created_timestamp_column:
        order += f", {known_at(timestamp_field, created_timestamp_column)} DESC"
    groups = [(partition_by or {}).get(k, f"s.{quote_identifier(k)}") for k in join_keys]
    partition = f"PARTITION BY {', '.join(groups)} " if groups else ""
    if features:
        names = _unique([*join_keys, *features, *timestamps])
        inner, outer = _select("s", names, read_as), ", ".join(_cols("r", names))
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
    partition_by: dict[str, str] | None = None,
    read_as: dict[str, str] | None = None,
) -> Statement:
    """`pull_latest`'s rows with only what an online write needs: keys, features, and the event
    time as integer microseconds since the epoch (cheaper to fetch than a DATETIME)."""
    inner, params = pull_latest(
        source_from,
        join_keys,
        features,
        timestamp_field,
        created_timestamp_column,
        start,
        end,
        partition_by,
        read_as,
    )
    cols = ", ".join(_cols("x", _unique([*join_keys, *features])))
    ts = f"x.{quote_identifier(timestamp_field)}"
    text = (
        f"SELECT {cols}, TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', {ts}) AS {EVENT_US} "
        f"FROM ({inner}) AS x"
    )
    return text, params


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


def insert(table: str, columns: Sequence[str], ignore: bool = False) -> str:
    """INSERT for `cursor.executemany` (pymysql batches it into multi-row statements).
    `ignore`: rows whose primary key exists are skipped (idempotent landing)."""
    cols = ", ".join(quote_identifier(c) for c in columns)
    marks = ", ".join(["%s"] * len(columns))
    verb = "INSERT IGNORE" if ignore else "INSERT"
    return f"{verb} INTO {quote_table(table)} ({cols}) VALUES ({marks})"


def insert_values(table: str, columns: Sequence[str], values: str) -> str:
    """INSERT of rows already written as safe literals (`types.values_text`); run it with empty
    parameters, so that pymysql undoes the `%%` of quoted names."""
    cols = ", ".join(quote_identifier(c) for c in columns)
    return f"INSERT INTO {quote_table(table)} ({cols}) VALUES {values}"


def insert_select(table: str, columns: Sequence[str], select_sql: str) -> str:
    cols = ", ".join(quote_identifier(c) for c in columns)
    return f"INSERT INTO {quote_table(table)} ({cols}) SELECT {cols} FROM ({select_sql}) AS q"


def insert_select_expressions(
    table: str, columns: Sequence[str], expressions: Sequence[str], source_from: str
) -> Statement:
    """INSERT INTO table (columns) SELECT expressions FROM source_from AS q."""
    cols = ", ".join(quote_identifier(c) for c in columns)
    return (
        f"INSERT INTO {quote_table(table)} ({cols}) SELECT {', '.join(expressions)} "
        f"FROM {source_from} AS q",
        [],
    )


def probe(source_from: str, columns: Sequence[str], collated: Sequence[str]) -> Statement:
    """One row of NULLs typed like `columns` of the source, then the character set and collation
    of each of `collated`. The source is read with LIMIT 0: nothing is scanned."""
    cols = [f"s.{quote_identifier(c)}" for c in columns]
    for c in collated:
        cols += [f"CHARSET(s.{quote_identifier(c)})", f"COLLATION(s.{quote_identifier(c)})"]
    return (
        f"SELECT {', '.join(cols)} FROM (SELECT 1 AS one) AS d "
        f"LEFT JOIN (SELECT * FROM {source_from} AS q LIMIT 0) AS s ON 1 = 1",
        [],
    )


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


def count_per_day(table: str, column: str, start: dt.datetime, end: dt.datetime) -> Statement:
    """(day, rows) with start <= column < end, per UTC day of `column`."""
    c = quote_identifier(column)
    return (
        f"SELECT DATE({c}) AS d, COUNT(*) FROM {quote_table(table)} "
        f"WHERE {c} >= %s AND {c} < %s GROUP BY DATE({c})",
        [naive_utc(start), naive_utc(end)],
    )


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
