"""Fixtures of the integration suites that need a whole serving stack."""

from __future__ import annotations

import datetime as dt

import pymysql
import pytest

from devstack import Redis, feast_redis_connection_string
from tests.utils.jobs import feast, jobs_environment
from tests.utils.tables import create_database, drop_database


@pytest.fixture(scope="session")
def serving_stack(mariadb, tmp_path_factory):
    """A database with events, backfilled features, the repo applied and both models trained,
    with its own Redis and broker (tests stop and restart them). Built once for the serving
    modules; its environment is applied per module by `stack`, so it does not leak into others."""
    from pipelines.train import train
    from spark_jobs import backfill, generate, velocity_backfill

    redis = Redis(tmp_path_factory.mktemp("serving-redis")).start()  # ours: this module stops it
    broker = Redis(tmp_path_factory.mktemp("serving-broker"), durable=True).start()
    database, admin = create_database(mariadb)
    models = tmp_path_factory.mktemp("models")
    try:  # stop our Redis and drop the database even when the setup below fails
        with pytest.MonkeyPatch.context() as mp:
            env = jobs_environment(mariadb, database, feast_redis_connection_string(redis.url), mp)
            assert generate.main(["--users", "1500", "--days", "40", "--end", "2026-03-01"]) == 0
            assert (
                backfill.main(["--start", "2026-02-10", "--end", "2026-02-28", "--no-progress"])
                == 0
            )
            feast(env, "apply")
            assert velocity_backfill.main(["--start", "2026-02-10", "--end", "2026-02-28"]) == 0
            feast(env, "materialize-incremental", "2026-03-02T00:00:00")
            window = dict(
                since=dt.datetime(2026, 2, 11, tzinfo=dt.UTC),
                until=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
            )
            for model in ("account_takeover", "withdrawal_fraud"):
                train(model, dt.datetime.now(dt.UTC), out=models, save_dataset=False, **window)
            # Serving's tests run serving with its own account (providers/tidb/roles.py).
            accounts = mariadb.create_roles(database)
            variables = {
                k: env[k]
                for k in (
                    *mariadb.env(),
                    "TIDB_DATABASE",
                    "REDIS_CONNECTION_STRING",
                    "SPARK_MASTER",
                )
            }
        yield {
            "env": env,
            "serving_env": {**env, **accounts["serving"]},
            "accounts": accounts,
            "variables": variables,
            "models": models,
            "redis": redis,
            "broker": broker,
            "database": database,
        }
    finally:
        redis.stop()
        broker.stop()
        drop_database(admin, database)


@pytest.fixture(scope="module")
def stack(serving_stack):
    """The serving stack with its settings in the environment for one module (then restored)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in serving_stack["variables"].items():
            mp.setenv(key, value)
        yield serving_stack


@pytest.fixture
def stack_db(stack, mariadb):
    """A connection to the serving stack's database."""
    conn = pymysql.connect(
        host="127.0.0.1",
        port=mariadb.port,
        user=mariadb.user,
        password=mariadb.password,
        database=stack["database"],
        autocommit=True,
    )
    yield conn
    conn.close()
