"""Read a query's result rows straight off the wire into Arrow columns, many rows per step.

pymysql parses the MySQL text protocol one value at a time in Python: per row it reads a packet
header and body, builds a packet object, then per value reads a length prefix, slices, decodes and
converts. For a point-in-time join's 100k rows x 20 features that was more CPU than the database's
own work on the query (benchmarks/historical.py). Here the row packets of a result that pymysql has
started (an unbuffered cursor after `execute`: column definitions read, rows not yet) are read in
large chunks from the connection's socket buffer; a Python loop only walks the packet headers, and
each column's values are located for all rows of a batch at once with NumPy (a row's k-th value
starts where its (k-1)-th ends, so k vectorised steps cover every row) and handed to Arrow, which
parses numbers and timestamps in C++ (correctly rounded, as Python's `float` is).

The values are the same text the server sends to any client; nothing about the query changes.
Columns whose type has no exact vectorised conversion here (JSON, TIME, BIT, YEAR, NULL, or any
value Arrow refuses, e.g. a zero date) are converted value by value with pymysql's own converter
for that column, then `types.column_to_arrow` as before, so every column comes out exactly as the
value-by-value path makes it (tests/integration/test_textrows.py holds the two equal, type by type).

This reads pymysql's connection internals (`_rfile`, `_next_seq_id`, the unbuffered result's
`unbuffered_active`); `supported` checks they exist, and `connection.query_to_arrow` uses
pymysql's own row reading when they do not.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
from pymysql import err
from pymysql.constants import CR, FIELD_TYPE

from providers.tidb import types

# pymysql's Connection and MySQLResult; typed Any because their private attributes are read here.
Connection = Any
MySQLResult = Any

MAX_PACKET = 0xFFFFFF  # a payload this long continues in the next packet
NULL = 0xFB
READ_BYTES = 1 << 20
BATCH_BYTES = 64 << 20  # a batch's raw rows stay under this (and its offsets fit int32)

_INTS = {
    FIELD_TYPE.TINY,
    FIELD_TYPE.SHORT,
    FIELD_TYPE.INT24,
    FIELD_TYPE.LONG,
    FIELD_TYPE.LONGLONG,
}
_FLOATS = {FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE, FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL}
_TIMES = {FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP}
_DATES = {FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE}
_TEXT = types.STRING_CODES  # CHAR, VARCHAR, TEXT, BLOB, ENUM, SET


def supported(conn: Connection, result: MySQLResult | None) -> bool:
    """Whether `result` is an unbuffered result whose rows are still unread on `conn`."""
    return (
        result is not None
        and getattr(result, "unbuffered_active", False) is True
        and getattr(result, "connection", None) is conn
        and getattr(conn, "_rfile", None) is not None
        and isinstance(getattr(conn, "_next_seq_id", None), int)
        and len(getattr(result, "converters", ())) == len(getattr(result, "fields", ()) or ())
    )


class _Rows:
    """The row packets of one unbuffered result, in batches of (bytes, row starts, row ends)."""

    def __init__(self, conn: Connection, result: MySQLResult):
        self.conn = conn
        self.result = result
        self.buf = bytearray()
        self.pos = 0
        self.done = False

    def _fill(self) -> None:
        """Read at least one more byte from the socket (what is already buffered comes first)."""
        try:
            chunk = self.conn._rfile.read1(READ_BYTES)
        except OSError as exc:  # as pymysql's _read_bytes: the connection is unusable now
            self._lost()
            raise err.OperationalError(
                CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({exc})"
            ) from exc
        if not chunk:
            self._lost()
            raise err.OperationalError(
                CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
            )
        self.buf += chunk

    def _lost(self) -> None:
        self._finish()
        self.conn._force_close()

    def _finish(self) -> None:
        self.done = True
        self.result.unbuffered_active = False
        self.result.connection = None

    def _packet(self) -> tuple[int, int]:
        """The next packet's payload as (start, end) in self.buf, its sequence number checked."""
        while True:
            buf, pos = self.buf, self.pos
            if len(buf) - pos >= 4:
                length = buf[pos] | buf[pos + 1] << 8 | buf[pos + 2] << 16
                if len(buf) - pos - 4 >= length:
                    break
            self._fill()
        seq = buf[pos + 3]
        if seq != self.conn._next_seq_id:
            self._lost()
            if seq == 0:  # as pymysql: MariaDB's error packet when it shuts down
                raise err.OperationalError(
                    CR.CR_SERVER_LOST, "Lost connection to MySQL server during query"
                )
            raise err.InternalError(
                f"Packet sequence number wrong - got {seq} expected {self.conn._next_seq_id}"
            )
        self.conn._next_seq_id = (seq + 1) % 256
        self.pos = pos + 4 + length
        return pos + 4, pos + 4 + length

    def _control(self, start: int, end: int) -> bool:
        """Handle an EOF or error packet (True: the result has ended); False for a row."""
        first = self.buf[start]
        if first == 0xFE and end - start < 9:  # EOF: warnings, status
            if end - start >= 5:
                warnings, status = struct.unpack_from("<HH", self.buf, start + 1)
                self.result.warning_count = warnings
                self.result.has_next = bool(status & 8)  # SERVER_MORE_RESULTS_EXISTS
            self._finish()
            return True
        if first == 0xFF:  # the query failed part way (e.g. a timeout, a subquery's rows)
            payload = bytes(self.buf[start:end])
            self._finish()
            err.raise_mysql_exception(payload)
        return False

    def batches(self, max_rows: int) -> Iterator[tuple[bytes, np.ndarray, np.ndarray]]:
        while not self.done:
            del self.buf[: self.pos]  # rows already handed out
            self.pos = 0
            starts: list[int] = []
            ends: list[int] = []
            big = None
            while len(starts) < max_rows:
                if starts and self.pos - starts[0] > BATCH_BYTES:
                    break
                start, end = self._packet()
                if end - start == MAX_PACKET:  # a row of 16 MiB or more: its own batch
                    big = self._joined(start, end)
                    break
                if self._control(start, end):
                    break
                starts.append(start)
                ends.append(end)
            if starts:
                base = starts[0]
                data = bytes(self.buf[base : ends[-1]])
                yield (
                    data,
                    np.asarray(starts, dtype=np.int64) - base,
                    np.asarray(ends, dtype=np.int64) - base,
                )
            if big is not None:
                yield big, np.zeros(1, dtype=np.int64), np.full(1, len(big), dtype=np.int64)

    def drain(self) -> None:
        """Read and drop the rest of the result, so the connection can run the next statement."""
        while not self.done:
            start, end = self._packet()
            if end - start == MAX_PACKET:
                self._joined(start, end)  # a long row's continuation is never EOF or error
            else:
                self._control(start, end)

    def _joined(self, start: int, end: int) -> bytes:
        parts = [bytes(self.buf[start:end])]
        while end - start == MAX_PACKET:
            start, end = self._packet()
            parts.append(bytes(self.buf[start:end]))
        return b"".join(parts)


