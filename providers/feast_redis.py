"""Feast's Redis layout in one module: entity keys, hash fields, ValueProto and Timestamp bytes
(encoded and decoded), the compare-and-write script, and the platform's own keys in the online
store (stream progress, load markers). Materialization, the stream job's writer and serving's
reader all use it, byte for byte what Feast's own Redis online store writes.

Feast keeps this layout private to its online store. tests/integration/test_feast_redis_codec.py
holds the codec equal to what Feast's online store writes, value type by value type;
tests/integration/test_materialization_engine.py holds whole materializations equal, key by key.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from feast.protos.feast.types.Value_pb2 import Value
from feast.value_type import ValueType
from google.protobuf.timestamp_pb2 import Timestamp

# ValueProto field setters for scalar Arrow columns (Feast's types, by ValueType).
_SCALAR = {
    ValueType.INT64: "int64_val",
    ValueType.INT32: "int32_val",
    ValueType.DOUBLE: "double_val",
    ValueType.FLOAT: "float_val",
    ValueType.STRING: "string_val",
    ValueType.BOOL: "bool_val",
}
_KEY_PACK = {ValueType.INT64: "<q", ValueType.INT32: "<i"}


# Fixed-width ValueProto fields: (tag byte, little-endian dtype). A oneof field is serialized
# even at its default, so every value is tag + 8 (double) or 4 (float) bytes.
_FIXED = {
    ValueType.DOUBLE: (0x29, "<f8", pa.float64()),
    ValueType.FLOAT: (0x35, "<f4", pa.float32()),
}


def _fixed_width(
    column: pa.Array | pa.ChunkedArray, tag: int, dtype: str, arrow_type: pa.DataType
) -> list[bytes]:
    """Tag + IEEE bytes per value, sliced from one numpy buffer: protobuf's own encoding of the
    field, without a message per value (docs/benchmarks.md, "Materialization, encoding"). Null
    and NaN are b"", as Feast stores them."""
    # Other numbers are converted as the message would (an int64 to the nearest double).
    values = column.cast(arrow_type, safe=False).to_numpy(zero_copy_only=False)  # nulls: NaN
    records = np.empty(len(values), dtype=np.dtype([("tag", "u1"), ("value", dtype)]))
    records["tag"] = tag
    records["value"] = values
    buffer, width = records.tobytes(), records.itemsize
    out = [buffer[i : i + width] for i in range(0, len(buffer), width)]
    for i in np.flatnonzero(np.isnan(values)).tolist():
        out[i] = b""
    return out


def _memoized(values: list, encode: Callable[[Any], bytes]) -> list[bytes]:
    """`encode` once per distinct value: counts, flags, categories and event times repeat."""
    cache: dict = {}
    out: list[bytes] = []
    append = out.append
    for v in values:
        encoded = cache.get(v)
        if encoded is None:
            encoded = cache[v] = encode(v)
        append(encoded)
    return out


def value_bytes(column: pa.Array | pa.ChunkedArray, value_type: ValueType) -> list[bytes]:
    """Serialized ValueProto per value, as Feast stores them (a null is an empty ValueProto).
    tests/unit/test_feast_redis_encoding.py holds these equal to protobuf's own serialization."""
    field = _SCALAR.get(value_type)
    if field is None:  # lists, bytes, timestamps...: Feast's own conversion
        from feast.type_map import python_values_to_proto_values

        protos = python_values_to_proto_values(column.to_pylist(), value_type)
        return [p.SerializeToString() for p in protos]
    numeric = column.type
    if value_type in _FIXED and (
        pa.types.is_floating(numeric) or pa.types.is_integer(numeric) or pa.types.is_null(numeric)
    ):
        return _fixed_width(column, *_FIXED[value_type])
    # The rest (decimals too) value by value, as the message converts them; a null, and a NaN
    # (only floating values are unequal to themselves), are empty, as Feast stores them.
    if value_type == ValueType.BOOL:
        return _memoized(
            column.to_pylist(),
            lambda v: b"" if v is None else Value(bool_val=bool(v)).SerializeToString(),
        )
    return _memoized(
        column.to_pylist(),
        lambda v: b"" if v is None or v != v else Value(**{field: v}).SerializeToString(),
    )


