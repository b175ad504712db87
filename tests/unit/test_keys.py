"""Entity keys: declared kinds, source column checks, and the entity dataframe's key columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast.value_type import ValueType
from pymysql.constants import FIELD_TYPE, FLAG

from providers.tidb import keys
from providers.tidb.errors import InvalidEntityDataFrame, TiDBKeyTypeError


def column(code, charset=None, collation=None, scale=0, flags=0, name="k"):
    return keys.SourceColumn(name, code, flags, scale, charset, collation)


@pytest.mark.parametrize(
    ("value_type", "kind"),
    [
        (ValueType.INT32, keys.KeyKind.INTEGER),
        (ValueType.INT64, keys.KeyKind.INTEGER),
        (ValueType.STRING, keys.KeyKind.STRING),
        (ValueType.BYTES, keys.KeyKind.BYTES),
    ],
)
def test_kind_of_supported_types(value_type, kind):
    assert keys.kind_of(value_type, "k", "view") is kind


@pytest.mark.parametrize(
    "value_type", [ValueType.DOUBLE, ValueType.FLOAT, ValueType.BOOL, ValueType.UNIX_TIMESTAMP]
)
def test_kind_of_refuses_what_cannot_match_exactly(value_type):
    with pytest.raises(TiDBKeyTypeError, match=f"declared {value_type.name}.*INT64, STRING"):
        keys.kind_of(value_type, "k", "view")


@pytest.mark.parametrize(
    ("source", "kind", "message"),
    [
        (column(FIELD_TYPE.DOUBLE), keys.KeyKind.INTEGER, r"DOUBLE.*CAST\(k AS SIGNED\)"),
        (column(FIELD_TYPE.FLOAT), keys.KeyKind.INTEGER, "floating-point keys are refused"),
        (column(FIELD_TYPE.VAR_STRING, "utf8mb4", "utf8mb4_bin"), keys.KeyKind.INTEGER, "BIGINT"),
        (column(FIELD_TYPE.LONGLONG), keys.KeyKind.STRING, r"CAST\(k AS CHAR\)"),
        (column(FIELD_TYPE.DATETIME), keys.KeyKind.STRING, "declare the entity INT64"),
        (column(FIELD_TYPE.VAR_STRING, "utf8mb4", "utf8mb4_bin"), keys.KeyKind.BYTES, "STRING"),
        (column(FIELD_TYPE.VAR_STRING, "utf8mb4", "x'; DROP"), keys.KeyKind.STRING, "collation"),
    ],
)
def test_check_source_key_refusals(source, kind, message):
    with pytest.raises(TiDBKeyTypeError, match=message):
        keys.check_source_key("view", source, kind)


@pytest.mark.parametrize(
    ("source", "kind"),
    [
        (column(FIELD_TYPE.LONGLONG), keys.KeyKind.INTEGER),
        (column(FIELD_TYPE.LONGLONG, flags=FLAG.UNSIGNED), keys.KeyKind.INTEGER),
        (column(FIELD_TYPE.NEWDECIMAL, scale=2), keys.KeyKind.INTEGER),
        (column(FIELD_TYPE.VAR_STRING, "latin1", "latin1_swedish_ci"), keys.KeyKind.STRING),
        (column(FIELD_TYPE.BLOB, "binary", "binary"), keys.KeyKind.STRING),
        (column(FIELD_TYPE.VAR_STRING, "binary", "binary"), keys.KeyKind.BYTES),
    ],
)
def test_check_source_key_accepts_exact_pairs(source, kind):
    keys.check_source_key("view", source, kind)


def test_canonical_forms_and_integral_filter():
    utf8 = column(FIELD_TYPE.VAR_STRING, "utf8mb4", "utf8mb4_general_ci")
    latin1 = column(FIELD_TYPE.VAR_STRING, "latin1", "latin1_swedish_ci")
    assert keys.canonical(utf8, keys.KeyKind.STRING, "s.k") == "CAST(s.k AS BINARY)"
    assert (
        keys.canonical(latin1, keys.KeyKind.STRING, "s.k")
        == "CAST(CONVERT(s.k USING utf8mb4) AS BINARY)"
    )
    assert keys.canonical(column(FIELD_TYPE.LONGLONG), keys.KeyKind.INTEGER, "s.k") == "s.k"
    decimal = column(FIELD_TYPE.NEWDECIMAL, scale=2)
    in_range = "s.k BETWEEN -9223372036854775808 AND 9223372036854775807"
    assert (
        keys.integral_only(decimal, keys.KeyKind.INTEGER, "s.k")
        == f"s.k = FLOOR(s.k) AND {in_range}"
    )
    whole = column(FIELD_TYPE.NEWDECIMAL)
    assert keys.integral_only(whole, keys.KeyKind.INTEGER, "s.k") == in_range
    unsigned = column(FIELD_TYPE.LONGLONG, flags=FLAG.UNSIGNED)
    assert keys.integral_only(unsigned, keys.KeyKind.INTEGER, "s.k") == in_range
    assert keys.integral_only(column(FIELD_TYPE.LONGLONG), keys.KeyKind.INTEGER, "s.k") is None


def test_integer_keys_from_floats_with_missing_values_are_exact():
    big = 10**15 + 1
    series = pd.Series([big, None, 5], dtype="float64")
    out = keys.entity_column(series, "user_id", keys.KeyKind.INTEGER)
    assert out.type == pa.int64() and out.to_pylist() == [big, None, 5]


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1, 2], dtype="int32"),
        pd.Series([1, None], dtype="Int64"),
        pd.Series([1, None, np.int64(3)], dtype=object),
        pd.Series([2**63 - 1], dtype="uint64"),
    ],
)
def test_integer_key_columns(series):
    out = keys.entity_column(series, "user_id", keys.KeyKind.INTEGER)
    assert out.type == pa.int64()
    assert out.to_pylist() == [None if pd.isna(v) else int(v) for v in series]


@pytest.mark.parametrize(
    ("series", "message"),
    [
        (pd.Series([1.5]), "whole numbers"),
        (pd.Series([True, False]), "booleans"),
        (pd.Series(["1"], dtype=object), "str values"),
        (pd.Series([2**64 - 1], dtype="uint64"), "2\\*\\*63"),
        (pd.Series([1e30]), r"beyond 2\*\*53"),
        (pd.Series([2.0**53 + 2, None]), r"beyond 2\*\*53"),
        (pd.Series([2.0**53 + 2], dtype=object), r"beyond 2\*\*53"),
    ],
)
def test_integer_key_columns_refused(series, message):
    with pytest.raises(InvalidEntityDataFrame, match=message):
        keys.entity_column(series, "user_id", keys.KeyKind.INTEGER)


def test_string_key_columns_keep_every_byte():
    series = pd.Series(["a ", "A", "José", None, ""], dtype=object)
    out = keys.entity_column(series, "acct", keys.KeyKind.STRING)
    assert out.to_pylist() == ["a ", "A", "José", None, ""]


@pytest.mark.parametrize(
    ("series", "kind", "message"),
    [
        (pd.Series([1, 2]), keys.KeyKind.STRING, "int values.*astype\\(str\\)"),
        (pd.Series(["x", b"y"], dtype=object), keys.KeyKind.STRING, "bytes values"),
        (pd.Series(["x"], dtype=object), keys.KeyKind.BYTES, "str values"),
        (pd.Series(["x" * 3073], dtype=object), keys.KeyKind.STRING, "longer than 3072 bytes"),
    ],
)
def test_string_and_bytes_key_columns_refused(series, kind, message):
    with pytest.raises(InvalidEntityDataFrame, match=message):
        keys.entity_column(series, "acct", kind)
