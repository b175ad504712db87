"""Exact entity-key matching, whatever the server's collations and character sets.

A string comparison in MySQL, MariaDB and TiDB runs under a collation: `_ci` ones merge 'abc' and
'ABC', accent-insensitive ones 'José' and 'Jose', and PAD SPACE ones (MariaDB's and TiDB's `_bin`
among them) 'a' and 'a '. A key must match only itself, so every key comparison here is made on
bytes, and every key is carried in one canonical form:

| entity (declared)   | canonical form (scratch tables, DISTINCT, PARTITION BY)            |
|---------------------|--------------------------------------------------------------------|
| INT32, INT64        | BIGINT: compared as numbers (exact for integer and DECIMAL columns) |
| STRING              | VARBINARY: the value's UTF-8 bytes, whatever the column's charset   |
| BYTES               | VARBINARY: the bytes as they are                                    |

A source key column is compared with a canonical key `e` by two conditions: one in the column's
own collation (`s.k = CONVERT(e USING cs) COLLATE coll`), which lets the database use an index on
the column, and one on bytes (`CAST(CONVERT(s.k USING utf8mb4) AS BINARY) = e`), which makes the
match exact. Byte-equal values are equal under every collation, so the first never drops a row
that the second keeps.

Keys that cannot be matched exactly are refused with an error that says what to change: floating
point key columns (1e15 and 1e15 + 1 are one DOUBLE), a string column for an integer entity and
the reverse, and entity types other than the three above.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from feast.value_type import ValueType
from pymysql.constants import FIELD_TYPE, FLAG

from providers.tidb.errors import InvalidEntityDataFrame, TiDBKeyTypeError
from providers.tidb.types import STRING_CODES

# Longest key a scratch table holds, in bytes: far above any realistic id, and well inside a row.
MAX_KEY_BYTES = 3072


class KeyKind(enum.Enum):
    INTEGER = "integer"
    STRING = "string"
    BYTES = "bytes"


_KINDS = {
    ValueType.INT32: KeyKind.INTEGER,
    ValueType.INT64: KeyKind.INTEGER,
    ValueType.STRING: KeyKind.STRING,
    ValueType.BYTES: KeyKind.BYTES,
}
_INTEGER_CODES = {
    FIELD_TYPE.TINY,
    FIELD_TYPE.SHORT,
    FIELD_TYPE.INT24,
    FIELD_TYPE.LONG,
    FIELD_TYPE.LONGLONG,
    FIELD_TYPE.YEAR,
}
_DECIMAL_CODES = {FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL}
_FLOAT_CODES = {FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE}
_NAME = re.compile(r"^[A-Za-z0-9_]+$")  # charset and collation names, as the server reports them


def kind_of(value_type: ValueType, key: str, owner: str) -> KeyKind:
    """The key kind of a join key declared with `value_type`, or an error saying what to declare."""
    kind = _KINDS.get(value_type)
    if kind is None:
        raise TiDBKeyTypeError(
            f"{owner}: join key '{key}' is declared {value_type.name}; the TiDB store matches "
            "INT32, INT64, STRING and BYTES keys exactly. Declare the entity with one of those "
            "(floating-point and timestamp keys cannot be compared exactly)."
        )
    return kind


def source_kind(column: SourceColumn) -> KeyKind:
    """The kind a key column's own type implies (for calls that get no declared entity)."""
    if column.type_code in STRING_CODES:
        return KeyKind.BYTES if column.is_binary else KeyKind.STRING
    return KeyKind.INTEGER


def scratch_ddl(kind: KeyKind) -> str:
    return "BIGINT" if kind is KeyKind.INTEGER else f"VARBINARY({MAX_KEY_BYTES})"


@dataclass(frozen=True)
class SourceColumn:
    """What the server says of one column of a source (see `connection.probe`); charset and
    collation are read for key columns only."""

    name: str
    type_code: int
    flags: int
    scale: int
    charset: str | None  # CHARSET(col): 'binary' for binary strings
    collation: str | None
    length: int = 0
    charsetnr: int = 0  # as pymysql reports it (the result's, not the column's)

    @property
    def is_binary(self) -> bool:
        return self.charset == "binary"

    @property
    def sql_type(self) -> str:
        names = {v: k for k, v in vars(FIELD_TYPE).items() if isinstance(v, int)}
        unsigned = " UNSIGNED" if self.flags & FLAG.UNSIGNED else ""
        return names.get(self.type_code, str(self.type_code)) + unsigned


