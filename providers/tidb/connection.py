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

from providers.tidb import sql, types
from providers.tidb.keys import SourceColumn

if TYPE_CHECKING:
    from providers.tidb.settings import TiDBConnection

log = logging.getLogger(__name__)


def connect_kwargs(cfg: TiDBConnection) -> dict[str, Any]:
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


def tls_context(cfg: TiDBConnection) -> ssl.SSLContext:
    """The TLS context: the CA bundle (or the system's), the client certificate for mutual TLS,
    and, unless tls_verify is false, certificate and host-name verification."""
    context = ssl.create_default_context(cafile=cfg.tls_ca)
    if cfg.tls_cert:
        context.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    if not cfg.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect_raw(cfg: TiDBConnection) -> pymysql.connections.Connection:
    """A new connection; the caller closes it (`connect` does that for a block)."""
    return pymysql.connect(**connect_kwargs(cfg))


@contextlib.contextmanager
def connect(cfg: TiDBConnection) -> Iterator[pymysql.connections.Connection]:
    conn = connect_raw(cfg)
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
        return result_fields(cur)


def result_fields(cur: pymysql.cursors.Cursor) -> list[types.ColumnMeta]:
    """Full column metadata of the last result (cursor.description drops flags and charset)."""
    result = getattr(cur, "_result", None)
    return list(result.fields) if result is not None and result.fields else []


def probe(
    conn: pymysql.connections.Connection,
    from_expression: str,
    columns: list[str],
    collated: list[str] = (),  # type: ignore[assignment]
) -> dict[str, SourceColumn]:
    """The server's type of each of `columns` of a source, and the character set and collation
    of each of `collated` (string keys), in one round trip that reads no rows."""
    columns = list(dict.fromkeys(columns))
    text, params = sql.probe(from_expression, columns, list(collated))
    with conn.cursor() as cur:
        cur.execute(text, params)
        fields = result_fields(cur)
        row = cur.fetchone() or ()
    found = {}
    for i, name in enumerate(columns):
        f = fields[i]
        charset = collation = None
        if name in collated:
            k = len(columns) + 2 * list(collated).index(name)
            charset, collation = row[k], row[k + 1]
        found[name] = SourceColumn(
            name, f.type_code, f.flags, f.scale, charset, collation, f.length, f.charsetnr
        )
    return found


def is_mariadb(conn: pymysql.connections.Connection) -> bool:
    return flavor(conn) == "mariadb"


def flavor(conn: pymysql.connections.Connection) -> str:
    """'tidb', 'mariadb' or 'mysql', from the version the server reports."""
    info = conn.get_server_info().lower()
    return "tidb" if "tidb" in info else "mariadb" if "mariadb" in info else "mysql"


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


def insert_arrow(
    conn: pymysql.connections.Connection,
    table_name: str,
    table: pa.Table,
    batch_rows: int,
    progress: Callable[[int], Any] | None = None,
) -> int:
    """Insert `table` in batches of at most `batch_rows` rows, each its own transaction.

    Bounded batches keep every transaction under TiDB's size limit. Tables of integers,
    booleans, floats, timestamps, text and bytes (entity rows, served-feature logs) are sent as
    multi-row INSERTs whose literals Arrow formats a column at a time (`types.values_text`:
    digits, shortest round-trip decimals, quoted timestamps, hex); others go through pymysql's
    executemany, which binds values one by one (bounded by max_allowed_packet).
    """
    columns = table.column_names
    statement = sql.insert(table_name, columns)
    literal = types.values_text(table, columns, batch_rows)
    batches = (
        ((values, n) for values, n in literal)
        if literal is not None
        else ((rows, len(rows)) for rows in types.arrow_rows(table, columns, batch_rows) if rows)
    )
    written = 0
    with conn.cursor() as cur:
        for payload, n in batches:
            conn.begin()
            try:
                if isinstance(payload, str):
                    cur.execute(sql.insert_values(table_name, columns, payload), ())
                else:
                    cur.executemany(statement, payload)
                conn.commit()
            except Exception:
                conn.rollback()
                raise
            written += n
            if progress is not None:
                progress(n)
    return written
