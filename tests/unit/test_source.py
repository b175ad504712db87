"""TiDBSource, its saved-dataset storage and logging destination; the devstack Redis URL helper."""

from __future__ import annotations

import json

import pytest
from feast.data_source import DataSource
from feast.feature_logging import LoggingConfig
from feast.protos.feast.core.DataSource_pb2 import DataSource as DataSourceProto
from feast.saved_dataset import SavedDatasetStorage
from feast.value_type import ValueType

from devstack import feast_redis_connection_string
from providers.tidb import (
    InvalidIdentifier,
    SavedDatasetTiDBStorage,
    TiDBLoggingDestination,
    TiDBSource,
    TiDBSourceDefinitionError,
)

QUERY = "SELECT * FROM tx WHERE merchant LIKE 'amz%';"


def table_source(**overrides) -> TiDBSource:
    kwargs = {
        "name": "driver_stats_source",
        "table": "fraud.driver_stats",
        "timestamp_field": "event_ts",
        "created_timestamp_column": "created",
        "field_mapping": {"conv": "conv_rate"},
        "description": "driver stats",
        "tags": {"team": "fraud"},
        "owner": "fraud@example.com",
    }
    kwargs.update(overrides)
    return TiDBSource(**kwargs)


# --------------------------------------------------------------------------- definition


def test_both_table_and_query_rejected():
    with pytest.raises(TiDBSourceDefinitionError, match="exactly one of table= or query=.*both"):
        TiDBSource(name="s", table="t", query="SELECT 1")


@pytest.mark.parametrize(("table", "query"), [(None, None), ("", ""), ("", None)])
def test_neither_table_nor_query_rejected(table, query):
    with pytest.raises(TiDBSourceDefinitionError, match="exactly one of table= or query=.*neither"):
        TiDBSource(name="s", table=table, query=query)


def test_query_source_needs_a_name():
    with pytest.raises(TiDBSourceDefinitionError, match="needs a name"):
        TiDBSource(query="SELECT 1", timestamp_field="ts")


def test_definition_errors_are_value_errors():
    with pytest.raises(ValueError):
        TiDBSource(name="s")


@pytest.mark.parametrize("table", ["a.b.c", "t ", "x" * 65, "db."])
def test_bad_table_name_rejected_at_definition(table):
    with pytest.raises(InvalidIdentifier):
        TiDBSource(table=table)


def test_table_source_defaults_its_name_to_the_table():
    source = TiDBSource(table="fraud.driver_stats", timestamp_field="ts")
    assert source.name == "fraud.driver_stats"
    assert source.table == "fraud.driver_stats"
    assert source.query == ""


def test_source_type_and_type_mapping():
    source = table_source()
    assert source.source_type() == DataSourceProto.CUSTOM_SOURCE
    to_feast = TiDBSource.source_datatype_to_feast_value_type()
    assert to_feast("bigint") == ValueType.INT64
    assert to_feast("varchar(64)") == ValueType.STRING


# --------------------------------------------------------------------------- FROM expression


def test_get_table_query_string_for_a_table():
    assert table_source().get_table_query_string() == "`fraud`.`driver_stats`"
    assert TiDBSource(table="we`ird").get_table_query_string() == "`we``ird`"


def test_get_table_query_string_for_a_query():
    source = TiDBSource(name="tx", query=QUERY, timestamp_field="ts")
    assert source.get_table_query_string() == "(SELECT * FROM tx WHERE merchant LIKE 'amz%%'\n)"


# --------------------------------------------------------------------------- proto round trip


def assert_same_source(a: TiDBSource, b: TiDBSource) -> None:
    assert isinstance(b, TiDBSource)
    assert b == a
    assert (b.name, b.table, b.query) == (a.name, a.table, a.query)
    assert (b.timestamp_field, b.created_timestamp_column) == (
        a.timestamp_field,
        a.created_timestamp_column,
    )
    assert b.field_mapping == a.field_mapping
    assert b.tags == a.tags
    assert (b.description, b.owner) == (a.description, a.owner)


def test_table_source_proto_round_trip():
    source = table_source()
    proto = source.to_proto()
    assert proto.type == DataSourceProto.CUSTOM_SOURCE
    assert proto.data_source_class_type == "providers.tidb.source.TiDBSource"
    options = json.loads(proto.custom_options.configuration)
    assert options == {
        "name": "driver_stats_source",
        "table": "fraud.driver_stats",
        "query": "",
        "json_columns": [],
    }
    back = TiDBSource.from_proto(proto)
    assert_same_source(source, back)
    assert back.table == "fraud.driver_stats"
    assert back.field_mapping == {"conv": "conv_rate"}
    assert back.tags == {"team": "fraud"}


