"""Least-privilege role accounts (providers/tidb/roles.py) on the real server: what each may do
and, as much, what each may not. Whole workloads run under them elsewhere: serving in
test_serving.py, the jobs, `feast apply`, materialization and erasure in test_erasure.py."""

from __future__ import annotations

import pymysql
import pytest

DENIED = {1142, 1143, 1044, 1045, 1227}  # table/column/database command denied, no access


def connect(mariadb, account: dict[str, str], database: str):
    return pymysql.connect(
        host="127.0.0.1",
        port=mariadb.port,
        user=account["TIDB_USER"],
        password=account["TIDB_PASSWORD"],
        database=database,
        autocommit=True,
    )


def may(conn, statement: str) -> bool:
    """True when the statement runs; False when the server refuses it for privileges."""
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            cur.fetchall()
        return True
    except (pymysql.err.OperationalError, pymysql.err.ProgrammingError) as exc:
        if exc.args[0] in DENIED:
            return False
        raise


@pytest.fixture
def accounts(mariadb, database, db):
    from spark_jobs.schema import ALL_TABLES, ensure_tables

    ensure_tables(db, ALL_TABLES)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE `{database}_registry`.feature_views (name VARCHAR(64))")
    return mariadb.create_roles(database)


def test_serving_cannot_read_events_features_or_labels_nor_drop_anything(
    mariadb, database, accounts
):
    serving = connect(mariadb, accounts["serving"], database)
    registry = f"`{database}_registry`.feature_views"
    for table in ("logins", "transactions", "labels", "user_transaction_features"):
        assert not may(serving, f"SELECT * FROM {table}"), table
    assert not may(serving, "DROP TABLE login_push_events")
    assert not may(serving, "DELETE FROM login_push_events")
    assert not may(serving, "TRUNCATE TABLE served_account_takeover")
    assert not may(serving, "CREATE TABLE anything_else (a INT)")
    assert not may(serving, f"INSERT INTO {registry} VALUES ('x')")
    assert not may(serving, f"DROP DATABASE `{database}`")
    # What it does: read the registry, write push rows, create, widen and fill its logs.
    assert may(serving, f"SELECT * FROM {registry}")
    assert may(serving, "INSERT INTO login_push_events (user_id, event_ts) VALUES (1, NOW(6))")
    assert may(serving, "SELECT * FROM login_push_events LIMIT 0")
    assert may(serving, "CREATE TABLE served_account_takeover (user_id BIGINT)")
    assert may(serving, "ALTER TABLE served_account_takeover ADD COLUMN x INT")
    assert may(serving, "INSERT INTO served_account_takeover VALUES (1, 2)")


def test_the_reader_writes_only_scratch_and_the_writer_never_the_definitions(
    mariadb, database, accounts
):
    reader = connect(mariadb, accounts["reader"], database)
    scratch = f"`{database}_scratch`"
    assert may(reader, "SELECT * FROM logins")
    assert not may(reader, "INSERT INTO labels VALUES (1, 1, 'x', NOW(), NOW())")
    assert not may(reader, "CREATE TABLE _feast_entity_x (a INT)")
    assert not may(reader, "DELETE FROM user_login_features")
    assert may(reader, f"CREATE TABLE {scratch}._feast_entity_x (a INT)")
    assert may(reader, f"DROP TABLE {scratch}._feast_entity_x")

    writer = connect(mariadb, accounts["writer"], database)
    registry = f"`{database}_registry`.feature_views"
    assert may(writer, "DELETE FROM logins WHERE user_id = 1")
    assert may(writer, "CREATE TABLE IF NOT EXISTS velocity_x (a INT)")
    assert may(writer, f"SELECT * FROM {registry}")
    assert not may(writer, f"DELETE FROM {registry}")
    assert not may(writer, f"DROP TABLE {registry}")
    assert not may(writer, f"CREATE TABLE {scratch}.t (a INT)")
    assert not may(writer, f"DROP DATABASE `{database}`")
    assert not may(writer, "DROP TABLE logins")

    registry_role = connect(mariadb, accounts["registry"], database)
    assert may(registry_role, f"CREATE TABLE `{database}_registry`.entities (a INT)")
    assert may(registry_role, "SELECT * FROM logins LIMIT 0")
    assert not may(registry_role, "DELETE FROM logins")


def test_the_statements_bind_values_and_quote_names():
    from providers.tidb import roles

    out = roles.statements("serving", "fr`aud", "u'; DROP USER root; --", "p'w", "127.0.0.1")
    assert out[0] == (
        "CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s",
        ["u'; DROP USER root; --", "127.0.0.1", "p'w"],
    )
    assert all("u'" not in text and "p'w" not in text for text, _ in out)  # values are bound
    assert "ON `fr``aud_registry`.* TO %s@%s" in out[2][0]
    with pytest.raises(ValueError, match="unknown role"):
        roles.grants("admin", "fraud")
