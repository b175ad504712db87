"""Every connection of the platform over verified TLS, against a server that accepts nothing else.

The MariaDB here runs with `require_secure_transport`, a certificate signed by a throwaway CA
(trustme) for 127.0.0.1, and the platform reaches it through the one connection model
(`providers.tidb.settings`, from `TIDB_*`): the offline store's reads (asyncmy under TLS: exact
values, checked certificate), Spark's JDBC reads and writes, and Feast's SQL registry.
"""

from __future__ import annotations

import datetime as dt
import struct

import pandas as pd
import pymysql
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, ValueType
from feast.infra.registry.sql import SqlRegistryConfig
from feast.repo_config import RepoConfig
from feast.types import Float32, Int64

from devstack import MariaDB
from providers.tidb import TiDBOfflineStoreConfig, TiDBSource, connection
from providers.tidb.settings import TiDBSettings
from tests.utils.tables import create_table

T0 = pd.Timestamp("2026-01-10 00:00:00")
USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    import trustme

    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    server_cert.cert_chain_pems[0].write_to_path(str(folder / "server.pem"))
    server_cert.private_key_pem.write_to_path(str(folder / "server-key.pem"))
    other = trustme.CA()  # signed nothing this server presents
    other.cert_pem.write_to_path(str(folder / "other-ca.pem"))
    server = MariaDB(
        folder / "db",
        tls_files=(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"),
    ).start()
    yield server, folder
    server.stop()


@pytest.fixture
def settings(tls_server) -> TiDBSettings:
    server, _ = tls_server
    return TiDBSettings.from_env(server.env())


def test_the_server_refuses_plaintext_and_accepts_the_same_login_over_tls(settings):
    plain = settings.model_copy(update={"tls": False, "tls_ca": None})
    with pytest.raises(pymysql.err.OperationalError, match="1045"):  # MariaDB: access denied
        with connection.connect(plain) as conn:
            connection.fetch_one(conn, ("SELECT 1", []))
    with connection.connect(settings) as conn:
        assert connection.fetch_one(conn, ("SHOW STATUS LIKE 'Ssl_version'", []))[1] != ""


def test_a_certificate_from_another_ca_is_refused(settings, tls_server):
    _, folder = tls_server
    wrong = settings.model_copy(update={"tls_ca": str(folder / "other-ca.pem")})
    with pytest.raises(pymysql.err.OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        with connection.connect(wrong) as conn:
            connection.fetch_one(conn, ("SELECT 1", []))


def test_historical_retrieval_over_tls_is_exact(settings, tmp_path):
    cfg = TiDBOfflineStoreConfig(**settings.connection_fields(), write_batch_rows=1000)
    ratios = [struct.unpack("<f", struct.pack("<f", v))[0] for v in (1 / 7, 0.1, 123456.789)]
    with connection.connect(cfg) as conn:
        create_table(
            conn,
            "ratios_tls",
            "user_id BIGINT, ratio FLOAT, n BIGINT, event_ts DATETIME(6)",
            pd.DataFrame({"user_id": [1, 2, 3], "ratio": ratios, "n": [1, 2, 3], "event_ts": T0}),
        )
    view = FeatureView(
        name="ratios_tls",
        entities=[USER],
        ttl=None,
        schema=[Field(name="ratio", dtype=Float32), Field(name="n", dtype=Int64)],
        source=TiDBSource(name="ratios_tls_src", table="ratios_tls", timestamp_field="event_ts"),
    )
    config = RepoConfig(
        project="tls",
        provider="local",
        # Feast's SQL registry on the same TLS-only server, through the same settings.
        registry=SqlRegistryConfig(
            registry_type="sql", path=settings.sqlalchemy_url(), cache_ttl_seconds=0
        ),
        offline_store=cfg,
        online_store={"type": "sqlite", "path": str(tmp_path / "online.db")},
        entity_key_serialization_version=3,
        repo_path=tmp_path,
    )
    store = FeatureStore(config=config)
    store.apply([USER, view])
    ents = pd.DataFrame({"user_id": [1, 2, 3], "event_timestamp": [T0.tz_localize("UTC")] * 3})
    table = store.get_historical_features(
        entity_df=ents, features=["ratios_tls:ratio", "ratios_tls:n"]
    ).to_arrow()
    assert table.column("ratio").to_pylist() == ratios  # bit for bit, though read as text
    assert table.column("n").to_pylist() == [1, 2, 3]


def test_spark_reads_and_writes_over_tls(settings):
    from pyspark.sql import SparkSession

    from spark_jobs.jdbc import read_events, write_rows
    from spark_jobs.settings import DEFAULT_JDBC_JAR, Database, spark_session

    db = Database.from_env(settings.env())
    assert "useSsl=true" in db.jdbc_url and "serverSslCert=" in db.jdbc_url
    with connection.connect(db.offline_store_config()) as conn:
        create_table(
            conn,
            "events_tls",
            "user_id BIGINT, amount DOUBLE, event_ts DATETIME(6)",
            pd.DataFrame({"user_id": [1, 2], "amount": [1.5, 2.5], "event_ts": [T0, T0]}),
        )
        create_table(conn, "copies_tls", "user_id BIGINT, amount DOUBLE, event_ts DATETIME(6)")
    active = SparkSession.getActiveSession()
    spark = active or spark_session("tls", "local[1]", jdbc_jar=DEFAULT_JDBC_JAR)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    frame = read_events(spark, db, "events_tls", start, start + dt.timedelta(days=30))
    write_rows(frame, db, "copies_tls")
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        cur.execute("SELECT user_id, amount FROM copies_tls ORDER BY user_id")
        assert cur.fetchall() == ((1, 1.5), (2, 2.5))
        cur.execute("SHOW STATUS LIKE 'Ssl_version'")  # this session is TLS too
        assert cur.fetchone()[1].startswith("TLS")


def test_the_tls_reader_verifies_the_certificate_too(settings, tls_server):
    from providers.tidb import reader
    from providers.tidb.errors import TiDBReadError

    _, folder = tls_server
    wrong = settings.model_copy(update={"tls_ca": str(folder / "other-ca.pem")})
    with pytest.raises(TiDBReadError, match="CERTIFICATE_VERIFY_FAILED"):
        reader.read_table(wrong, ("SELECT 1 AS one", []))


def test_an_abandoned_tls_read_stops_its_thread_and_connection(settings):
    import gc
    import threading

    from providers.tidb import reader

    def readers() -> list:
        return [t for t in threading.enumerate() if t.name == "tidb-tls-read"]

    rows = ("SELECT seq FROM seq_1_to_200000", [])  # MariaDB's sequence engine
    schema, batches = reader.read_batches(settings, rows, batch_rows=1000)
    assert schema.names == ["seq"] and next(batches).num_rows == 1000
    batches.close()  # the caller stops reading after one batch
    assert not readers()
    _, unstarted = reader.read_batches(settings, rows, batch_rows=1000)
    assert readers()
    del unstarted  # dropped before its first batch
    gc.collect()
    assert not readers() and gc.isenabled()
    assert reader.read_table(settings, ("SELECT 7 AS n", [])).column("n").to_pylist() == [7]


def test_the_registry_verifies_the_certificate_without_a_ca_setting(settings, tmp_path):
    """pymysql trusts anyone when given no CA: the registry URL names the system's CAs instead,
    which did not sign this server's certificate."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError

    no_ca = settings.model_copy(update={"tls_ca": None})
    assert "ssl_ca=" in no_ca.sqlalchemy_url()
    with pytest.raises(OperationalError, match="CERTIFICATE_VERIFY_FAILED"):
        with create_engine(no_ca.sqlalchemy_url()).connect():
            pass
    with create_engine(settings.sqlalchemy_url()).connect() as conn:
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1