def _check_name(value: str | None, what: str) -> str:
    if not value or not _NAME.match(value):
        raise TiDBKeyTypeError(f"The server reported an unexpected {what} {value!r}.")
    return value


def _mismatch(owner: str, key: SourceColumn, kind: KeyKind, fix: str) -> TiDBKeyTypeError:
    return TiDBKeyTypeError(
        f"{owner}: key column '{key.name}' is {key.sql_type} but the entity's join key is "
        f"{kind.value}; keys are matched exactly, so {fix}."
    )


def check_source_key(owner: str, key: SourceColumn, kind: KeyKind) -> None:
    """Refuse a source key column that cannot be matched exactly with keys of `kind`."""
    code = key.type_code
    if kind is KeyKind.INTEGER:
        if code in _FLOAT_CODES:
            raise _mismatch(
                owner,
                key,
                kind,
                f"floating-point keys are refused: read it as `CAST({key.name} AS SIGNED)` in a "
                "query source, or store it as BIGINT",
            )
        if code not in _INTEGER_CODES | _DECIMAL_CODES:
            raise _mismatch(
                owner,
                key,
                kind,
                f"store it as BIGINT, `CAST({key.name} AS SIGNED)` in a query source, or declare "
                "the entity STRING",
            )
        return
    if code not in STRING_CODES:
        raise _mismatch(
            owner,
            key,
            kind,
            f"`CAST({key.name} AS CHAR)` in a query source, or declare the entity INT64",
        )
    if kind is KeyKind.BYTES and not key.is_binary:
        raise _mismatch(owner, key, kind, "declare the entity STRING for a text column")
    if not key.is_binary:
        _check_name(key.charset, "character set")
        _check_name(key.collation, "collation")


def _utf8_bytes(key: SourceColumn, column: str) -> str:
    """SQL for the UTF-8 bytes of a text column's values (as they are, for binary columns)."""
    if key.is_binary:
        return column
    text = column if key.charset == "utf8mb4" else f"CONVERT({column} USING utf8mb4)"
    return f"CAST({text} AS BINARY)"


def canonical(key: SourceColumn, kind: KeyKind, column: str) -> str:
    """SQL turning a source key column into the canonical form (compare, group, partition)."""
    return column if kind is KeyKind.INTEGER else _utf8_bytes(key, column)


def match(key: SourceColumn, kind: KeyKind, column: str, canonical_key: str) -> str:
    """SQL that is true where source column `column` holds exactly the canonical key."""
    if kind is KeyKind.INTEGER or key.is_binary:
        return f"{column} = {canonical_key}"
    charset = _check_name(key.charset, "character set")
    collation = _check_name(key.collation, "collation")
    # The canonical key's UTF-8 bytes, as text in the column's charset and collation: a
    # comparison the index on the column can serve. Then the exact one, on bytes.
    as_text = f"CONVERT({canonical_key} USING utf8mb4)"
    if charset != "utf8mb4":
        as_text = f"CONVERT({as_text} USING {charset})"
    return (
        f"{column} = {as_text} COLLATE {collation} AND {_utf8_bytes(key, column)} = {canonical_key}"
    )


def integral_only(key: SourceColumn, kind: KeyKind, column: str) -> str | None:
    """A condition keeping only the keys an INT64 entity can have, for a DECIMAL or unsigned
    BIGINT column (whole numbers within INT64's range); None where every value is one."""
    if kind is not KeyKind.INTEGER:
        return None
    conditions = []
    if key.type_code in _DECIMAL_CODES and key.scale:
        conditions.append(f"{column} = FLOOR({column})")
    if key.type_code in _DECIMAL_CODES or (
        key.type_code == FIELD_TYPE.LONGLONG and key.flags & FLAG.UNSIGNED
    ):
        conditions.append(f"{column} BETWEEN -9223372036854775808 AND 9223372036854775807")
    return " AND ".join(conditions) or None


# ----------------------------------------------------------------------------- entity dataframes