def entity_keys(
    columns: Sequence[pa.Array | pa.ChunkedArray],
    join_keys: Sequence[tuple[str, ValueType]],
    project: str,
    version: int,
) -> list[bytes]:
    """Feast's Redis keys (serialize_entity_key + project) for every row."""
    suffix = project.encode("utf-8")
    if version >= 3 and len(join_keys) == 1:
        name, value_type = join_keys[0]
        encoded = name.encode("utf8")
        prefix = struct.pack("<III", 1, ValueType.STRING.value, len(encoded)) + encoded
        values = columns[0].to_pylist()
        if value_type in _KEY_PACK and None not in values:
            fmt = _KEY_PACK[value_type]
            head = prefix + struct.pack("<II", value_type.value, struct.calcsize(fmt))
            return [head + struct.pack(fmt, v) + suffix for v in values]
        if value_type == ValueType.STRING and None not in values:
            out = []
            for v in values:
                raw = v.encode("utf8")
                out.append(
                    prefix + struct.pack("<II", ValueType.STRING.value, len(raw)) + raw + suffix
                )
            return out
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.type_map import python_values_to_proto_values

    names = [name for name, _ in join_keys]
    protos = [
        python_values_to_proto_values(col.to_pylist(), vt)
        for col, (_, vt) in zip(columns, join_keys, strict=True)
    ]
    return [
        serialize_entity_key(EntityKey(join_keys=names, entity_values=list(row)), version) + suffix
        for row in zip(*protos, strict=True)
    ]


def _timestamp(us: int) -> bytes:
    seconds, rest = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=rest * 1000).SerializeToString()


def timestamp_bytes(micros: pa.Array | pa.ChunkedArray) -> tuple[list[bytes], list[int]]:
    """Feast's stored event time (Timestamp proto) and the same instant in ns, per row, from the
    event times in microseconds since the epoch."""
    values = micros.to_pylist()
    return _memoized(values, _timestamp), [us * 1000 for us in values]


SCRIPT_KEYS = 500  # keys per script call: Redis runs a call whole, ~2-3 ms at this size

# KEYS: the entity keys. ARGV: ts field, n, the n field hashes, then per key its Timestamp proto
# bytes and n value bytes. Writes a key's row only if its event time is later than the stored
# one (Feast's rule), comparing (seconds, nanos) decoded from the Timestamp protos (varints;
# event times before 1970 take the pipelined path). Returns how many keys were written.
WRITE_NEWER = """
local function stamp(b)
  local s, n, i = 0, 0, 1
  while i <= #b do
    local tag = string.byte(b, i)
    i = i + 1
    local v, mul, c = 0, 1, 128
    while c >= 128 do
      c = string.byte(b, i)
      i = i + 1
      v = v + (c % 128) * mul
      mul = mul * 128
    end
    if tag == 8 then s = v elseif tag == 16 then n = v end
  end
  return s, n
end
local ts_field = ARGV[1]
local nf = tonumber(ARGV[2])
local per = nf + 1
local base = 2 + nf
local written = 0
for k = 1, #KEYS do
  local o = base + (k - 1) * per
  local new_s, new_n = stamp(ARGV[o + 1])
  local old = redis.call('HGET', KEYS[k], ts_field)
  local newer = true
  if old and #old > 0 then
    local old_s, old_n = stamp(old)
    if (old_s > 0 or old_n > 0) and (old_s > new_s or (old_s == new_s and old_n >= new_n)) then
      newer = false
    end
  end
  if newer then
    local args = {ts_field, ARGV[o + 1]}
    for j = 1, nf do
      args[#args + 1] = ARGV[2 + j]
      args[#args + 1] = ARGV[o + 1 + j]
    end
    redis.call('HSET', KEYS[k], unpack(args))
    written = written + 1
  end
end
return written
"""


def stored_nanos(raw: bytes | None) -> int:
    if not raw:
        return 0
    stamp = Timestamp()
    stamp.ParseFromString(raw)
    return stamp.seconds * 1_000_000_000 + stamp.nanos


