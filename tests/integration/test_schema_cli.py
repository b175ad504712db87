"""`python -m spark_jobs.schema`: database and tables from nothing, idempotent, clear failures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

from tests.utils.tables import rows


def schema(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "spark_jobs.schema", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_creates_the_database_and_tables_and_runs_twice(mariadb, tmp_path):
    import pymysql

    name = f"s_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, **mariadb.env(), "TIDB_DATABASE": name}
    first = schema(env, "--create-database")
    assert first.returncode == 0, first.stderr
    assert "Schema ready" in first.stdout
    again = schema(env, "--create-database")
    assert again.returncode == 0, again.stderr
    conn = pymysql.connect(
        host="127.0.0.1", port=mariadb.port, user=mariadb.user, password=mariadb.password
    )
    try:
        tables = {
            r[0]
            for r in rows(
                conn,
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                (name,),
            )
        }
        assert {"logins", "feature_runs", "user_login_features", "login_push_events"} <= tables
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{name}`")
        conn.close()


def test_missing_settings_exit_2_naming_them(mariadb):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDB_")}
    result = schema(env)
    assert result.returncode == 2 and "TIDB_HOST" in result.stderr


def test_unreachable_server_is_retried_then_reported(mariadb):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once this block ends: nothing listens there
    env = {**os.environ, **mariadb.env(), "TIDB_PORT": str(port), "TIDB_DATABASE": "x"}
    started = time.monotonic()
    result = schema(env, "--wait-seconds", "5")
    assert result.returncode == 1 and f"127.0.0.1:{port} refused" in result.stderr
    assert "waiting for TiDB" in result.stderr and time.monotonic() - started >= 5
