"""MySQL/TiDB <-> Arrow/Feast type mapping, from column metadata (no server involved)."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from types import SimpleNamespace

import pyarrow as pa
import pytest
from feast.value_type import ValueType
from pymysql.constants import FIELD_TYPE, FLAG
from pymysql.converters import escape_item

from providers.tidb import types

UTF8MB4 = 45  # utf8mb4_general_ci
BINARY = 63
UTC_US = pa.timestamp("us", tz="UTC")


def col(type_code, length=11, flags=0, charsetnr=BINARY, scale=0, name="c"):
    """Column metadata as pymysql reads it from a result set header."""
    return SimpleNamespace(
        name=name,
        type_code=type_code,
        length=length,
        flags=flags,
        charsetnr=charsetnr,
        scale=scale,
    )


# --------------------------------------------------------------------------- arrow_type_of


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        pytest.param(col(FIELD_TYPE.TINY, length=1), pa.bool_(), id="tinyint(1)"),
        pytest.param(
            col(FIELD_TYPE.TINY, length=1, flags=FLAG.UNSIGNED), pa.bool_(), id="tinyint(1)-u"
        ),
        pytest.param(col(FIELD_TYPE.TINY, length=4), pa.int32(), id="tinyint"),
        pytest.param(col(FIELD_TYPE.TINY, length=3, flags=FLAG.UNSIGNED), pa.int32(), id="tiny-u"),
        pytest.param(col(FIELD_TYPE.SHORT, length=6), pa.int32(), id="smallint"),
        pytest.param(col(FIELD_TYPE.SHORT, flags=FLAG.UNSIGNED), pa.int32(), id="smallint-u"),
        pytest.param(col(FIELD_TYPE.INT24, length=9), pa.int32(), id="mediumint"),
        pytest.param(col(FIELD_TYPE.INT24, flags=FLAG.UNSIGNED), pa.int32(), id="mediumint-u"),
        pytest.param(col(FIELD_TYPE.LONG, length=11), pa.int32(), id="int"),
        pytest.param(col(FIELD_TYPE.LONG, length=10, flags=FLAG.UNSIGNED), pa.int64(), id="int-u"),
        pytest.param(col(FIELD_TYPE.LONGLONG, length=20), pa.int64(), id="bigint"),
        pytest.param(col(FIELD_TYPE.YEAR, length=4), pa.int64(), id="year"),
        pytest.param(col(FIELD_TYPE.BIT, length=8), pa.int64(), id="bit"),
        pytest.param(col(FIELD_TYPE.FLOAT, length=12), pa.float32(), id="float"),
        pytest.param(col(FIELD_TYPE.DOUBLE, length=22), pa.float64(), id="double"),
        pytest.param(col(FIELD_TYPE.DECIMAL, length=12, scale=2), pa.float64(), id="decimal"),
        pytest.param(col(FIELD_TYPE.NEWDECIMAL, length=12, scale=2), pa.float64(), id="newdecimal"),
        pytest.param(col(FIELD_TYPE.DATETIME, length=26), UTC_US, id="datetime"),
        pytest.param(col(FIELD_TYPE.TIMESTAMP, length=26), UTC_US, id="timestamp"),
        pytest.param(col(FIELD_TYPE.DATE, length=10), pa.date32(), id="date"),
        pytest.param(col(FIELD_TYPE.NEWDATE, length=10), pa.date32(), id="newdate"),
        pytest.param(col(FIELD_TYPE.TIME, length=10), pa.string(), id="time"),
        pytest.param(col(FIELD_TYPE.JSON, charsetnr=BINARY), pa.string(), id="json-binary-cs"),
        pytest.param(col(FIELD_TYPE.JSON, charsetnr=UTF8MB4), pa.string(), id="json"),
        pytest.param(col(FIELD_TYPE.NULL, length=0), pa.null(), id="null"),
        pytest.param(col(FIELD_TYPE.VARCHAR, charsetnr=UTF8MB4), pa.string(), id="varchar"),
        pytest.param(col(FIELD_TYPE.VAR_STRING, charsetnr=UTF8MB4), pa.string(), id="var_string"),
        pytest.param(col(FIELD_TYPE.STRING, charsetnr=UTF8MB4), pa.string(), id="char"),
        pytest.param(col(FIELD_TYPE.ENUM, charsetnr=UTF8MB4), pa.string(), id="enum"),
        pytest.param(col(FIELD_TYPE.SET, charsetnr=UTF8MB4), pa.string(), id="set"),
        pytest.param(col(FIELD_TYPE.BLOB, charsetnr=UTF8MB4), pa.string(), id="text"),
        pytest.param(col(FIELD_TYPE.TINY_BLOB, charsetnr=UTF8MB4), pa.string(), id="tinytext"),
        pytest.param(col(FIELD_TYPE.MEDIUM_BLOB, charsetnr=UTF8MB4), pa.string(), id="mediumtext"),
        pytest.param(col(FIELD_TYPE.LONG_BLOB, charsetnr=UTF8MB4), pa.string(), id="longtext"),
        pytest.param(col(FIELD_TYPE.VAR_STRING, charsetnr=BINARY), pa.binary(), id="varbinary"),
        pytest.param(col(FIELD_TYPE.STRING, charsetnr=BINARY), pa.binary(), id="binary"),
        pytest.param(col(FIELD_TYPE.BLOB, charsetnr=BINARY), pa.binary(), id="blob"),
        pytest.param(col(FIELD_TYPE.TINY_BLOB, charsetnr=BINARY), pa.binary(), id="tinyblob"),
        pytest.param(col(FIELD_TYPE.MEDIUM_BLOB, charsetnr=BINARY), pa.binary(), id="mediumblob"),
        pytest.param(col(FIELD_TYPE.LONG_BLOB, charsetnr=BINARY), pa.binary(), id="longblob"),
        pytest.param(col(FIELD_TYPE.GEOMETRY), pa.string(), id="unknown-falls-back-to-string"),
    ],
)
def test_arrow_type_of(meta, expected):
    assert types.arrow_type_of(meta) == expected


@pytest.mark.parametrize(
    ("meta", "name"),
    [
        (col(FIELD_TYPE.TINY, length=1), "tinyint(1)"),
        (col(FIELD_TYPE.TINY, length=4), "tinyint"),
        (col(FIELD_TYPE.LONGLONG), "bigint"),
        (col(FIELD_TYPE.NEWDECIMAL, length=12, scale=2), "decimal"),
        (col(FIELD_TYPE.JSON), "json"),
        (col(FIELD_TYPE.BLOB, charsetnr=BINARY), "blob"),
        (col(FIELD_TYPE.BLOB, charsetnr=UTF8MB4), "varchar"),
        (col(FIELD_TYPE.VAR_STRING, charsetnr=UTF8MB4), "varchar"),
        (col(FIELD_TYPE.DATETIME), "datetime"),
        (col(FIELD_TYPE.TIME), "time"),
    ],
)
def test_source_type_name_maps_back_to_the_arrow_type(meta, name):
    assert types.source_type_name(meta) == name
    # the name must be one Feast can map
    types.mysql_to_feast_value_type(name)


def test_int_unsigned_feast_type_agrees_with_arrow_type():
    meta = col(FIELD_TYPE.LONG, length=10, flags=FLAG.UNSIGNED)
    assert types.arrow_type_of(meta) == pa.int64()
    assert types.mysql_to_feast_value_type(types.source_type_name(meta)) == ValueType.INT64
    assert types.mysql_to_feast_value_type("int unsigned") == ValueType.INT64
    assert types.mysql_to_feast_value_type("int(10) unsigned") == ValueType.INT64


# --------------------------------------------------------------------------- column_to_arrow


def test_column_to_arrow_timestamps_get_utc():
    naive = dt.datetime(2024, 5, 6, 7, 8, 9, 123456)
    arr = types.column_to_arrow([naive, None], UTC_US)
    assert arr.type == UTC_US
    assert arr.null_count == 1
    assert arr[0].as_py() == naive.replace(tzinfo=dt.UTC)


def test_column_to_arrow_decimal_to_float():
    arr = types.column_to_arrow(
        [decimal.Decimal("12.34"), None, decimal.Decimal("-0.5")], pa.float64()
    )
    assert arr.type == pa.float64()
    assert arr.to_pylist() == [12.34, None, -0.5]


def test_column_to_arrow_bit_bytes_to_int():
    arr = types.column_to_arrow([b"\x01", b"\x01\x00", None], pa.int64())
    assert arr.to_pylist() == [1, 256, None]


def test_column_to_arrow_string_from_bytes_and_other_values():
    arr = types.column_to_arrow(
        [b"caf\xc3\xa9", "x", dt.timedelta(hours=1, minutes=2)], pa.string()
    )
    assert arr.to_pylist() == ["café", "x", "1:02:00"]


def test_column_to_arrow_binary_kept():
    assert types.column_to_arrow([b"\x00\xff"], pa.binary()).to_pylist() == [b"\x00\xff"]


# --------------------------------------------------------------------------- feast value types


@pytest.mark.parametrize(
    ("name", "value_type"),
    [
        ("tinyint(1)", ValueType.BOOL),
        ("bool", ValueType.BOOL),
        ("BOOLEAN", ValueType.BOOL),
        ("tinyint", ValueType.INT32),
        ("tinyint(4)", ValueType.INT32),
        ("smallint", ValueType.INT32),
        ("mediumint", ValueType.INT32),
        ("int", ValueType.INT32),
        ("int(11)", ValueType.INT32),
        ("integer", ValueType.INT32),
        ("bigint", ValueType.INT64),
        ("bigint unsigned", ValueType.INT64),
        ("BIGINT(20) UNSIGNED", ValueType.INT64),
        ("year", ValueType.INT64),
        ("bit(8)", ValueType.INT64),
        ("float", ValueType.FLOAT),
        ("double", ValueType.DOUBLE),
        ("real", ValueType.DOUBLE),
        ("decimal(10,2)", ValueType.DOUBLE),
        ("decimal(10, 2) unsigned", ValueType.DOUBLE),
        ("char(3)", ValueType.STRING),
        ("varchar(255)", ValueType.STRING),
        ("  VarChar(64) ", ValueType.STRING),
        ("text", ValueType.STRING),
        ("longtext", ValueType.STRING),
        ("enum('a','b')", ValueType.STRING),
        ("set", ValueType.STRING),
        ("time", ValueType.STRING),
        ("json", ValueType.STRING),
        ("binary(16)", ValueType.BYTES),
        ("varbinary(255)", ValueType.BYTES),
        ("blob", ValueType.BYTES),
        ("longblob", ValueType.BYTES),
        ("datetime", ValueType.UNIX_TIMESTAMP),
        ("datetime(6)", ValueType.UNIX_TIMESTAMP),
        ("timestamp", ValueType.UNIX_TIMESTAMP),
        ("date", ValueType.UNIX_TIMESTAMP),
        ("null", ValueType.NULL),
    ],
)
def test_mysql_to_feast_value_type(name, value_type):
    assert types.mysql_to_feast_value_type(name) == value_type


@pytest.mark.parametrize("name", ["geometry", "point", "vector(3)", "", "uuid"])
def test_mysql_to_feast_value_type_unknown(name):
    with pytest.raises(ValueError, match="has no Feast type; cast the column"):
        types.mysql_to_feast_value_type(name)


# --------------------------------------------------------------------------- writing: DDL


@pytest.mark.parametrize(
    ("kind", "ddl", "key_ddl"),
    [
        (pa.bool_(), "BOOLEAN", "BOOLEAN"),
        (pa.int8(), "BIGINT", "BIGINT"),
        (pa.int32(), "BIGINT", "BIGINT"),
        (pa.int64(), "BIGINT", "BIGINT"),
        (pa.uint16(), "BIGINT", "BIGINT"),
        (pa.float16(), "FLOAT", "FLOAT"),
        (pa.float32(), "FLOAT", "FLOAT"),
        (pa.float64(), "DOUBLE", "DOUBLE"),
        (pa.decimal128(10, 2), "DOUBLE", "DOUBLE"),
        (pa.timestamp("ns"), "DATETIME(6)", "DATETIME(6)"),
        (pa.timestamp("us", tz="UTC"), "DATETIME(6)", "DATETIME(6)"),
        (pa.date32(), "DATE", "DATE"),
        (pa.date64(), "DATE", "DATE"),
        (pa.string(), "TEXT", "VARCHAR(255)"),
        (pa.large_string(), "TEXT", "VARCHAR(255)"),
        (pa.dictionary(pa.int32(), pa.string()), "TEXT", "VARCHAR(255)"),
        (pa.binary(), "BLOB", "VARBINARY(255)"),
        (pa.large_binary(), "BLOB", "VARBINARY(255)"),
        (pa.binary(16), "BLOB", "VARBINARY(255)"),
        (pa.null(), "TEXT", "TEXT"),
        (pa.list_(pa.int64()), "JSON", "JSON"),
        (pa.large_list(pa.string()), "JSON", "JSON"),
        (pa.struct([("a", pa.int64())]), "JSON", "JSON"),
        (pa.map_(pa.string(), pa.int64()), "JSON", "JSON"),
    ],
)
def test_ddl_for_arrow(kind, ddl, key_ddl):
    assert types.ddl_for_arrow(kind) == ddl
    assert types.ddl_for_arrow(kind, key=True) == key_ddl


@pytest.mark.parametrize("kind", [pa.duration("s"), pa.time64("us"), pa.month_day_nano_interval()])
def test_ddl_for_arrow_unsupported(kind):
    with pytest.raises(ValueError, match="cannot be stored in TiDB"):
        types.ddl_for_arrow(kind)


@pytest.mark.parametrize(
    ("meta", "ddl"),
    [
        (col(FIELD_TYPE.NEWDECIMAL, length=12, scale=2), "DECIMAL(10, 2)"),
        (col(FIELD_TYPE.NEWDECIMAL, length=11, scale=2, flags=FLAG.UNSIGNED), "DECIMAL(10, 2)"),
        (col(FIELD_TYPE.NEWDECIMAL, length=11, scale=0), "DECIMAL(10, 0)"),
        (col(FIELD_TYPE.JSON), "JSON"),
        (col(FIELD_TYPE.TIMESTAMP, length=19), "DATETIME(6)"),
        (col(FIELD_TYPE.VAR_STRING, length=1020, charsetnr=UTF8MB4), "VARCHAR(1020)"),
        (col(FIELD_TYPE.BLOB, length=262140, charsetnr=UTF8MB4), "LONGTEXT"),
        (col(FIELD_TYPE.VAR_STRING, length=16, charsetnr=BINARY), "VARBINARY(16)"),
        (col(FIELD_TYPE.BLOB, length=65535, charsetnr=BINARY), "LONGBLOB"),
        (col(FIELD_TYPE.TIME, length=10), "TIME(6)"),
        (col(FIELD_TYPE.LONG, length=11), "BIGINT"),
        (col(FIELD_TYPE.LONGLONG, length=20, flags=FLAG.UNSIGNED), "BIGINT UNSIGNED"),
        (col(FIELD_TYPE.TINY, length=1), "BOOLEAN"),
        (col(FIELD_TYPE.DOUBLE, length=22), "DOUBLE"),
        (col(FIELD_TYPE.DATE, length=10), "DATE"),
    ],
)
def test_ddl_for_field(meta, ddl):
    assert types.ddl_for_field(meta) == ddl


# --------------------------------------------------------------------------- writing: rows


def test_arrow_rows_timestamps_are_written_as_naive_utc_datetimes_would_be():
    """Timestamps go as text, formatted in Arrow; the SQL literals pymysql makes of them are
    exactly those it makes of the naive UTC datetimes (no fraction when it is zero)."""
    plus_2 = dt.timezone(dt.timedelta(hours=2))
    table = pa.table(
        {
            "ts": pa.array(
                [dt.datetime(2024, 1, 1, 12, 0, 0, 5, tzinfo=plus_2), None],
                type=pa.timestamp("us", tz="+02:00"),
            ),
            "ns": pa.array(
                [dt.datetime(2024, 6, 1, 0, 30, tzinfo=plus_2)] * 2,
                type=pa.timestamp("ns", tz="Europe/Berlin"),
            ),
            "naive": pa.array([dt.datetime(2024, 3, 3, 3, 3)] * 2, type=pa.timestamp("ms")),
            "edges": pa.array(
                [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)],
                type=pa.timestamp("us"),
            ),
            "sub_us": pa.array(
                [1_700_000_000_123_456_789, 1_700_000_000_000_000_999], pa.timestamp("ns")
            ),
        }
    )
    rows = [r for batch in types.arrow_rows(table, list(table.column_names), 10) for r in batch]
    expected = [
        (
            dt.datetime(2024, 1, 1, 10, 0, 0, 5),
            dt.datetime(2024, 5, 31, 22, 30),
            dt.datetime(2024, 3, 3, 3, 3),
            dt.datetime(1, 1, 1),
            dt.datetime(2023, 11, 14, 22, 13, 20, 123456),
        ),
        (
            None,
            dt.datetime(2024, 5, 31, 22, 30),
            dt.datetime(2024, 3, 3, 3, 3),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
            dt.datetime(2023, 11, 14, 22, 13, 20),
        ),
    ]

    def literals(rows):
        return [tuple(escape_item(v, "utf8mb4") for v in row) for row in rows]

    assert literals(rows) == literals(expected)


def test_arrow_rows_values():
    table = pa.table(
        {
            "f": pa.array([1.5, float("nan"), None]),
            "l": pa.array([[1, 2], [], None], type=pa.list_(pa.int64())),
            "s": pa.array([{"a": 1}, {"a": None}, None], type=pa.struct([("a", pa.int64())])),
            "d": pa.array(["x", "y", "x"]).dictionary_encode(),
            "b": pa.array([True, False, None]),
            "k": pa.array([1, 2, 3], type=pa.int64()),
        }
    )
    (batch,) = list(types.arrow_rows(table, ["k", "f", "l", "s", "d", "b"], 100))
    assert batch == [
        (1, 1.5, "[1, 2]", '{"a": 1}', "x", True),
        (2, None, "[]", '{"a": null}', "y", False),
        (3, None, None, None, "x", None),
    ]


def test_arrow_rows_list_of_timestamps_is_json_text():
    table = pa.table(
        {"l": pa.array([[dt.datetime(2024, 1, 1, 1, 2, 3)]], pa.list_(pa.timestamp("us")))}
    )
    (batch,) = list(types.arrow_rows(table, ["l"], 10))
    assert json.loads(batch[0][0]) == ["2024-01-01T01:02:03"]


def test_arrow_rows_list_with_nan_is_valid_json():
    table = pa.table({"l": pa.array([[1.0, float("nan")], [float("inf")]])})
    (batch,) = list(types.arrow_rows(table, ["l"], 10))

    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    for (text,) in batch:
        json.loads(text, parse_constant=reject)


@pytest.mark.parametrize(
    ("rows", "batch_rows", "sizes"),
    [(10, 3, [3, 3, 3, 1]), (10, 10, [10]), (10, 100, [10]), (1, 1, [1]), (7, 1, [1] * 7)],
)
def test_arrow_rows_batching(rows, batch_rows, sizes):
    table = pa.table({"k": list(range(rows)), "v": [str(i) for i in range(rows)]})
    batches = list(types.arrow_rows(table, ["v", "k"], batch_rows))
    assert [len(b) for b in batches] == sizes
    assert [r for b in batches for r in b] == [(str(i), i) for i in range(rows)]


def test_arrow_rows_batches_never_exceed_batch_rows_with_many_chunks():
    chunk = pa.table({"k": list(range(5))})
    table = pa.concat_tables([chunk] * 4)  # 4 chunks of 5 rows
    batches = list(types.arrow_rows(table, ["k"], 3))
    assert all(0 < len(b) <= 3 for b in batches)
    assert sum(len(b) for b in batches) == 20


def test_arrow_rows_empty_table():
    table = pa.table({"k": pa.array([], pa.int64())})
    assert [r for b in types.arrow_rows(table, ["k"], 5) for r in b] == []


def test_arrow_rows_does_not_turn_real_floats_into_none():
    table = pa.table({"f": [0.0, -1.25, math.pi]})
    (batch,) = list(types.arrow_rows(table, ["f"], 10))
    assert batch == [(0.0,), (-1.25,), (math.pi,)]


def test_sql_literals_cannot_carry_sql():
    ints = types.sql_literals(pa.array([1, None, -(2**63)]))
    assert ints.to_pylist() == ["1", "NULL", "-9223372036854775808"]
    text = types.sql_literals(pa.array(["a'); DROP TABLE t; --", "é", None]))
    assert text.to_pylist() == [
        "_utf8mb4 X'" + b"a'); DROP TABLE t; --".hex() + "'",  # text, converted by the server
        "_utf8mb4 X'c3a9'",
        "NULL",
    ]
    assert types.sql_literals(pa.array([b"\x00\xff"])).to_pylist() == ["X'00ff'"]  # bytes
    stamps = types.sql_literals(
        pa.array([dt.datetime(2026, 1, 2, 3, 4, 5, 6), dt.datetime(2026, 1, 2)], pa.timestamp("us"))
    )
    assert stamps.to_pylist() == ["'2026-01-02 03:04:05.000006'", "'2026-01-02 00:00:00'"]
    assert types.sql_literals(pa.array([True, False, None])).to_pylist() == ["1", "0", "NULL"]


def test_float_literals_read_back_as_the_same_double():
    import random
    import struct

    rng = random.Random(7)
    doubles = [struct.unpack("<d", rng.randbytes(8))[0] for _ in range(50_000)]
    doubles = [v for v in doubles if math.isfinite(v)] + [0.1, -0.0, 5e-324, 1e300, 2.0**53 + 2]
    text = types.sql_literals(pa.array(doubles)).to_pylist()
    assert [float(t) for t in text] == doubles and all(
        set(t) <= set("0123456789.e+-") for t in text
    )
    assert types.sql_literals(pa.array([math.nan, None])).to_pylist() == ["NULL", "NULL"]
    single = pa.array([0.1], pa.float32())  # the float32's own value, as pymysql binds it
    assert types.sql_literals(single).to_pylist() == [repr(single[0].as_py())]
    assert types.sql_literals(pa.array([1.0, math.inf])) is None  # refused by pymysql's path


def test_values_text_batches_rows():
    table = pa.table({"k": [1, 2, 3], "s": ["x", None, "z"]})
    assert list(types.values_text(table, ["k", "s"], 2)) == [
        ("(1,_utf8mb4 X'78'),(2,NULL)", 2),
        ("(3,_utf8mb4 X'7a')", 1),
    ]
    assert types.values_text(pa.table({"f": [0.5, math.inf]}), ["f"], 10) is None
    lists = pa.table({"l": pa.array([["a", "b"], None], pa.list_(pa.string()))})
    assert list(types.values_text(lists, ["l"], 10)) == [  # the JSON text pymysql's path stores
        ("(_utf8mb4 X'" + b'["a", "b"]'.hex() + "'),(NULL)", 2)
    ]
