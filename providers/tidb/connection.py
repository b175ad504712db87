"""Connections to TiDB (or any MySQL-protocol server) with pymysql, and bounded batch writes."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pymysql
import pymysql.cursors

from providers.tidb import sql, textrows, types

if TYPE_CHECKING:
    from providers.tidb.offline_store import TiDBOfflineStoreConfig

log = logging.getLogger(__name__)


def connect_kwargs(cfg: TiDBOfflineStoreConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "host": cfg.host,
        "port": cfg.port,
        "user": cfg.user,
        "password": cfg.password or "",
        "database": cfg.database,
        "charset": "utf8mb4",
        "autocommit": True,
        "connect_timeout": cfg.connect_timeout_seconds,
        "read_timeout": cfg.read_timeout_seconds,
        "write_timeout": cfg.read_timeout_seconds,
        # Every session reads and writes timestamps in UTC.
        "init_command": "SET time_zone = '+00:00'",
        "local_infile": False,
    }
    if cfg.tls:
        kwargs["ssl"] = tls_context(cfg)
    else:
        # tls: false means no TLS. pymysql >= 1.2 would otherwise try it unverified whenever the
        # server offers it (no protection against a man in the middle) and build a certificate
        # store for every connection (a tenth of the served-feature log writer's CPU).
        kwargs["ssl_disabled"] = True
    return kwargs


def tls_context(cfg: TiDBOfflineStoreConfig) -> ssl.SSLContext:
    """The TLS context: the CA bundle (or the system's), the client certificate for mutual TLS,
    and, unless tls_verify is false, certificate and host-name verification."""
    context = ssl.create_default_context(cafile=cfg.tls_ca)
    if cfg.tls_cert:
        context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    if not cfg.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextlib.contextmanager
def connect(cfg: TiDBOfflineStoreConfig) -> Iterator[pymysql.connections.Connection]:
    conn = pymysql.connect(**connect_kwargs(cfg))
    try:
        yield conn
    finally:
        conn.close()


def execute(conn: pymysql.connections.Connection, statement: sql.Statement) -> None:
    text, params = statement
    with conn.cursor() as cur:
        cur.execute(text, tuple(params))


def fetch_one(conn: pymysql.connections.Connection, statement: sql.Statement) -> tuple | None:
    text, params = statement
    with conn.cursor() as cur:
        cur.execute(text, tuple(params))
        return cur.fetchone()


def describe(conn: pymysql.connections.Connection, from_expression: str) -> list[types.ColumnMeta]:
    """pymysql field descriptors of `SELECT * FROM <from_expression> LIMIT 0`."""
    text, params = sql.select_limit_0(from_expression)
    with conn.cursor() as cur:
        cur.execute(text, tuple(params))
        return _fields(cur)


def _fields(cur: pymysql.cursors.Cursor) -> list[types.ColumnMeta]:
    """Full column metadata of the last result (cursor.description drops flags and charset)."""
    result = getattr(cur, "_result", None)
    return list(result.fields) if result is not None and result.fields else []


def is_mariadb(conn: pymysql.connections.Connection) -> bool:
    return "mariadb" in conn.get_server_info().lower()


def json_columns(conn: pymysql.connections.Connection, table: str) -> set[str]:
    """Columns of `table` that hold JSON: the JSON type, or (MariaDB) its LONGTEXT alias."""
    statements = [sql.json_columns(table)]
    if is_mariadb(conn):
        statements.append(sql.mariadb_json_alias_columns(table))
    found: set[str] = set()
    with conn.cursor() as cur:
        for text, params in statements:
            cur.execute(text, params)
            found |= {r[0] for r in cur.fetchall()}
    return found


def columns_info(conn: pymysql.connections.Connection, table: str) -> dict[str, bool]:
    """Column name -> whether the server fills it when a write omits it."""
    text, params = sql.columns_info(table)
    with conn.cursor() as cur:
        cur.execute(text, params)
        return {r[0]: bool(r[1]) for r in cur.fetchall()}


def table_exists(conn: pymysql.connections.Connection, table: str) -> bool:
    row = fetch_one(conn, sql.table_exists(table))
    return bool(row and row[0])


def query_to_arrow(
    conn: pymysql.connections.Connection,
    statement: sql.Statement,
    json_columns: set[str] | frozenset[str] = frozenset(),
    drop_columns: set[str] | frozenset[str] = frozenset(),
    fetch_rows: int = 50_000,
    vectorised: bool = True,
) -> pa.Table:
    """Run a query with an unbuffered cursor and build an Arrow table `fetch_rows` rows at a time.

    Rows are read off the wire a batch at a time (`textrows`); `vectorised=False`, or a pymysql
    whose internals `textrows` does not recognise, reads them with pymysql value by value.
    """
    text, params = statement
    with conn.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute(text, tuple(params))
        fields = _fields(cur)
        names = [f.name for f in fields]
        kinds = [types.arrow_type_of(f) for f in fields]
        decode = [f.name in json_columns or types.is_json_field(f) for f in fields]
        keep = [i for i, n in enumerate(names) if n not in drop_columns]
        kept = [names[i] for i in keep]
        batches: list[pa.Table] = []
        result = getattr(cur, "_result", None)
        if vectorised and fields and textrows.supported(conn, result):
            batches = [
                pa.Table.from_arrays(columns, names=kept)
                for columns in textrows.read_batches(conn, result, kinds, decode, keep, fetch_rows)
            ]
        while result is not None and result.unbuffered_active:  # pymysql reads the rows
            rows = cur.fetchmany(fetch_rows)
            if not rows:
                break
            cols = list(zip(*rows, strict=True))
            batches.append(
                pa.Table.from_arrays(
                    [types.column_to_arrow(list(cols[i]), kinds[i], decode[i]) for i in keep],
                    names=kept,
                )
            )
    if not batches:
        schema = pa.schema([(names[i], pa.string() if decode[i] else kinds[i]) for i in keep])
        return schema.empty_table()
    if len(batches) == 1:
        return batches[0]
    return pa.concat_tables(batches, promote_options="permissive")


def insert_arrow(
    conn: pymysql.connections.Connection,
    table_name: str,
    table: pa.Table,
    batch_rows: int,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Insert `table` in batches of at most `batch_rows` rows, each its own transaction.

    Bounded batches keep every transaction under TiDB's size limit. pymysql's executemany turns
    each batch into multi-row INSERT statements (bounded by max_allowed_packet).
    """
    columns = table.column_names
    statement = sql.insert(table_name, columns)
    written = 0
    with conn.cursor() as cur:
        for rows in types.arrow_rows(table, columns, batch_rows):
            if not rows:
                continue
            conn.begin()
            try:
                cur.executemany(statement, rows)
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            written += len(rows)
            if progress is not None:
                progress(len(rows))
    return written