# The stream job re-emits a corrected value at the same event time (a late event inside the
# watermark): it must replace the stored one, so its rule is "not older" rather than "newer".
WRITE_NOT_OLDER = WRITE_NEWER.replace("old_n >= new_n", "old_n > new_n")
assert WRITE_NOT_OLDER != WRITE_NEWER


def view_fields(view_name: str, features: Sequence[str]) -> tuple[str, list[bytes]]:
    """The event-time field and the feature fields of a view in a Feast Redis hash."""
    from feast.infra.online_stores.helpers import _mmh3

    return f"_ts:{view_name}", [_mmh3(f"{view_name}:{f}") for f in features]


def write_scripted(
    client,
    keys: list[bytes],
    ts_field: str,
    fields: list[bytes],
    stamps: list[bytes],
    values: list[list[bytes]],
    *,
    replace_equal: bool = False,
) -> int:
    """Compare-and-write SCRIPT_KEYS keys per script call (one round trip each): a key's row is
    written when its event time is later than the stored one (or equal, with `replace_equal`).
    Event times must not be before 1970 (the script reads them as unsigned varints)."""
    script = client.register_script(WRITE_NOT_OLDER if replace_equal else WRITE_NEWER)
    written = 0
    for start in range(0, len(keys), SCRIPT_KEYS):
        end = min(start + SCRIPT_KEYS, len(keys))
        args: list = [ts_field, len(fields), *fields]
        for i in range(start, end):
            args.append(stamps[i])
            args.extend(col[i] for col in values)
        written += int(script(keys=keys[start:end], args=args))
    return written


# A batch view's tag naming the Spark feature set whose recorded runs vouch for its values
# (spark_jobs/features.py): materialization records their coverage in `progress_key`.
VOUCHED_TAG = "vouched_by_feature_set"


def progress_key(project: str) -> bytes:
    """The hash where the pipelines record, per feature view, the time up to which every key's
    value is complete, in microseconds since the epoch: the stream job its watermark; the
    materialization engine, for a view tagged VOUCHED_TAG, the end of the latest materialized
    interval the batch runs covered. Serving reads it in the same round trip as the features: a
    value is as fresh as this, not as its row's own time (an idle user's count of zero, or an
    unchanged daily value, is current while the pipeline keeps up)."""
    return f"feature_platform:stream_progress:{project}".encode()


def loaded_key(project: str) -> bytes:
    """The hash where materialization records, per feature view, that the view was loaded
    (`mark_loaded`). It lives in the online store, so it vanishes with the data: after a Redis
    restart without persistence, or a flush, serving sees the views are not loaded instead of
    serving empty values, and the next materialization loads them whole (TiDBRedisEngine).
    The hash tag keeps it in one cluster slot with `epoch_key`."""
    return f"{{feature_platform:{project}}}:loaded".encode()


def epoch_key(project: str) -> bytes:
    """A random value a materialization sets (if absent) when it starts and requires when it
    marks views loaded: a flush or a restart while it runs removes it, so nothing is marked."""
    return f"{{feature_platform:{project}}}:epoch".encode()


# KEYS: the epoch, the load markers. ARGV: the epoch seen at start, then (view, end) pairs.
# HSET KEYS[1] ARGV[1] ARGV[2] unless the field already holds a greater integer.
SET_IF_GREATER = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""

MARK_IF_SAME_EPOCH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1
"""


def decode_value(blob: bytes | None) -> tuple[object, bool]:
    """(Python value, present) of a stored ValueProto; an absent or empty one is (None, False)."""
    if not blob:
        return None, False
    from feast.type_map import feast_value_type_to_python_type

    proto = Value()
    proto.ParseFromString(blob)
    if proto.WhichOneof("val") is None:
        return None, False
    return feast_value_type_to_python_type(proto), True


def decode_seconds(blob: bytes | None) -> int:
    """The whole seconds of a stored event time (0 when absent)."""
    if not blob:
        return 0
    stamp = Timestamp()
    stamp.ParseFromString(blob)
    return stamp.seconds
