"""The daily DAG run for real by Airflow 3 (`dag.test()`, its own SQLite metadata DB) against real
MariaDB and Redis: the operators run the platform's commands in the platform's environment (the
main .venv, named in the connection's `python` extra), as a deployment with separate Airflow and
platform environments does.

events (generated) -> [batch_features -> materialize_incremental -> skew_report_*] -> rows in TiDB.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from devstack import feast_redis_connection_string
from pipelines.airflow.hooks import FeaturePlatformHook

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture
def platform_connection(mariadb, redis_server, monkeypatch):
    if not PLATFORM_PYTHON.exists():
        pytest.fail(f"{PLATFORM_PYTHON} is missing: run `make venv` (the platform environment).")
    database = f"af_{uuid.uuid4().hex[:10]}"
    conn = {
        "conn_type": "feature_platform",
        "host": "127.0.0.1",
        "port": mariadb.port,
        "login": mariadb.user,
        "password": mariadb.password,
        "schema": database,
        "extra": {
            "redis_connection_string": feast_redis_connection_string(redis_server.url),
            "python": str(PLATFORM_PYTHON),
            "spark_master": "local[2]",
        },
    }
    monkeypatch.setenv("AIRFLOW_CONN_FEATURE_PLATFORM_DEFAULT", json.dumps(conn))
    return {**conn, "redis_url": redis_server.url}


def platform(*args: str) -> str:
    """A command in the platform's environment with the connection's settings (test setup)."""
    return FeaturePlatformHook().module(*args).output


@pytest.fixture(scope="module")
def airflow_db():
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        timeout=300,
    )


@pytest.mark.timeout(600)
def test_daily_dag_computes_materializes_and_reports(platform_connection, airflow_db):
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    # The platform's own setup commands, through the same hook.
    platform("spark_jobs.schema", "--create-database")
    platform(
        "spark_jobs.generate",
        "--users", "60", "--days", "12", "--end", "2026-03-02",
    )  # fmt: skip
    FeaturePlatformHook().feast("apply")

    dag = DagBag(dag_folder=str(ROOT / "pipelines" / "airflow" / "dags")).dags[
        "feature_platform_daily"
    ]
    run = dag.test(logical_date=dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.UTC))
    assert run.state == DagRunState.SUCCESS, [
        (ti.task_id, ti.state) for ti in run.get_task_instances()
    ]
    returned = {ti.task_id: ti.xcom_pull(task_ids=ti.task_id) for ti in run.get_task_instances()}
    assert returned["skew_report_account_takeover"] == []  # nothing served yet: an empty report

    # What the run left behind, read with plain SQL and redis-cli in the platform's environment.
    query = (
        "import os, json, pymysql; e = os.environ; c = pymysql.connect(host=e['TIDB_HOST'], "
        "port=int(e['TIDB_PORT']), user=e['TIDB_USER'], password=e['TIDB_PASSWORD'], "
        "database=e['TIDB_DATABASE']); cur = c.cursor(); "
        'cur.execute("SELECT status, range_start, range_end FROM feature_runs"); '
        "runs = [[str(v) for v in r] for r in cur.fetchall()]; "
        "cur.execute('SELECT DISTINCT event_ts FROM user_login_features'); "
        "days = [str(r[0]) for r in cur.fetchall()]; "
        "import redis, sys; keys = redis.Redis.from_url(sys.argv[1]).dbsize(); "
        "print(json.dumps({'runs': runs, 'days': days, 'keys': keys}))"
    )
    out = (
        FeaturePlatformHook()
        .run([str(PLATFORM_PYTHON), "-c", query, platform_connection["redis_url"]])
        .output
    )
    found = json.loads(out.splitlines()[-1])
    assert found["runs"] == [["succeeded", "2026-03-01", "2026-03-01"]]  # the interval's day
    assert found["days"] == ["2026-03-02 00:00:00"]  # values hold from midnight after the day
    assert found["keys"] > 0  # materialize-incremental wrote the day's features to Redis
