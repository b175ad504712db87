"""Bulk writes with `LOAD DATA LOCAL INFILE`, where the server allows it.

TiDB (7.5+), MySQL 8 and MariaDB all take `LOAD DATA LOCAL INFILE`: the client streams rows as
text and the server parses them without an SQL statement per row. `IMPORT INTO` (TiDB) is not
used: it reads files from the TiDB server's own disk or from cloud storage, not from the client,
and runs as a background job outside the writer's bookkeeping.

Each call loads one bounded batch in its own statement and transaction, like the batched INSERT
path. With LOCAL, the server turns conversion errors and duplicate keys into warnings and goes
on; here any warning, or a row count that differs from the rows sent, rolls the batch back and
raises, so nothing is stored truncated or skipped silently.

Safety: with LOCAL INFILE on, the MySQL protocol lets the *server* name the client file it wants.
pymysql would send whatever it names; `_guarded_send` sends only the file of the statement this
thread is running, so a rogue server cannot read anything else. LOCAL INFILE is enabled only on
the connections `connect` opens, for this module's statements.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pymysql
import pymysql.connections

from providers.tidb import sql
from providers.tidb.settings import TiDBConnection

# Errors meaning "this server (or its configuration) does not take LOAD DATA LOCAL INFILE".
REFUSED = {
    1148,  # ER_NOT_ALLOWED_COMMAND: local_infile=0 on MariaDB and older MySQL
    3948,  # ER_CLIENT_LOCAL_FILES_DISABLED: local_infile=OFF on MySQL 8
    4166,  # ER_LOAD_INFILE_CAPABILITY_DISABLED: local_infile=0 on MariaDB 10.11
    1235,  # ER_NOT_SUPPORTED_YET
}


class BulkLoadError(RuntimeError):
    """A load the server accepted only in part (warnings, skipped or truncated rows)."""


_allowed = threading.local()
_send_local_file = getattr(pymysql.connections, "_send_local_file")  # noqa: B009 (mypy)


def _guarded_send(filename: str | bytes, conn) -> None:
    if os.fsdecode(filename) != getattr(_allowed, "path", None):
        raise pymysql.err.OperationalError(
            2068, f"the server asked for the client file {filename!r}, which is not being loaded"
        )
    _send_local_file(filename, conn)


setattr(pymysql.connections, "_send_local_file", _guarded_send)  # noqa: B010


@contextlib.contextmanager
def connect(cfg: TiDBConnection) -> Iterator[pymysql.connections.Connection]:
    """A connection of the platform's connection model with LOCAL INFILE enabled."""
    from providers.tidb.connection import connect_kwargs

    conn = pymysql.connect(**{**connect_kwargs(cfg), "local_infile": True})
    try:
        with conn.cursor() as cur:  # the statement's '\t' and '\\' need backslash escapes
            cur.execute("SET SESSION sql_mode = REPLACE(@@sql_mode, 'NO_BACKSLASH_ESCAPES', '')")
        yield conn
    finally:
        conn.close()


def _escape(text: pa.Array) -> pa.Array:
    """LOAD DATA's default escapes: backslash, tab, newline, carriage return, NUL."""
    for raw, escaped in (
        ("\\", "\\\\"),
        ("\t", "\\t"),
        ("\n", "\\n"),
        ("\r", "\\r"),
        ("\0", "\\0"),
    ):
        text = pc.replace_substring(text, raw, escaped)
    return text


def column_text(arr: pa.Array) -> pa.Array:
    """One column as LOAD DATA text: `\\N` for NULL (and NaN, as the INSERT path stores it),
    integers, booleans as 0/1, floats as the shortest decimal that reads back as the same
    double, decimals and dates as written, timestamps as naive UTC, text escaped."""
    from providers.tidb.types import _timestamp_text

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    kind = arr.type
    if pa.types.is_boolean(kind):
        text = arr.cast(pa.int8()).cast(pa.string())
    elif pa.types.is_floating(kind):
        wide = arr.cast(pa.float64())
        if pc.any(pc.is_inf(wide)).as_py():
            raise ValueError("infinite floating-point values cannot be stored")
        text = pc.if_else(pc.is_nan(wide), pa.scalar(None, pa.string()), wide.cast(pa.string()))
    elif pa.types.is_timestamp(kind):
        text = _timestamp_text(arr)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = _escape(arr.cast(pa.string()))
    elif pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_date(kind):
        text = arr.cast(pa.string())
    else:
        raise TypeError(f"no LOAD DATA text for Arrow type {kind}")
    return text.fill_null("\\N")


def rows_text(batch: pa.RecordBatch | pa.Table, columns: Sequence[str]) -> bytes:
    """`batch`'s rows, tab-separated, one per line (UTF-8)."""
    if not batch.num_rows:
        return b""
    texts = [column_text(batch.column(name)) for name in columns]
    lines = pc.binary_join_element_wise(*texts, "\t")
    return ("\n".join(lines.to_pylist()) + "\n").encode()


def load_statement(table: str, columns: Sequence[str], path: str) -> str:
    return (
        f"LOAD DATA LOCAL INFILE '{pymysql.converters.escape_string(path)}' "
        f"INTO TABLE {sql.quote_table(table)} CHARACTER SET utf8mb4 "
        "FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
        f"({', '.join(sql.quote_identifier(c) for c in columns)})"
    )


def load(
    conn: pymysql.connections.Connection, table: str, columns: Sequence[str], data: bytes, rows: int
) -> int:
    """Load `rows` rows of LOAD DATA text into `table` in one statement; the rows stored."""
    fd, path = tempfile.mkstemp(prefix="load-", suffix=".tsv")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        _allowed.path = path
        conn.begin()  # a load with warnings or skipped rows is rolled back, not kept in part
        try:
            with conn.cursor() as cur:
                stored = cur.execute(load_statement(table, columns, path))
                warnings = conn.show_warnings() if cur.warning_count else ()
            if warnings or stored != rows:
                shown = "; ".join(f"{w[0]} {w[1]}: {w[2]}" for w in warnings[:5])
                raise BulkLoadError(
                    f"LOAD DATA into {table} stored {stored} of {rows} rows with "
                    f"{len(warnings)} warning(s){': ' + shown if shown else ''}; rolled back"
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            _allowed.path = None
    finally:
        os.unlink(path)
    return stored


def probe(cfg: TiDBConnection, table: str, columns: Sequence[str]) -> str | None:
    """None when the server takes LOAD DATA LOCAL INFILE into `table` (an empty load), else why
    not. Other errors (a wrong table, a lost server) raise."""
    try:
        with connect(cfg) as conn:
            load(conn, table, columns, b"", 0)
    except pymysql.err.MySQLError as exc:
        code = exc.args[0] if exc.args else None
        if code in REFUSED:
            return f"{code}: {exc.args[1] if len(exc.args) > 1 else exc}"
        raise
    return None
