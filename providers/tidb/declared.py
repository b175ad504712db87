"""Results typed by the feature view's declared schema, not by whatever the columns hold.

A feature declared `Int64` comes back as int64 whether its column is INT, BIGINT or DECIMAL; a
`Float32` one as float32, bit for bit what a FLOAT column stores (`read_expression` reads FLOAT
columns as DOUBLE, an exact widening, so the text protocol cannot round them to six digits); an
`Array(...)` one as a list of its declared element type, also when every value is empty or null;
timestamps as `timestamp[us, UTC]`, inside lists too. A value that does not fit its declared type
(2**40 for Int32, 1.5 for Int64, 2 for Bool, a number beyond float32, a JSON object for an array,
numbers in an Array(String)) is an error naming the feature: a silently changed value is worse
than a failed retrieval. Declaring Float32 for a DOUBLE or DECIMAL column asks for rounding to
the nearest float32, which is what it gets.

Lists are stored as JSON arrays (what `offline_write_batch` and the jobs write). Their timestamp
elements may be ISO 8601 text, with or without an offset (no offset means UTC), or epoch seconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from feast.types import FeastType
from feast.value_type import ValueType
from pymysql.constants import FIELD_TYPE, FLAG

from providers.tidb.errors import TiDBValueTypeError
from providers.tidb.keys import SourceColumn

UTC_US = pa.timestamp("us", tz="UTC")

_SCALARS = {
    ValueType.INT32: pa.int32(),
    ValueType.INT64: pa.int64(),
    ValueType.FLOAT: pa.float32(),
    ValueType.DOUBLE: pa.float64(),
    ValueType.STRING: pa.string(),
    ValueType.BYTES: pa.binary(),
    ValueType.BOOL: pa.bool_(),
    ValueType.UNIX_TIMESTAMP: UTC_US,
}
_LISTS = {
    ValueType.INT32_LIST: pa.int32(),
    ValueType.INT64_LIST: pa.int64(),
    ValueType.FLOAT_LIST: pa.float32(),
    ValueType.DOUBLE_LIST: pa.float64(),
    ValueType.STRING_LIST: pa.string(),
    ValueType.BYTES_LIST: pa.binary(),
    ValueType.BOOL_LIST: pa.bool_(),
    ValueType.UNIX_TIMESTAMP_LIST: UTC_US,
}
# An offset after a time of day (a date alone, '2020-01-01', ends in '-01' but has none).
_OFFSET = r"\d\d:\d\d(:\d\d(\.\d*)?)?\s*(Z|[+-]\d\d(:?\d\d)?)$"


def arrow_type(dtype: FeastType | ValueType | pa.DataType) -> pa.DataType | None:
    """The Arrow type a declared Feast type comes back as (an Arrow type: itself); None for
    types this store passes through as the source holds them (maps, structs, JSON, UUIDs...)."""
    if isinstance(dtype, pa.DataType):
        return dtype
    value_type = dtype if isinstance(dtype, ValueType) else dtype.to_value_type()
    if value_type in _SCALARS:
        return _SCALARS[value_type]
    if value_type in _LISTS:
        return pa.list_(_LISTS[value_type])
    return None


def read_expression(column: SourceColumn, sql: str) -> str:
    """How to select a source column so that its value arrives exactly, by any reader."""
    if column.type_code == FIELD_TYPE.FLOAT:
        return f"CAST({sql} AS DOUBLE)"  # exact; FLOAT as text has six significant digits
    if column.type_code == FIELD_TYPE.LONGLONG and column.flags & FLAG.UNSIGNED:
        return f"CAST({sql} AS DECIMAL(20, 0))"  # above 2**53 a double would round it
    return sql


def normalise(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array in this store's plain types: string, binary, UTC timestamps."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    kind = values.type
    if pa.types.is_large_string(kind):
        return values.cast(pa.string())
    if pa.types.is_large_binary(kind):
        return values.cast(pa.binary())
    if pa.types.is_timestamp(kind) and kind.tz is None:
        return values.cast(pa.timestamp(kind.unit, tz="UTC")).cast(UTC_US)
    return values


def conform(
    table: pa.Table, declared: Mapping[str, FeastType | ValueType | pa.DataType]
) -> pa.Table:
    """`table` with each declared column in its declared type (others normalised)."""
    columns = []
    for name in table.column_names:
        values = normalise(table.column(name))
        dtype = declared.get(name)
        target = arrow_type(dtype) if dtype is not None else None
        if target is not None:
            values = _to(values, target, name, dtype)
        columns.append(values)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _error(name: str, dtype: Any, detail: object) -> TiDBValueTypeError:
    declared = getattr(dtype, "__name__", None) or str(dtype)
    return TiDBValueTypeError(
        f"Feature '{name}' is declared {declared}, but the source holds values that do not fit "
        f"({detail}). Fix the declaration or the data: values are not changed to fit."
    )


def _to(values: pa.Array, target: pa.DataType, name: str, dtype: Any) -> pa.Array:
    if values.type == target:
        return values
    if pa.types.is_list(target):
        return _lists(values, target, name, dtype)
    try:
        if pa.types.is_timestamp(target):
            return _timestamps(values)
        if pa.types.is_null(values.type):
            return pa.nulls(len(values), target)
        if pa.types.is_decimal(values.type) and pa.types.is_floating(target):
            # Through the exact decimal text: Arrow's decimal-to-double cast is not correctly
            # rounded (0.03 became 0.030000000000000002); its text parser is.
            return _to(values.cast(pa.string()).cast(pa.float64()), target, name, dtype)
        if pa.types.is_boolean(target) and pa.types.is_integer(values.type):
            others = pc.and_(pc.not_equal(values, 0), pc.not_equal(values, 1))
            if pc.any(others).as_py():
                raise _error(name, dtype, "an integer other than 0 and 1")
        if pa.types.is_float32(target) and pa.types.is_floating(values.type):
            narrowed = values.cast(target)
            overflow = pc.and_(pc.is_inf(narrowed), pc.invert(pc.is_inf(values)))
            if pc.any(overflow).as_py():
                raise _error(name, dtype, "a value beyond float32's range")
            return narrowed
        return values.cast(target, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise _error(name, dtype, exc) from exc


def _timestamps(values: pa.Array) -> pa.Array:
    """Timestamps, dates, ISO 8601 text (no offset: UTC) or epoch seconds, as UTC_US."""
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return values.cast(UTC_US)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        micros = pc.multiply(values.cast(pa.float64()), 1_000_000)
        return pc.round(micros).cast(pa.int64()).cast(UTC_US)
    text = values.cast(pa.string())
    with_offset = pc.match_substring_regex(text, _OFFSET)
    aware = pc.if_else(with_offset, text, pa.scalar(None, pa.string())).cast(UTC_US)
    naive = pc.if_else(with_offset, pa.scalar(None, pa.string()), text)
    return pc.if_else(with_offset, aware, naive.cast(pa.timestamp("us")).cast(UTC_US))


def _lists(values: pa.Array, target: pa.ListType, name: str, dtype: Any) -> pa.Array:
    """A list column from JSON text (or a list column), with the declared element type."""
    element = target.value_type
    if pa.types.is_list(values.type) or pa.types.is_large_list(values.type):
        decoded: list = values.to_pylist()
    else:
        if pa.types.is_binary(values.type):
            values = values.cast(pa.string())
        decoded = []
        for text in values.to_pylist():
            value = None if text is None else json.loads(text)
            if value is not None and not isinstance(value, list):
                raise _error(name, dtype, f"JSON {type(value).__name__} {text[:80]!r}")
            decoded.append(value)
    try:
        if pa.types.is_timestamp(element):
            return _timestamp_lists(decoded).cast(target)
        inferred = pa.array(decoded)  # the values' own types, then a checked cast
        if pa.types.is_null(inferred.type):
            return pa.nulls(len(decoded), target)
        found = inferred.type.value_type
        # Numbers widen to their declared number type (checked below); text and booleans must
        # already be text and booleans (1 is not True, nor "1").
        textual = pa.types.is_string(element) or pa.types.is_boolean(element)
        if textual and not pa.types.is_null(found) and found != element:
            raise _error(name, dtype, f"JSON {found} elements")
        out = inferred.cast(target, safe=True)
        if pa.types.is_float32(element):
            _to(inferred.flatten(), element, name, dtype)  # raises on values beyond float32
        return out
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError) as exc:
        raise _error(name, dtype, exc) from exc


def _timestamp_lists(decoded: list) -> pa.ListArray:
    """Lists of ISO 8601 text and epoch seconds (mixed, as writers differ) as UTC timestamps."""
    flat = [x for v in decoded if v is not None for x in v]
    offsets = [0]
    for v in decoded:
        offsets.append(offsets[-1] + (len(v) if v is not None else 0))
    numeric = [isinstance(x, (int, float)) and not isinstance(x, bool) for x in flat]
    texts = pa.array([None if n else x for x, n in zip(flat, numeric, strict=True)], pa.string())
    numbers = pa.array([x if n else None for x, n in zip(flat, numeric, strict=True)], pa.float64())
    stamps = pc.if_else(pa.array(numeric, pa.bool_()), _timestamps(numbers), _timestamps(texts))
    mask = pa.array([v is None for v in decoded])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), stamps, mask=mask)


def decode_json(values: pa.Array) -> pa.Array:
    """An undeclared JSON column: a list column where every value is an array (types inferred
    from the values), else the JSON text as it is."""
    texts = values.cast(pa.string()) if pa.types.is_binary(values.type) else values
    decoded = [None if t is None else json.loads(t) for t in texts.to_pylist()]
    if all(v is None or isinstance(v, list) for v in decoded):
        return pa.array(decoded)
    return texts