def _locate(b: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For values starting at `pos` (length-encoded strings): value start, length, is-null."""
    lead = b[pos].astype(np.int64)
    null = lead == NULL
    length = np.where(lead < NULL, lead, 0)
    header = np.ones_like(pos)
    for code, size in ((0xFC, 2), (0xFD, 3), (0xFE, 8)):
        wide = np.flatnonzero(lead == code)
        if wide.size:
            at = pos[wide] + 1
            value = np.zeros(wide.size, dtype=np.uint64)
            for k in range(size):
                value |= b[at + k].astype(np.uint64) << np.uint64(8 * k)
            length[wide] = value.astype(np.int64)
            header[wide] = 1 + size
    if (lead == 0xFF).any():
        raise err.InternalError("malformed row: 0xFF is not a length-encoded integer")
    return pos + header, length, null


def _binary_column(
    b: np.ndarray, start: np.ndarray, length: np.ndarray, null: np.ndarray
) -> pa.Array:
    n = len(start)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length, out=offsets[1:])
    total = int(offsets[-1])
    if total:
        index = np.repeat(start - offsets[:-1], length) + np.arange(total, dtype=np.int64)
        data = b[index]
    else:
        data = np.zeros(0, dtype=np.uint8)
    nulls = int(null.sum())
    validity = pa.py_buffer(np.packbits(~null, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(
        pa.binary(),
        n,
        [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
        null_count=nulls,
    )


def _vectorised(raw: pa.Array, field: Any, kind: pa.DataType) -> pa.Array | None:
    """The column converted in Arrow, exactly as pymysql + column_to_arrow would; None: no
    such conversion here (the caller converts value by value)."""
    code = field.type_code
    try:
        if code in _FLOATS and pa.types.is_floating(kind):
            # pymysql: float(text) (Decimal(text) -> float for DECIMAL): one correctly rounded
            # double, then (FLOAT columns) rounded to float32 as pa.array does.
            doubles = raw.cast(pa.string()).cast(pa.float64())
            return doubles if kind == pa.float64() else doubles.cast(kind, safe=False)
        if code in _INTS and (pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
            ints = raw.cast(pa.string()).cast(pa.int64() if pa.types.is_boolean(kind) else kind)
            return ints.cast(pa.bool_()) if pa.types.is_boolean(kind) else ints
        if code in _TIMES and kind == types.UTC_US:
            return raw.cast(pa.string()).cast(pa.timestamp("us")).cast(types.UTC_US)
        if code in _DATES and kind == pa.date32():
            return raw.cast(pa.string()).cast(pa.date32())
        if code in _TEXT and kind == pa.string():
            return raw.cast(pa.string())
        if code in _TEXT and kind == pa.binary():
            return raw
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None  # e.g. a zero date, an out-of-range value: pymysql's way decides
    return None


def _by_value(raw: pa.Array, converter: tuple, kind: pa.DataType, json_encoded: bool) -> pa.Array:
    """pymysql's per-value decoding and conversion, then column_to_arrow: the reference path."""
    encoding, convert = converter
    values = []
    for value in raw.to_pylist():
        if value is not None:
            if encoding is not None:
                value = value.decode(encoding)
            if convert is not None:
                value = convert(value)
        values.append(value)
    return types.column_to_arrow(values, kind, json_encoded)


def read_batches(
    conn: Connection,
    result: MySQLResult,
    kinds: list[pa.DataType],
    json_columns: list[bool],
    keep: list[int],
    batch_rows: int,
) -> Iterator[list[pa.Array]]:
    """The result's rows as Arrow columns (those in `keep`), `batch_rows` rows at a time."""
    fields = result.fields
    rows = _Rows(conn, result)
    try:
        for data, starts, ends in rows.batches(batch_rows):
            b = np.frombuffer(data, dtype=np.uint8)
            pos = starts
            located = []
            for _ in fields:
                start, length, null = _locate(b, pos)
                located.append((start, length, null))
                pos = start + length
            if not np.array_equal(pos, ends):
                raise err.InternalError("malformed result row: values do not fill the row packet")
            columns = []
            for i in keep:
                raw = _binary_column(b, *located[i])
                column = None if json_columns[i] else _vectorised(raw, fields[i], kinds[i])
                if column is None:
                    column = _by_value(raw, result.converters[i], kinds[i], json_columns[i])
                columns.append(column)
            yield columns
    finally:
        if not rows.done:  # the caller stopped early or decoding failed: drop the rest
            rows.drain()
