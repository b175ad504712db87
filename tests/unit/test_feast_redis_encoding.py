"""The Redis codec's fast paths against protobuf's own serialization of Feast's messages: every
value type the fast paths take, with nulls, NaN, signed zeros, infinities and extremes."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from feast.protos.feast.types.Value_pb2 import Value
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

from providers import feast_redis

EDGES = {
    ValueType.DOUBLE: (
        pa.float64(),
        "double_val",
        [0.0, -0.0, 1.5, -2.25, None, math.nan, math.inf, -math.inf, 1e308, 5e-324, 0.1],
    ),
    ValueType.FLOAT: (
        pa.float32(),
        "float_val",
        [0.0, -0.0, 1.5, None, math.nan, math.inf, 3.4e38, 1e-45, 0.1],
    ),
    ValueType.INT64: (
        pa.int64(),
        "int64_val",
        [0, 1, -1, 127, 128, 300, None, 2**63 - 1, -(2**63)],
    ),
    ValueType.INT32: (pa.int32(), "int32_val", [0, 1, -1, None, 2**31 - 1, -(2**31), 1, 1]),
    ValueType.BOOL: (pa.bool_(), "bool_val", [True, False, None, True, False]),
    ValueType.STRING: (pa.string(), "string_val", ["", "a", None, "ü€", "a", "x" * 300]),
}


def protobuf(values: list, field: str) -> list[bytes]:
    out = []
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out.append(b"")  # Feast stores a null (and NaN) as an empty ValueProto
        else:
            out.append(Value(**{field: v}).SerializeToString())
    return out


@pytest.mark.parametrize("value_type", list(EDGES), ids=lambda t: t.name)
def test_values_are_protobufs_serialization(value_type):
    arrow_type, field, values = EDGES[value_type]
    column = pa.array(values, arrow_type)
    want = protobuf(column.to_pylist(), field)
    assert feast_redis.value_bytes(column, value_type) == want
    chunked = pa.chunked_array([column.slice(0, 3), column.slice(3)])
    assert feast_redis.value_bytes(chunked, value_type) == want


def test_random_doubles_and_ints_match_protobuf():
    rng = np.random.default_rng(3)
    doubles = rng.standard_normal(5_000) * 10.0 ** rng.integers(-30, 30, 5_000)
    assert feast_redis.value_bytes(pa.array(doubles), ValueType.DOUBLE) == protobuf(
        doubles.tolist(), "double_val"
    )
    ints = rng.integers(-(2**62), 2**62, 5_000)
    assert feast_redis.value_bytes(pa.array(ints), ValueType.INT64) == protobuf(
        ints.tolist(), "int64_val"
    )


def test_timestamps_are_protobufs_serialization():
    micros = [0, 1, 999_999, 1_000_000, 1_700_000_000_123_456, 1_700_000_000_123_456, 86_400]
    stamps, nanos = feast_redis.timestamp_bytes(pa.array(micros, pa.int64()))
    assert stamps == [
        Timestamp(seconds=us // 1_000_000, nanos=us % 1_000_000 * 1000).SerializeToString()
        for us in micros
    ]
    assert nanos == [us * 1000 for us in micros]


def test_doubles_from_other_arrow_types_convert_as_the_message_would():
    for column in (
        pa.array([None, None]),
        pa.array([1, -3, 2**53 + 1]),
        pa.array([0.5], pa.float32()),
    ):
        assert feast_redis.value_bytes(column, ValueType.DOUBLE) == protobuf(
            column.to_pylist(), "double_val"
        )


def test_floats_and_decimals_convert_as_the_message_would():
    from decimal import Decimal

    doubles = pa.array([0.1, 1e39, -1e39, 3.4028235e38, 1.0000001, None])
    assert feast_redis.value_bytes(doubles, ValueType.FLOAT) == protobuf(
        doubles.to_pylist(), "float_val"
    )
    decimals = pa.array([Decimal("1.15"), Decimal("-0.07"), None, Decimal("12345678.91")])
    assert feast_redis.value_bytes(decimals, ValueType.DOUBLE) == protobuf(
        decimals.to_pylist(), "double_val"
    )
    empty = pa.chunked_array([], pa.float64())
    assert feast_redis.value_bytes(empty, ValueType.DOUBLE) == []