def entity_column(values: pd.Series, name: str, kind: KeyKind) -> pa.Array:
    """The entity dataframe's key column in canonical form, or an error saying what to fix.

    Integers: any integer dtype, or floats that are whole numbers (a missing key turns an int
    column into float64 in pandas). Strings: str values. Bytes: bytes values. Missing keys stay
    missing (they match nothing).
    """
    if kind is KeyKind.INTEGER:
        return _integers(values, name)
    wanted = str if kind is KeyKind.STRING else bytes
    array = values.to_numpy(dtype=object)
    missing = pd.isna(values).to_numpy()
    bad = [v for v, m in zip(array, missing, strict=True) if not m and not isinstance(v, wanted)]
    if bad:
        hint = ".astype(str)" if wanted is str else ".map(bytes)"
        raise InvalidEntityDataFrame(
            f"Entity column '{name}' holds {type(bad[0]).__name__} values such as {bad[0]!r}; its "
            f"entity is {kind.value.upper()}, so keys must be {wanted.__name__} "
            f"({'strings' if wanted is str else 'bytes'}). Convert the column, e.g. "
            f"df['{name}']{hint}."
        )
    out = [None if m else wanted(v) for v, m in zip(array, missing, strict=True)]
    encoded = (len(v.encode("utf-8") if isinstance(v, str) else v) for v in out if v is not None)
    if max(encoded, default=0) > MAX_KEY_BYTES:
        raise InvalidEntityDataFrame(
            f"Entity column '{name}' holds a key longer than {MAX_KEY_BYTES} bytes."
        )
    return pa.array(out, type=pa.string() if wanted is str else pa.binary())


def _integers(values: pd.Series, name: str) -> pa.Array:
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        raise InvalidEntityDataFrame(
            f"Entity column '{name}' holds booleans; its entity is INTEGER."
        )
    if pd.api.types.is_integer_dtype(dtype):
        array = pa.array(values, from_pandas=True)
        if pa.types.is_unsigned_integer(array.type) and len(array) and _max(array) > 2**63 - 1:
            raise InvalidEntityDataFrame(
                f"Entity column '{name}' holds keys above 2**63 - 1, which INT64 cannot hold."
            )
        return array.cast(pa.int64())
    if pd.api.types.is_float_dtype(dtype):
        floats = values.to_numpy(dtype="float64", na_value=np.nan)
        present = floats[~np.isnan(floats)]
        fraction = present != np.floor(present)
        if fraction.any():
            raise InvalidEntityDataFrame(
                f"Entity column '{name}' holds {float(present[fraction][0])!r}; its entity is INTEGER, "
                "so keys must be whole numbers."
            )
        _exact_floats(present, name)
        return pa.array(floats, from_pandas=True).cast(pa.int64())
    out: list[int | None] = []
    for v in values.to_numpy(dtype=object):
        if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
            out.append(None)
        elif isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)):
            out.append(int(v))
        elif isinstance(v, (float, np.floating)) and float(v).is_integer():
            _exact_floats(np.array([float(v)]), name)
            out.append(int(v))
        else:
            raise InvalidEntityDataFrame(
                f"Entity column '{name}' holds {type(v).__name__} values such as {v!r}; its "
                "entity is INTEGER, so keys must be whole numbers."
            )
    try:
        return pa.array(out, type=pa.int64())
    except OverflowError as exc:
        raise InvalidEntityDataFrame(
            f"Entity column '{name}' holds keys that INT64 cannot hold: {exc}"
        ) from exc


def _exact_floats(present: np.ndarray, name: str) -> None:
    """Refuse float keys from 2**53 on: a float64 there no longer holds every integer, so the key
    may already differ from the one the caller had (pandas makes an int column float64 when a
    key is missing)."""
    beyond = np.abs(present) >= 2.0**53  # 2**53 itself is also what 2**53 + 1 became
    if beyond.any():
        raise InvalidEntityDataFrame(
            f"Entity column '{name}' holds {float(present[beyond][0])!r} as a float: beyond 2**53 a "
            "float cannot be trusted to hold the integer key it was made from. Keep the column "
            f"integer, e.g. df['{name}'].astype('Int64') before missing keys appear."
        )


def _max(array: pa.Array) -> int:
    import pyarrow.compute as pc

    return int(pc.max(array).as_py() or 0)
