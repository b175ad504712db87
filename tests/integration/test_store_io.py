"""Materialization reads, push to offline, feature logging, saved datasets, types and validation."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureService, FeatureView, Field, PushSource
from feast.data_source import PushMode
from feast.feature_logging import FeatureServiceLoggingSource, LoggingConfig
from feast.types import Array, Int64, String

from providers.tidb import (
    SavedDatasetTiDBStorage,
    TiDBLoggingDestination,
    TiDBOfflineStore,
    TiDBSavedDatasetExists,
    TiDBSource,
    TiDBSourceColumnNotFound,
    TiDBSourceNotFound,
    TiDBWriteSchemaMismatch,
)
from tests.utils.repo import USER, store_with, user_view
from tests.utils.tables import create_table, rows

UTC = dt.UTC
T0 = dt.datetime(2026, 2, 1, tzinfo=UTC)
DDL = "user_id BIGINT, spend DOUBLE, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)"


def _naive(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


@pytest.fixture
def seeded(db):
    data = pd.DataFrame(
        {
            "user_id": [1, 1, 1, 2, 2],
            "spend": [1.0, 2.0, 3.0, 4.0, 5.0],
            "n": [1, 2, 3, 4, 5],
            "event_ts": [
                _naive(T0),
                _naive(T0 + timedelta(hours=1)),
                _naive(T0 + timedelta(hours=1)),
                _naive(T0),
                _naive(T0 + timedelta(days=3)),
            ],
            "created_ts": [
                _naive(T0),
                _naive(T0),
                _naive(T0 + timedelta(minutes=5)),
                _naive(T0),
                _naive(T0),
            ],
        }
    )
    create_table(db, "user_stats", DDL, data)
    return data


def test_pull_latest_dedups_in_sql(repo_config, seeded):
    job = TiDBOfflineStore.pull_latest_from_table_or_query(
        repo_config,
        TiDBSource(table="user_stats", timestamp_field="event_ts"),
        ["user_id"],
        ["spend", "n"],
        "event_ts",
        "created_ts",
        T0,
        T0 + timedelta(days=1),
    )
    assert "ROW_NUMBER()" in job.to_sql()
    df = job.to_df().sort_values("user_id")
    assert df["spend"].tolist() == [
        3.0,
        4.0,
    ]  # user 1: latest event, tie -> latest created; user 2: in range
    assert df.columns.tolist() == ["user_id", "spend", "n", "event_ts", "created_ts"]
    assert str(df["event_ts"].dt.tz) == "UTC"


def test_pull_all_returns_every_row_in_range(repo_config, seeded):
    job = TiDBOfflineStore.pull_all_from_table_or_query(
        repo_config,
        TiDBSource(table="user_stats", timestamp_field="event_ts"),
        ["user_id"],
        ["spend"],
        "event_ts",
        None,
        T0,
        T0 + timedelta(hours=1),
    )
    df = job.to_df()
    assert sorted(df["spend"].tolist()) == [
        1.0,
        2.0,
        3.0,
        4.0,
    ]  # both ends inclusive, day 3 excluded
    assert df.columns.tolist() == ["user_id", "spend", "event_ts"]


def test_materialize_to_redis_and_read_online(repo_config, seeded):
    store = store_with(repo_config, user_view(ttl=None))
    store.materialize(start_date=T0 - timedelta(days=1), end_date=T0 + timedelta(days=5))
    online = store.get_online_features(
        features=["user_stats:spend", "user_stats:n"],
        entity_rows=[{"user_id": 1}, {"user_id": 2}, {"user_id": 3}],
    ).to_dict()
    assert online["spend"] == [3.0, 5.0, None]
    assert online["n"] == [3, 5, None]


def test_materialize_with_pull_latest_features(repo_config, seeded):
    from feast.repo_config import MaterializationConfig

    repo_config.materialization_config = MaterializationConfig(pull_latest_features=True)
    store = store_with(repo_config, user_view(ttl=None))
    store.materialize(start_date=T0 - timedelta(days=1), end_date=T0 + timedelta(days=5))
    online = store.get_online_features(
        features=["user_stats:spend"], entity_rows=[{"user_id": 1}]
    ).to_dict()
    assert online["spend"] == [3.0]


# ----------------------------------------------------------------------- push to offline


def _push_view(table="login_events"):
    batch = TiDBSource(name="login_src", table=table, timestamp_field="event_ts")
    push = PushSource(name="login_push", batch_source=batch)
    view = FeatureView(
        name="last_login",
        entities=[USER],
        ttl=None,
        source=push,
        schema=[
            Field(name="ip", dtype=String),
            Field(name="fails", dtype=Int64),
            Field(name="recent_ips", dtype=Array(String)),
        ],
    )
    return push, view


LOGIN_DDL = "user_id BIGINT NOT NULL, ip VARCHAR(64), fails BIGINT, recent_ips JSON, event_ts DATETIME(6) NOT NULL"


def _logins(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": range(n),
            "ip": [f"10.0.0.{i % 250}" for i in range(n)],
            "fails": [i % 3 for i in range(n)],
            "recent_ips": [[f"10.0.0.{i % 250}", "1.1.1.1"] for i in range(n)],
            "event_ts": pd.Timestamp(T0) + pd.to_timedelta(range(n), unit="s"),
        }
    )


def test_push_to_online_and_offline_in_batches(repo_config, db):
    create_table(db, "login_events", LOGIN_DDL)
    push, view = _push_view()
    store = store_with(repo_config, push, view)
    n = 2500  # write_batch_rows is 1000 in the test config: three transactions
    store.push("login_push", _logins(n), to=PushMode.ONLINE_AND_OFFLINE)
    assert rows(db, "SELECT COUNT(*) FROM login_events")[0][0] == n
    ents = pd.DataFrame({"user_id": [7, 2499], "event_timestamp": [T0 + timedelta(hours=2)] * 2})
    hist = store.get_historical_features(
        entity_df=ents, features=["last_login:ip", "last_login:recent_ips"]
    ).to_df()
    assert hist["ip"].tolist() == ["10.0.0.7", "10.0.0.249"]
    assert list(hist["recent_ips"].iloc[0]) == ["10.0.0.7", "1.1.1.1"]  # arrays round-trip as JSON
    online = store.get_online_features(
        features=["last_login:ip"], entity_rows=[{"user_id": 7}]
    ).to_dict()
    assert online["ip"] == ["10.0.0.7"]


def test_offline_write_batch_reports_progress_and_creates_a_missing_table(repo_config, db):
    push, view = _push_view(table="new_logins")
    store_with(repo_config, push, view)
    done = []
    table = pa.Table.from_pandas(_logins(2100), preserve_index=False)
    TiDBOfflineStore.offline_write_batch(repo_config, view, table, done.append)
    assert done == [1000, 1000, 100]
    assert rows(db, "SELECT COUNT(*), MAX(fails) FROM new_logins")[0] == (2100, 2)


def test_offline_write_batch_checks_columns(repo_config, db):
    create_table(
        db, "login_events", LOGIN_DDL + ", ingested_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)"
    )
    push, view = _push_view()
    store_with(repo_config, push, view)
    ok = pa.Table.from_pandas(_logins(1), preserve_index=False)
    TiDBOfflineStore.offline_write_batch(
        repo_config, view, ok, None
    )  # ingested_at: filled by the server
    assert rows(db, "SELECT ip, ingested_at IS NOT NULL FROM login_events") == [("10.0.0.0", 1)]
    bad = ok.drop_columns(["ip", "event_ts"]).append_column("device", pa.array(["x"]))
    with pytest.raises(TiDBWriteSchemaMismatch, match=r"missing columns \['event_ts'\].*device"):
        TiDBOfflineStore.offline_write_batch(repo_config, view, bad, None)
    assert rows(db, "SELECT COUNT(*) FROM login_events")[0][0] == 1  # nothing half-written


# ----------------------------------------------------------------------- logging


def test_write_logged_features(repo_config, db, seeded):
    view = user_view()
    svc = FeatureService(
        name="fraud_v1",
        features=[view],
        logging_config=LoggingConfig(destination=TiDBLoggingDestination(table_name="served_log")),
    )
    store = store_with(repo_config, view, svc)
    svc = store.get_feature_service("fraud_v1")
    assert isinstance(
        svc.logging_config.destination, TiDBLoggingDestination
    )  # survives the registry
    schema = FeatureServiceLoggingSource(svc, store.project).get_schema(store.registry)
    n = 1200
    now = pd.Timestamp(T0)
    data = {f.name: None for f in schema}
    data.update(
        {
            "user_id": list(range(n)),
            "user_stats__spend": [float(i) for i in range(n)],
            "user_stats__n": list(range(n)),
            "__log_timestamp": [now] * n,
            "__log_date": [now.date()] * n,
            "__request_id": [f"req-{i}" for i in range(n)],
        }
    )
    for f in schema:
        if data[f.name] is None:
            data[f.name] = [None] * n
    logs = pa.Table.from_pydict(data, schema=schema)
    store.write_logged_features(logs=logs, source=svc)
    store.write_logged_features(logs=logs.slice(0, 10), source=svc)  # appends
    assert rows(db, "SELECT COUNT(*), COUNT(DISTINCT `__request_id`) FROM served_log")[0] == (
        n + 10,
        n,
    )
    assert rows(
        db, "SELECT `user_stats__spend` FROM served_log WHERE `__request_id` = 'req-42' LIMIT 1"
    ) == [(42.0,)]


# ----------------------------------------------------------------------- saved datasets


def test_saved_dataset_round_trip(repo_config, db, seeded):
    store = store_with(repo_config, user_view(ttl=None))
    ents = pd.DataFrame(
        {"user_id": [1, 2], "event_timestamp": [T0 + timedelta(days=4)] * 2, "label": [1, 0]}
    )
    job = store.get_historical_features(
        entity_df=ents, features=["user_stats:spend", "user_stats:n"]
    )
    expected = job.to_df()
    storage = SavedDatasetTiDBStorage(table_ref="training_set_v1")
    store.create_saved_dataset(from_=job, name="training_v1", storage=storage)
    loaded = store.get_saved_dataset("training_v1").to_df()
    # Feast reads a saved dataset back as join keys + features + event_timestamp ...
    assert sorted(loaded.columns) == ["event_timestamp", "n", "spend", "user_id"]
    pd.testing.assert_frame_equal(
        loaded.sort_values("user_id").reset_index(drop=True),
        expected.sort_values("user_id").reset_index(drop=True)[loaded.columns],
        check_dtype=False,
    )
    # ... while the table keeps every column of the training set, labels included.
    assert rows(db, "SELECT label, spend FROM training_set_v1 ORDER BY user_id") == [
        (1, 3.0),
        (0, 5.0),
    ]
    with pytest.raises(TiDBSavedDatasetExists):
        job.persist(storage)
    job.persist(storage, allow_overwrite=True)
    assert rows(db, "SELECT COUNT(*) FROM training_set_v1")[0][0] == 2


# ----------------------------------------------------------------------- types


def test_type_map_on_a_real_table(repo_config, db):
    create_table(
        db,
        "typed",
        (
            "id BIGINT, i INT, iu INT UNSIGNED, si SMALLINT, b BOOLEAN, f FLOAT, d DOUBLE, dec_ DECIMAL(10,2), "
            "s VARCHAR(20), t TEXT, bin VARBINARY(8), bl BLOB, dtm DATETIME(6), tsm TIMESTAMP(6) NULL, "
            "dt DATE, j JSON, ts DATETIME(6)"
        ),
    )
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO typed VALUES (1, -5, 4000000000, 7, TRUE, 1.5, 2.25, 12.34, 'héllo', 'long', "
            "X'00FF', X'0102', '2026-02-01 10:00:00.123456', '2026-02-01 10:00:00', '2026-02-01', "
            "'[1, 2, 3]', '2026-02-01 00:00:00')"
        )
    source = TiDBSource(table="typed", timestamp_field="ts")
    cols = dict(source.get_table_column_names_and_types(repo_config))
    assert cols["b"] == "tinyint(1)" and cols["id"] == "bigint" and cols["dtm"] == "datetime"
    table = TiDBOfflineStore.pull_all_from_table_or_query(
        repo_config,
        source,
        ["id"],
        ["i", "iu", "si", "b", "f", "d", "dec_", "s", "t", "bin", "bl", "dtm", "tsm", "dt", "j"],
        "ts",
        None,
        None,
        None,
    ).to_arrow()
    types = {f.name: str(f.type) for f in table.schema}
    assert types == {
        "id": "int64",
        "i": "int32",
        "iu": "int64",
        "si": "int32",
        "b": "bool",
        "f": "float",
        "d": "double",
        "dec_": "double",
        "s": "string",
        "t": "string",
        "bin": "binary",
        "bl": "binary",
        "dtm": "timestamp[us, tz=UTC]",
        "tsm": "timestamp[us, tz=UTC]",
        "dt": "timestamp[us, tz=UTC]",  # Feast's type for a DATE column is UNIX_TIMESTAMP
        "j": "list<item: int64>",
        "ts": "timestamp[us, tz=UTC]",
    }
    row = table.to_pylist()[0]
    assert (
        row["iu"] == 4000000000
        and row["b"] is True
        and row["s"] == "héllo"
        and row["bin"] == b"\x00\xff"
    )
    assert row["dtm"] == dt.datetime(2026, 2, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert row["tsm"] == dt.datetime(
        2026, 2, 1, 10, 0, tzinfo=UTC
    )  # TIMESTAMP read in the UTC session
    assert row["j"] == [1, 2, 3]


# ----------------------------------------------------------------------- validation


def test_validate_data_source(repo_config, db):
    create_table(db, "user_stats", DDL)
    store = TiDBOfflineStore()
    store.validate_data_source(
        repo_config,
        TiDBSource(
            table="user_stats", timestamp_field="event_ts", created_timestamp_column="created_ts"
        ),
    )
    with pytest.raises(TiDBSourceColumnNotFound, match="event_time.*Available columns"):
        store.validate_data_source(
            repo_config, TiDBSource(table="user_stats", timestamp_field="event_time")
        )
    with pytest.raises(TiDBSourceColumnNotFound, match="field_mapping"):
        store.validate_data_source(
            repo_config,
            TiDBSource(
                table="user_stats", timestamp_field="event_ts", field_mapping={"amount": "spend"}
            ),
        )
    with pytest.raises(TiDBSourceNotFound, match="no_such_table"):
        store.validate_data_source(
            repo_config, TiDBSource(table="no_such_table", timestamp_field="ts")
        )
    with pytest.raises(TiDBSourceNotFound, match="query"):
        store.validate_data_source(
            repo_config, TiDBSource(name="q", query="SELEC nonsense", timestamp_field="ts")
        )


def test_a_plain_connection_does_not_negotiate_tls(store_config):
    """tls: false means a plaintext session, even though pymysql would otherwise try TLS."""
    from providers.tidb.connection import connect

    with connect(store_config) as conn:
        assert conn.ssl is False
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchone()[1] == ""
