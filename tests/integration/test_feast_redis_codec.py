"""providers/feast_redis.py is Feast's Redis layout, byte for byte: what Feast's own online store
writes (keys, hash fields, ValueProto and Timestamp bytes) is what the codec produces, and what
the codec decodes is what Feast wrote. Materialization, the stream writer and serving's reader
all go through this module, so this test pins the three to Feast at once."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
import redis
from feast import Entity, FeatureView, Field, ValueType
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.type_map import python_values_to_proto_values
from feast.types import Array, Bool, Float64, Int64, String

from providers import feast_redis

ROWS = [
    # user_id, count, ratio, country, flagged, ips
    (1, 3, 0.25, "DE", True, ["203.0.113.1", "198.51.100.2"]),
    (2, 0, float("nan"), "", False, []),
    (2**40, -7, -1.5e300, "Zoë", None, None),
    (9, None, None, None, True, ["::1"]),
]
FEATURES = [
    ("count", Int64, ValueType.INT64),
    ("ratio", Float64, ValueType.DOUBLE),
    ("country", String, ValueType.STRING),
    ("flagged", Bool, ValueType.BOOL),
    ("ips", Array(String), ValueType.STRING_LIST),
]


@pytest.fixture
def view(repo_config):
    from feast import FileSource

    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    source = FileSource(path="unused.parquet", timestamp_field="event_ts")
    return FeatureView(
        name="codec_view",
        entities=[user],
        schema=[Field(name="user_id", dtype=Int64)]
        + [Field(name=n, dtype=t) for n, t, _ in FEATURES],
        source=source,
    )


def test_feast_writes_what_the_codec_encodes_and_the_codec_reads_it_back(repo_config, view):
    from feast.infra.online_stores.redis import RedisOnlineStore

    when = dt.datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=dt.UTC)
    data = []
    for user_id, *values in ROWS:
        key = EntityKey(
            join_keys=["user_id"],
            entity_values=python_values_to_proto_values([user_id], ValueType.INT64),
        )
        protos = {
            name: python_values_to_proto_values([value], value_type)[0]
            for (name, _, value_type), value in zip(FEATURES, values, strict=True)
        }
        data.append((key, protos, when, None))
    RedisOnlineStore().online_write_batch(repo_config, view, data, None)

    client = redis.Redis.from_url(
        "redis://" + repo_config.online_store.connection_string.split(",")[0]
    )
    keys = feast_redis.entity_keys(
        [pa.array([r[0] for r in ROWS], pa.int64())],
        [("user_id", ValueType.INT64)],
        repo_config.project,
        repo_config.entity_key_serialization_version,
    )
    assert set(keys) == set(client.keys("*"))  # the same keys, nothing else
    ts_field, fields = feast_redis.view_fields(view.name, [n for n, _, _ in FEATURES])
    micros = int(when.timestamp()) * 1_000_000 + when.microsecond
    stamps, _ = feast_redis.timestamp_bytes(pa.array([micros] * len(ROWS), pa.int64()))
    for i, (key, (_, *values)) in enumerate(zip(keys, ROWS, strict=True)):
        stored = client.hgetall(key)
        assert set(stored) == {ts_field.encode(), *fields}
        assert stored[ts_field.encode()] == stamps[i]
        assert feast_redis.decode_seconds(stored[ts_field.encode()]) == int(when.timestamp())
        for (name, _, value_type), field, value in zip(FEATURES, fields, values, strict=True):
            column = pa.array([value], None if value_type != ValueType.INT64 else pa.int64())
            assert feast_redis.value_bytes(column, value_type)[0] == stored[field], name
            decoded, present = feast_redis.decode_value(stored[field])
            nan = isinstance(value, float) and value != value
            if value is None or nan:  # Feast stores both as an empty value
                assert (decoded, present) == (None, False), name
            else:
                assert present and decoded == value, name