def test_json_columns_round_trip_and_old_payloads_still_load():
    source = TiDBSource(name="q", query="SELECT 1", timestamp_field="ts", json_columns=["ips"])
    back = TiDBSource.from_proto(source.to_proto())
    assert back.json_columns == ["ips"] and back == source
    proto = source.to_proto()
    proto.custom_options.configuration = json.dumps(
        {"name": "q", "table": "", "query": "SELECT 1"}
    ).encode()
    assert TiDBSource.from_proto(proto).json_columns == []  # written before json_columns existed


def test_query_source_proto_round_trip():
    source = TiDBSource(
        name="recent_tx",
        query=QUERY,
        timestamp_field="ts",
        field_mapping={"amt": "amount"},
        tags={"pii": "no"},
    )
    back = TiDBSource.from_proto(source.to_proto())
    assert_same_source(source, back)
    assert back.query == QUERY
    assert back.table == ""
    assert back.created_timestamp_column == ""


def test_feast_data_source_from_proto_dispatches_to_tidb_source():
    source = table_source()
    back = DataSource.from_proto(source.to_proto())
    assert_same_source(source, back)


def test_sources_differing_in_table_or_query_are_not_equal():
    assert table_source() != table_source(table="fraud.other")
    a = TiDBSource(name="q", query="SELECT 1", timestamp_field="ts")
    b = TiDBSource(name="q", query="SELECT 2", timestamp_field="ts")
    assert a != b
    assert a == TiDBSource(name="q", query="SELECT 1", timestamp_field="ts")


# --------------------------------------------------------------------------- saved datasets


@pytest.mark.parametrize("table_ref", ["saved_ds", "fraud.saved_ds"])
def test_saved_dataset_storage_round_trip(table_ref):
    storage = SavedDatasetTiDBStorage(table_ref=table_ref)
    back = SavedDatasetStorage.from_proto(storage.to_proto())
    assert isinstance(back, SavedDatasetTiDBStorage)
    assert back.table_ref == table_ref


def test_saved_dataset_storage_to_data_source():
    source = SavedDatasetTiDBStorage("fraud.saved_ds").to_data_source()
    assert isinstance(source, TiDBSource)
    assert source.table == "fraud.saved_ds"


def test_saved_dataset_storage_rejects_bad_names():
    with pytest.raises(InvalidIdentifier):
        SavedDatasetTiDBStorage("a.b.c")


# --------------------------------------------------------------------------- logging


@pytest.mark.parametrize("table_name", ["feature_logs", "fraud.feature_logs"])
def test_logging_destination_round_trip(table_name):
    config = LoggingConfig(
        destination=TiDBLoggingDestination(table_name=table_name), sample_rate=0.25
    )
    proto = config.to_proto()
    assert proto.custom_destination.kind == "tidb_destination"
    back = LoggingConfig.from_proto(proto)
    assert isinstance(back.destination, TiDBLoggingDestination)
    assert back.destination.table_name == table_name
    assert back.sample_rate == 0.25


def test_logging_destination_to_data_source():
    source = TiDBLoggingDestination(table_name="logs").to_data_source()
    assert isinstance(source, TiDBSource)
    assert source.table == "logs"
    assert source.timestamp_field == "__log_timestamp"


def test_logging_destination_rejects_bad_names():
    with pytest.raises(InvalidIdentifier):
        TiDBLoggingDestination(table_name="")


# --------------------------------------------------------------------------- devstack


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "127.0.0.1:6379,db=0"),
        ("redis://127.0.0.1:6380/3", "127.0.0.1:6380,db=3"),
        ("redis://localhost", "localhost:6379,db=0"),
        ("redis://localhost:6379/", "localhost:6379,db=0"),
        ("redis://:s3cret@10.0.0.5:6379/1", "10.0.0.5:6379,db=1,password=s3cret"),
        ("rediss://cache.example.com:6380/0", "cache.example.com:6380,db=0,ssl=true"),
        (
            "rediss://:pw@cache.example.com:6380/2",
            "cache.example.com:6380,db=2,password=pw,ssl=true",
        ),
    ],
)
def test_feast_redis_connection_string(url, expected):
    assert feast_redis_connection_string(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "127.0.0.1:6379",
        "redis://",
        "redis:///0",
        "",
        "unix:///tmp/r.sock",
    ],
)
def test_feast_redis_connection_string_rejects_bad_urls(url):
    with pytest.raises(ValueError, match="REDIS_URL must look like redis://host:port/0"):
        feast_redis_connection_string(url)


@pytest.mark.parametrize("url", ["redis://h:99999/0", "redis://h:6379/abc"])
def test_feast_redis_connection_string_bad_port_or_db_is_a_value_error(url):
    with pytest.raises(ValueError):
        feast_redis_connection_string(url)


def test_feast_redis_connection_string_decodes_percent_encoded_password():
    assert feast_redis_connection_string("redis://:p%40ss@h:6379/0") == "h:6379,db=0,password=p@ss"
