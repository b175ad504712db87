"""Results typed by the declared schema: casts that keep values, and errors where they cannot."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import struct

import pyarrow as pa
import pytest
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp
from feast.value_type import ValueType
from pymysql.constants import FIELD_TYPE, FLAG

from providers.tidb import declared
from providers.tidb.errors import TiDBValueTypeError
from providers.tidb.keys import SourceColumn

UTC = dt.UTC
STAMP = dt.datetime(2026, 1, 9, 12, 30, 15, 123456, tzinfo=UTC)


def conform(values: pa.Array, dtype) -> pa.Array:
    table = declared.conform(pa.table({"x": values}), {"x": dtype})
    return table.column("x").combine_chunks()


@pytest.mark.parametrize(
    ("values", "dtype", "expected_type", "expected"),
    [
        (pa.array([7, None], pa.int32()), Int64, pa.int64(), [7, None]),
        (pa.array([-3], pa.int64()), Int32, pa.int32(), [-3]),
        (pa.array([1, 0, None], pa.int8()), Bool, pa.bool_(), [True, False, None]),
        (
            pa.array(["2020-01-01"]),
            UnixTimestamp,
            pa.timestamp("us", tz="UTC"),
            [dt.datetime(2020, 1, 1, tzinfo=UTC)],
        ),
        (pa.array([decimal.Decimal("12.50")]), Float64, pa.float64(), [12.5]),
        (pa.array([decimal.Decimal("5.00")]), Int64, pa.int64(), [5]),
        (pa.array(["x"], pa.large_string()), String, pa.string(), ["x"]),
        (pa.array([None, None], pa.null()), Int64, pa.int64(), [None, None]),
        (pa.array([1 / 7]), Float32, pa.float32(), [0.1428571492433548]),
    ],
)
def test_scalars_take_the_declared_type(values, dtype, expected_type, expected):
    out = conform(values, dtype)
    assert out.type == expected_type
    assert out.to_pylist() == expected  # exact: 0.1428571492433548 is float32(1/7) as a double


@pytest.mark.parametrize(
    ("values", "dtype", "detail"),
    [
        (pa.array([2**40]), Int32, "not in range"),
        (pa.array([decimal.Decimal("1.50")]), Int64, "data loss"),
        (pa.array([1e300]), Float32, "beyond float32"),
        (pa.array(['{"a": 1}']), Array(Int64), "JSON dict"),
        (pa.array(["[1.5]"]), Array(Int64), "1.5"),
        (pa.array([2], pa.int8()), Bool, "other than 0 and 1"),
        (pa.array(["[1]"]), Array(String), "JSON int64 elements"),
        (pa.array(["[1, 0]"]), Array(Bool), "JSON int64 elements"),
    ],
)
def test_values_that_do_not_fit_are_errors_naming_the_feature(values, dtype, detail):
    with pytest.raises(TiDBValueTypeError, match=f"'x' is declared.*{detail}"):
        conform(values, dtype)


def test_decimals_become_the_nearest_double():
    """Arrow's decimal-to-double cast gives 0.030000000000000002 for 0.03; the store must not."""
    values = pa.array(
        [decimal.Decimal(f"{i / 100:.2f}") for i in range(1000)], pa.decimal128(12, 2)
    )
    out = conform(values, Float64).to_pylist()
    assert out == [float(f"{i / 100:.2f}") for i in range(1000)]
    nearest = [struct.unpack("<f", struct.pack("<f", v))[0] for v in out]
    assert conform(values, Float32).to_pylist() == nearest


def test_timestamps_from_naive_aware_text_and_epoch_seconds():
    naive = pa.array([STAMP.replace(tzinfo=None)], pa.timestamp("us"))
    assert conform(naive, UnixTimestamp).to_pylist() == [STAMP]
    text = pa.array(["2026-01-09T12:30:15.123456Z", "2026-01-09 14:30:15.123456+02:00", None])
    assert conform(text, UnixTimestamp).to_pylist() == [STAMP, STAMP, None]
    no_offset = pa.array(["2026-01-09 12:30:15.123456"])  # no offset: UTC
    assert conform(no_offset, UnixTimestamp).to_pylist() == [STAMP]
    epoch = pa.array([STAMP.timestamp()])
    assert conform(epoch, UnixTimestamp).to_pylist() == [STAMP]


@pytest.mark.parametrize(
    ("dtype", "element"),
    [
        (Array(Int32), pa.int32()),
        (Array(Int64), pa.int64()),
        (Array(Float32), pa.float32()),
        (Array(Float64), pa.float64()),
        (Array(Bool), pa.bool_()),
        (Array(String), pa.string()),
        (Array(UnixTimestamp), pa.timestamp("us", tz="UTC")),
    ],
)
def test_empty_and_null_lists_keep_the_declared_element_type(dtype, element):
    out = conform(pa.array(["[]", None, "[]"]), dtype)
    assert out.type == pa.list_(element)
    assert out.to_pylist() == [[], None, []]


def test_timestamp_lists_from_json_text():
    text = pa.array(['["2026-01-09T12:30:15.123456+00:00", 1767961815.123456]', None, "[]"])
    out = conform(text, Array(UnixTimestamp))
    assert out.to_pylist() == [[STAMP, STAMP], None, []]


def test_big_integers_in_json_lists_stay_exact():
    out = conform(pa.array(["[9007199254740993]"], pa.large_binary()), Array(Int64))
    assert out.to_pylist() == [[9007199254740993]]


def test_undeclared_columns_are_normalised_only():
    table = pa.table(
        {
            "s": pa.array(["a"], pa.large_string()),
            "b": pa.array([b"x"], pa.large_binary()),
            "t": pa.array([STAMP.replace(tzinfo=None)], pa.timestamp("us")),
            "i": pa.array([1], pa.int16()),
        }
    )
    out = declared.conform(table, {})
    assert out.schema == pa.schema(
        [
            ("s", pa.string()),
            ("b", pa.binary()),
            ("t", pa.timestamp("us", tz="UTC")),
            ("i", pa.int16()),
        ]
    )


def test_arrow_type_of_declarations():
    assert declared.arrow_type(Int64) == pa.int64()
    assert declared.arrow_type(ValueType.FLOAT) == pa.float32()
    assert declared.arrow_type(Array(String)) == pa.list_(pa.string())
    assert declared.arrow_type(pa.int8()) == pa.int8()
    assert declared.arrow_type(ValueType.MAP) is None  # passed through as the source holds it


def test_read_expressions():
    def col(code, flags=0):
        return SourceColumn("c", code, flags, 0, None, None)

    assert declared.read_expression(col(FIELD_TYPE.FLOAT), "s.c") == "CAST(s.c AS DOUBLE)"
    unsigned = col(FIELD_TYPE.LONGLONG, FLAG.UNSIGNED)
    assert declared.read_expression(unsigned, "s.c") == "CAST(s.c AS DECIMAL(20, 0))"
    assert declared.read_expression(col(FIELD_TYPE.DOUBLE), "s.c") == "s.c"


def test_decode_json_of_undeclared_columns():
    arrays = declared.decode_json(pa.array(["[1, 2]", None, "[]"]))
    assert arrays.type == pa.list_(pa.int64()) and arrays.to_pylist() == [[1, 2], None, []]
    mixed = declared.decode_json(pa.array(["[1]", '{"a": 1}']))
    assert [json.loads(v) for v in mixed.to_pylist()] == [[1], {"a": 1}]
