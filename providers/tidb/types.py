"""MySQL/TiDB <-> Feast/Arrow types.

Reading: each result column's MySQL type (pymysql field metadata) decides its Arrow type.
Writing: each Arrow type decides a column DDL, and values are converted to what pymysql binds.

| MySQL / TiDB                         | Arrow                         | Feast ValueType      |
|--------------------------------------|-------------------------------|----------------------|
| TINYINT(1) / BOOL                    | bool                          | BOOL                 |
| TINYINT, SMALLINT, MEDIUMINT, INT    | int32                         | INT32                |
| BIGINT, YEAR, BIT                    | int64                         | INT64                |
| FLOAT                                | float32                       | FLOAT                |
| DOUBLE, DECIMAL (lossy)              | float64                       | DOUBLE               |
| CHAR, VARCHAR, TEXT, ENUM, SET, TIME | string                        | STRING               |
| BINARY, VARBINARY, BLOB              | binary                        | BYTES                |
| DATETIME, TIMESTAMP (read as UTC)    | timestamp[us, tz=UTC]         | UNIX_TIMESTAMP       |
| DATE                                 | date32                        | UNIX_TIMESTAMP       |
| JSON (arrays, objects)               | decoded: list<...> / string   | STRING (declare the  |
|                                      |                               | Array type in schema)|

Arrays are stored as JSON: writing a list column creates a JSON column; reading a JSON column
decodes it, so `Array(Int64)` features round-trip.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from feast.value_type import ValueType
from pymysql.constants import FIELD_TYPE, FLAG


class ColumnMeta(Protocol):
    """The column metadata pymysql reads from the server (its ColumnMeta), or `keys.SourceColumn`."""

    @property
    def name(self) -> str: ...
    @property
    def type_code(self) -> int: ...
    @property
    def length(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def charsetnr(self) -> int: ...
    @property
    def scale(self) -> int: ...


BINARY_CHARSET = 63
UTC_US = pa.timestamp("us", tz="UTC")

STRING_CODES = {
    FIELD_TYPE.VARCHAR,
    FIELD_TYPE.VAR_STRING,
    FIELD_TYPE.STRING,
    FIELD_TYPE.ENUM,
    FIELD_TYPE.SET,
    FIELD_TYPE.TINY_BLOB,
    FIELD_TYPE.MEDIUM_BLOB,
    FIELD_TYPE.LONG_BLOB,
    FIELD_TYPE.BLOB,
}
_INT32_CODES = {FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG}


def arrow_type_of(field: ColumnMeta) -> pa.DataType:
    """Arrow type for a result column, from the server's column metadata."""
    code = field.type_code
    if code == FIELD_TYPE.TINY and field.length == 1:
        return pa.bool_()
    if code in _INT32_CODES:
        # INT UNSIGNED does not fit int32
        return (
            pa.int64() if (code == FIELD_TYPE.LONG and field.flags & FLAG.UNSIGNED) else pa.int32()
        )
    if code in (FIELD_TYPE.LONGLONG, FIELD_TYPE.YEAR, FIELD_TYPE.BIT):
        return pa.int64()
    if code == FIELD_TYPE.FLOAT:
        return pa.float32()
    if code in (FIELD_TYPE.DOUBLE, FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        return pa.float64()
    if code in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        return UTC_US
    if code in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return pa.date32()
    if code == FIELD_TYPE.JSON:
        return pa.string()  # decoded later when the column is known to hold JSON
    if code == FIELD_TYPE.TIME:
        return pa.string()
    if code == FIELD_TYPE.NULL:
        return pa.null()
    if code in STRING_CODES:
        return pa.binary() if field.charsetnr == BINARY_CHARSET else pa.string()
    return pa.string()


def _normalise(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_boolean(kind):
        return bool(value)  # TINYINT(1) arrives as 0/1
    if pa.types.is_timestamp(kind) and isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC)
    if pa.types.is_floating(kind) and isinstance(value, decimal.Decimal):
        return float(value)
    if pa.types.is_integer(kind) and isinstance(value, bytes):  # BIT(n)
        return int.from_bytes(value, "big")
    if pa.types.is_string(kind) and not isinstance(value, str):
        return value.decode() if isinstance(value, bytes) else str(value)
    return value


def column_to_arrow(values: list, kind: pa.DataType) -> pa.Array:
    """Build one Arrow column from the values pymysql (or asyncmy) returned; the common types
    are converted by Arrow in C, anything it refuses value by value."""
    try:
        if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_string(kind):
            return pa.array(values, type=kind)  # int/float/str/None as they are
        if pa.types.is_timestamp(kind):  # naive datetimes in the UTC session
            return pa.array(values, type=pa.timestamp("us")).cast(kind)
        if pa.types.is_boolean(kind):  # TINYINT(1) arrives as 0/1
            return pa.array(values, type=pa.int64()).cast(kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        pass
    if pa.types.is_floating(kind) and any(isinstance(v, decimal.Decimal) for v in values[:64]):
        try:  # DECIMAL: exact decimals, then their text parsed, correctly rounded
            return pa.array(values).cast(pa.string()).cast(kind)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    return pa.array([_normalise(v, kind) for v in values], type=kind)


# ----------------------------------------------------------------------------- feast types

_SOURCE_TYPE_TO_VALUE_TYPE = {
    "tinyint(1)": ValueType.BOOL,
    "bool": ValueType.BOOL,
    "boolean": ValueType.BOOL,
    "tinyint": ValueType.INT32,
    "smallint": ValueType.INT32,
    "mediumint": ValueType.INT32,
    "int": ValueType.INT32,
    "integer": ValueType.INT32,
    "bigint": ValueType.INT64,
    "year": ValueType.INT64,
    "bit": ValueType.INT64,
    "float": ValueType.FLOAT,
    "double": ValueType.DOUBLE,
    "real": ValueType.DOUBLE,
    "decimal": ValueType.DOUBLE,
    "char": ValueType.STRING,
    "varchar": ValueType.STRING,
    "text": ValueType.STRING,
    "tinytext": ValueType.STRING,
    "mediumtext": ValueType.STRING,
    "longtext": ValueType.STRING,
    "enum": ValueType.STRING,
    "set": ValueType.STRING,
    "time": ValueType.STRING,
    "json": ValueType.STRING,
    "binary": ValueType.BYTES,
    "varbinary": ValueType.BYTES,
    "blob": ValueType.BYTES,
    "tinyblob": ValueType.BYTES,
    "mediumblob": ValueType.BYTES,
    "longblob": ValueType.BYTES,
    "datetime": ValueType.UNIX_TIMESTAMP,
    "timestamp": ValueType.UNIX_TIMESTAMP,
    "date": ValueType.UNIX_TIMESTAMP,
    "null": ValueType.NULL,
}


def source_type_name(field: ColumnMeta) -> str:
    """The MySQL type name of a result column, as `TiDBSource` reports it to Feast."""
    kind = arrow_type_of(field)
    code = field.type_code
    if pa.types.is_boolean(kind):
        return "tinyint(1)"
    if code == FIELD_TYPE.LONG and field.flags & FLAG.UNSIGNED:
        return "int unsigned"  # does not fit INT32
    if code == FIELD_TYPE.JSON:
        return "json"
    if pa.types.is_binary(kind):
        return "blob"
    names = {
        FIELD_TYPE.TINY: "tinyint",
        FIELD_TYPE.SHORT: "smallint",
        FIELD_TYPE.INT24: "mediumint",
        FIELD_TYPE.LONG: "int",
        FIELD_TYPE.LONGLONG: "bigint",
        FIELD_TYPE.YEAR: "year",
        FIELD_TYPE.BIT: "bit",
        FIELD_TYPE.FLOAT: "float",
        FIELD_TYPE.DOUBLE: "double",
        FIELD_TYPE.DECIMAL: "decimal",
        FIELD_TYPE.NEWDECIMAL: "decimal",
        FIELD_TYPE.DATETIME: "datetime",
        FIELD_TYPE.TIMESTAMP: "timestamp",
        FIELD_TYPE.DATE: "date",
        FIELD_TYPE.NEWDATE: "date",
        FIELD_TYPE.TIME: "time",
        FIELD_TYPE.ENUM: "enum",
        FIELD_TYPE.SET: "set",
        FIELD_TYPE.NULL: "null",
    }
    return names.get(code, "varchar")


def value_type_of(field: ColumnMeta) -> ValueType:
    """The Feast type of a result column, as `feast apply` infers it from the source."""
    return mysql_to_feast_value_type(source_type_name(field))


def mysql_to_feast_value_type(type_name: str) -> ValueType:
    name = type_name.strip().lower()
    if name in _SOURCE_TYPE_TO_VALUE_TYPE:
        return _SOURCE_TYPE_TO_VALUE_TYPE[name]
    base = name.split("(")[0].replace(" unsigned", "").strip()
    if base in ("int", "integer") and "unsigned" in name:
        return ValueType.INT64  # values up to 4294967295
    if base in _SOURCE_TYPE_TO_VALUE_TYPE:
        return _SOURCE_TYPE_TO_VALUE_TYPE[base]
    raise ValueError(
        f"The MySQL/TiDB type '{type_name}' has no Feast type; cast the column in the source query."
    )


# ----------------------------------------------------------------------------- writing


def ddl_for_arrow(kind: pa.DataType, key: bool = False) -> str:
    """Column DDL for values of Arrow type `kind`. `key` columns get an indexable VARCHAR."""
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_float32(kind) or pa.types.is_float16(kind):
        return "FLOAT"
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "DOUBLE"
    if pa.types.is_timestamp(kind):
        return "DATETIME(6)"
    if pa.types.is_date(kind):
        return "DATE"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_dictionary(kind):
        return "VARCHAR(255)" if key else "TEXT"
    if (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
    ):
        return "VARBINARY(255)" if key else "BLOB"
    if pa.types.is_null(kind):
        return "TEXT"
    if (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_struct(kind)
        or pa.types.is_map(kind)
    ):
        return "JSON"
    raise ValueError(f"Arrow type {kind} cannot be stored in TiDB by this store.")


def ddl_for_field(field: ColumnMeta) -> str:
    """Column DDL reproducing a result column (used to copy a query's rows into a table)."""
    code = field.type_code
    kind = arrow_type_of(field)
    if code == FIELD_TYPE.JSON:
        return "JSON"
    if code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        return f"DECIMAL({min(max(field.length - (1 if field.scale else 0) - (0 if field.flags & FLAG.UNSIGNED else 1), 1), 65)}, {field.scale})"
    if code in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        return "DATETIME(6)"
    if code in STRING_CODES and not pa.types.is_binary(kind):
        # field.length is in bytes of the column's charset; over-sizing is harmless, truncation is not.
        return f"VARCHAR({field.length})" if 0 < field.length <= 4096 else "LONGTEXT"
    if pa.types.is_binary(kind):
        return f"VARBINARY({field.length})" if 0 < field.length <= 3072 else "LONGBLOB"
    if code == FIELD_TYPE.TIME:
        return "TIME(6)"
    if pa.types.is_integer(kind) and not pa.types.is_boolean(kind):
        return (
            "BIGINT UNSIGNED"
            if field.flags & FLAG.UNSIGNED and code == FIELD_TYPE.LONGLONG
            else "BIGINT"
        )
    return ddl_for_arrow(kind)


def _to_db(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(_finite(value), default=_json_default, allow_nan=False)
    return value


def _finite(value: Any) -> Any:
    """JSON has no NaN or Infinity: store them as null inside arrays and objects."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def arrow_rows(table: pa.Table, columns: Sequence[str], batch_rows: int) -> Iterator[list[tuple]]:
    """Rows of `table` (only `columns`, in that order) as DB-ready tuples, `batch_rows` at a time."""
    for batch in table.select(list(columns)).to_batches(max_chunksize=batch_rows):
        yield list(zip(*(_db_values(arr) for arr in batch.columns), strict=True))


def _timestamp_text(arr: pa.Array) -> pa.Array:
    """Naive UTC wall-clock text, as pymysql writes a datetime ('2026-01-02 03:04:05.123456', no
    fraction when it is zero); sub-microsecond digits are dropped, as a datetime's are."""
    if arr.type.tz is not None:
        arr = arr.cast(pa.timestamp(arr.type.unit, tz="UTC"))
    text = arr.cast(pa.timestamp("us"), safe=False).cast(pa.string())
    return pc.replace_substring_regex(text, r"\.000000$", "")


def sql_literals(arr: pa.Array) -> pa.Array | None:
    """Each value as an SQL literal that cannot carry SQL, whatever the server's sql_mode: integers
    and booleans as digits, floats as the shortest decimal that reads back as the same double
    (NaN as NULL, as pymysql's path stores it), timestamps as quoted digits and separators, text
    and bytes as hex (X'...', the exact bytes; text marked utf8mb4), nulls as NULL. None for other
    types, and for infinite floats, which pymysql's path reports (bound there)."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    kind = arr.type
    if pa.types.is_integer(kind):
        text = arr.cast(pa.string())
    elif pa.types.is_boolean(kind):
        text = arr.cast(pa.int8()).cast(pa.string())
    elif pa.types.is_floating(kind):
        wide = arr.cast(pa.float64())  # a float32 goes as its exact double, as pymysql sends it
        if pc.any(pc.is_inf(wide)).as_py():
            return None
        text = pc.if_else(pc.is_nan(wide), pa.scalar(None, pa.string()), wide.cast(pa.string()))
    elif pa.types.is_timestamp(kind):
        text = pc.binary_join_element_wise("'", _timestamp_text(arr), "'", "")
    elif pa.types.is_string(kind) or pa.types.is_binary(kind):
        # Text is UTF-8 bytes introduced as utf8mb4, so the server converts them to a column's
        # own character set (latin1, ...); bytes stay bytes.
        introducer = "_utf8mb4 " if pa.types.is_string(kind) else ""
        raw = arr.cast(pa.binary()).to_pylist()
        text = pa.array(
            [None if v is None else f"{introducer}X'{v.hex()}'" for v in raw], pa.string()
        )
    else:
        return None
    return text.fill_null("NULL")


def values_text(
    table: pa.Table, columns: Sequence[str], batch_rows: int
) -> Iterator[tuple[str, int]] | None:
    """(`(v, ...),(v, ...)`, row count) of `table`'s rows as `sql_literals`, `batch_rows` rows at
    a time; None when a column's type has no such literal."""
    literals = []
    for name in columns:
        column = table.column(name).combine_chunks()
        text = sql_literals(column)
        if text is None:  # lists and maps: their JSON text, as pymysql's path stores it
            values = _db_values(column)
            if not all(v is None or isinstance(v, str) for v in values):
                return None
            text = sql_literals(pa.array(values, pa.string()))
        literals.append(text)
    rows = pc.binary_join_element_wise("(", *_interleave(literals, ","), ")", "")
    return (
        (",".join(part.to_pylist()), len(part))
        for part in (rows.slice(start, batch_rows) for start in range(0, len(rows), batch_rows))
    )


def _interleave(arrays: list[pa.Array], sep: str) -> list:
    out: list = []
    for i, a in enumerate(arrays):
        out += [sep, a] if i else [a]
    return out


def _db_values(arr: pa.Array) -> list:
    """One column's values as pymysql binds them; the common types converted in Arrow."""
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    kind = arr.type
    if pa.types.is_timestamp(kind):
        return _timestamp_text(arr).to_pylist()
    if pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_boolean(kind):
        return arr.to_pylist()  # int / str / bool / None: as pymysql takes them
    if pa.types.is_floating(kind):
        return pc.if_else(pc.is_nan(arr), pa.scalar(None, kind), arr).to_pylist()  # NaN -> NULL
    return [_to_db(v) for v in arr.to_pylist()]
