"""Query results as Arrow record batches.

Two maintained libraries, chosen by the connection's TLS setting (benchmarks/reader.py measures
both on the same 1M rows x 10 columns; docs/benchmarks.md has the figures):

- `tls: false`: connectorx (Rust). It reads over MySQL's binary protocol (exact FLOAT and DOUBLE
  bits, integers as integers) straight into Arrow, in batches of `batch_rows`, so memory stays
  bounded on any result size.
- `tls: true`: asyncmy (pymysql's protocol compiled with Cython) over a TLS session that verifies
  the server certificate (`connection.tls_context`), an unbuffered cursor read `batch_rows` rows
  at a time, converted to Arrow a column at a time. connectorx 0.4's MySQL source cannot do TLS:
  it builds its options from the URL alone, and the mysql crate's URL takes no TLS settings.
  asyncmy parses rows several times faster than pymysql; it is asynchronous, so a private
  thread runs its event loop and hands batches over a queue of two (works inside notebooks and
  other running event loops, and keeps memory bounded). The statements are the same; FLOAT
  columns are selected as DOUBLE (`declared.read_expression`), so the text protocol's six
  digits cannot round them.

Every session reads and compares timestamps in UTC (`time_zone = '+00:00'`). Statement values
are inlined for connectorx (it takes SQL text only): only numbers, timestamps and NULL may be
inlined (`render`), so no user-supplied text is ever pasted into SQL; entity keys and other text
values reach the server through pymysql's bound parameters, into scratch tables.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import gc
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import quote

import pyarrow as pa
from pymysql.converters import escape_item

from providers.tidb import sql, types
from providers.tidb.errors import TiDBReadError

if TYPE_CHECKING:
    from providers.tidb.settings import TiDBConnection

BATCH_ROWS = 50_000
_INLINE = (int, float, decimal.Decimal, dt.datetime, dt.date, type(None))


def render(statement: sql.Statement, for_display: bool = False) -> str:
    """The statement with its parameters inlined as SQL literals.

    For execution only numbers, timestamps and NULL are accepted: their literals cannot carry
    SQL. `for_display` (a job's `to_sql`) renders any parameter, with pymysql's escaping.
    """
    text, params = statement
    if not for_display:
        for p in params:
            if isinstance(p, bool) or not isinstance(p, _INLINE):
                raise TypeError(
                    f"Only numbers and timestamps are inlined into SQL, not {type(p).__name__}: "
                    "bind text values through a pymysql cursor."
                )
    return text % tuple(escape_item(p, "utf8mb4") for p in params)


_FLAVORS: dict[tuple[str, int], str] = {}


def _flavor(cfg: TiDBConnection) -> str:
    """'tidb', 'mariadb' or 'mysql': asked once per server and process."""
    from providers.tidb import connection

    key = (cfg.host, cfg.port)
    if key not in _FLAVORS:
        with connection.connect(cfg) as conn:
            _FLAVORS[key] = connection.flavor(conn)
    return _FLAVORS[key]


def session_statements(cfg: TiDBConnection) -> list[str]:
    """What every reading session runs first: UTC, and the statement time limit if one is set."""
    statements = ["SET time_zone = '+00:00'"]
    if cfg.read_timeout_seconds:
        if _flavor(cfg) == "mariadb":
            statements.append(f"SET SESSION max_statement_time = {int(cfg.read_timeout_seconds)}")
        else:  # MySQL and TiDB: milliseconds, for SELECT statements
            statements.append(
                f"SET SESSION max_execution_time = {int(cfg.read_timeout_seconds) * 1000}"
            )
    return statements


def connectorx_url(cfg: TiDBConnection) -> str:
    host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
    auth = f"{quote(cfg.user, safe='')}:{quote(cfg.password or '', safe='')}"
    options = (
        # Never switch to a Unix socket the server names: the configured address is the one.
        "prefer_socket=false"
        f"&tcp_connect_timeout_ms={cfg.connect_timeout_seconds * 1000}"
        # A server that vanishes mid-result is noticed within about 25 s instead of never.
        "&tcp_keepalive_time_ms=10000&tcp_keepalive_probe_interval_secs=5"
        "&tcp_keepalive_probe_count=3"
    )
    return f"mysql://{auth}@{host}:{cfg.port}/{quote(cfg.database, safe='')}?{options}"


def read_batches(
    cfg: TiDBConnection,
    statement: sql.Statement,
    batch_rows: int = BATCH_ROWS,
    library: str | None = None,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The result's schema, and its rows `batch_rows` at a time (memory bounded by a batch).
    `library` ('connectorx' or 'asyncmy') overrides the choice by TLS (benchmarks/reader.py)."""
    library = library or ("asyncmy" if cfg.tls else "connectorx")
    if library == "asyncmy":
        return _asyncmy_batches(cfg, statement, batch_rows)
    if library != "connectorx" or cfg.tls:
        raise ValueError(f"No reader {library!r} for this connection (TLS: {cfg.tls}).")
    import connectorx

    text = render(statement)
    try:
        reader = connectorx.read_sql(
            connectorx_url(cfg),
            text,
            return_type="arrow_stream",
            batch_size=batch_rows,
            pre_execution_query=session_statements(cfg),
        )
    except BaseException as exc:  # connectorx raises RuntimeError, or a Rust panic
        raise _read_error(exc) from exc
    return reader.schema, _guarded(reader)


def _guarded(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    except BaseException as exc:
        raise _read_error(exc) from exc


def _read_error(exc: BaseException) -> BaseException:
    if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
        return exc
    message = str(exc)
    if "MYSQL_TYPE_NULL" in message:
        message += " (a column is a bare NULL literal: give it a type, e.g. CAST(NULL AS CHAR))"
    return TiDBReadError(f"Reading the query result failed: {message}")


def read_table(
    cfg: TiDBConnection,
    statement: sql.Statement,
    batch_rows: int = BATCH_ROWS,
    library: str | None = None,
) -> pa.Table:
    schema, batches = read_batches(cfg, statement, batch_rows, library)
    return pa.Table.from_batches(list(batches), schema=schema)


_DONE = object()
_gc_lock = threading.Lock()
_gc_pauses = 0  # reads running with the cyclic garbage collector paused
_gc_was_enabled = True  # its state when the first of them began


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a batch of rows is parsed into objects.

    A result is millions of tuples; each allocation burst starts a collection that walks every
    object in the process (a Feast process holds many), which doubled the TLS read of 1M rows x
    10 columns (7.4 s against 3.8 s paused; benchmarks/reader.py). Rows hold no reference cycles;
    the collector runs again between batches and after the last one, as it was."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class _Channel:
    """What the producer thread holds: the queue (two batches at most in between) and the flag
    that says the reader is gone. The producer never holds the `_Batches` the caller iterates,
    so dropping that object is enough to stop the producer."""

    def __init__(self) -> None:
        import queue

        self.queue: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()

    def put(self, item: object) -> bool:
        """Hand `item` over unless the reader was abandoned (then: False)."""
        import queue

        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


class _Batches:
    """The reading side: batches until the producer is done. Closing it (explicitly, by reading
    to the end, or by dropping it, started or not) stops the producer and waits for it."""

    def __init__(self, channel: _Channel, thread: threading.Thread):
        self.channel = channel
        self.thread = thread

    def take(self) -> object:
        item = self.channel.queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise _read_error(item) from item
        if item is _DONE:
            self.close()
        return item

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self.channel.stop.is_set():
            raise StopIteration
        item = self.take()
        if item is _DONE:
            raise StopIteration
        return item

    def close(self) -> None:
        self.channel.stop.set()
        if self.thread is not threading.current_thread():
            self.thread.join()

    def __del__(self) -> None:
        self.close()


def _asyncmy_batches(
    cfg: TiDBConnection, statement: sql.Statement, batch_rows: int
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    import asyncio

    from providers.tidb import connection

    channel = _Channel()

    async def produce() -> None:
        import asyncmy
        from asyncmy.cursors import SSCursor

        conn = None
        try:
            kwargs = connection.connect_kwargs(cfg)
            for unsupported in ("ssl_disabled", "write_timeout"):  # pymysql-only options
                kwargs.pop(unsupported, None)
            kwargs["db"] = kwargs.pop("database")
            conn = await asyncmy.connect(**kwargs)
            # The cursor is never closed: closing an unbuffered cursor reads the rest of its
            # result, which an abandoned read must not wait for. Closing the connection (below)
            # drops whatever the server still sends.
            cur = conn.cursor(cursor=SSCursor)
            for text in session_statements(cfg)[1:]:  # the time zone is the init command
                await cur.execute(text)
            text, params = statement
            await cur.execute(text, tuple(params))
            # Full column metadata (flags, charset) as pymysql keeps it; description drops it.
            result = getattr(cur, "_result", None)
            fields = list(getattr(result, "fields", None) or [])
            if not fields:
                raise TiDBReadError("asyncmy gave no column metadata for the result.")
            kinds = [types.arrow_type_of(f) for f in fields]
            schema = pa.schema([(f.name, k) for f, k in zip(fields, kinds, strict=True)])
            if not channel.put(schema):
                return
            while True:
                with _gc_paused():  # while rows become objects, not while waiting
                    rows = await cur.fetchmany(batch_rows)
                    if not rows:
                        break
                    cols = list(zip(*rows, strict=True))
                    arrays = [
                        types.column_to_arrow(list(c), k) for c, k in zip(cols, kinds, strict=True)
                    ]
                    del rows, cols
                if not channel.put(pa.RecordBatch.from_arrays(arrays, schema=schema)):
                    return
        except BaseException as exc:  # handed to the reading thread, which raises it
            channel.put(exc)
        finally:
            if conn is not None:
                conn.close()
            channel.put(_DONE)

    thread = threading.Thread(target=asyncio.run, args=(produce(),), name="tidb-tls-read")
    thread.start()
    batches = _Batches(channel, thread)
    schema = batches.take()
    if schema is _DONE:
        raise TiDBReadError("The query returned no result set.")
    return schema, batches
