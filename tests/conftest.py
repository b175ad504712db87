"""Fixtures shared by every tier. Servers are real processes started here, never mocks."""

from __future__ import annotations

import importlib.util
import os
import uuid
from pathlib import Path

import pytest

from devstack import MariaDB, Redis, feast_redis_connection_string

ROOT = Path(__file__).resolve().parent.parent

# The orchestrator suites run in their own environments (`make test-orchestration`: .venv-airflow,
# .venv-kfp); an environment without the orchestrator leaves its suite out.
collect_ignore = [
    suite
    for suite, module in (("airflow", "airflow"), ("kubeflow", "kfp"))
    if importlib.util.find_spec(module) is None
]


# `make test` runs the suite on two pytest-xdist workers (`--dist loadgroup`): most of its wall
# time is spent waiting on servers, Spark start-ups and streams, not on CPU. A module runs whole on
# one worker, so its module fixtures are built once; the modules sharing the session's serving
# stack (`serving_stack`: history, backfills, two trained models) run on one worker together.
# The longest groups are handed out first so the workers finish near each other. Within the
# serving-stack group, files run in name order; test_training writes materialization intervals
# into the shared registry, so it must stay after test_serving (whose reload test reads them).
LONGEST_FIRST = (
    "serving_stack",
    "integration/test_velocity_stream.py",
    "e2e/test_loop.py",
    "e2e/test_feature_repo_cli.py",
)


def _group(item) -> str:
    if "serving_stack" in getattr(item, "fixturenames", ()):
        return "serving_stack"
    path = Path(str(item.fspath))
    tests = ROOT / "tests"
    return (
        path.relative_to(tests).as_posix()
        if path.is_relative_to(tests)
        else item.nodeid.split("::")[0]
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        path = str(item.fspath)
        if f"{os.sep}integration{os.sep}" in path:
            item.add_marker(pytest.mark.integration)
        elif f"{os.sep}e2e{os.sep}" in path:
            item.add_marker(pytest.mark.e2e)
        item.add_marker(pytest.mark.xdist_group(_group(item)))
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: file order otherwise


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory) -> MariaDB:
    """A MariaDB server (TiDB stand-in) for the whole test session, on a free loopback port."""
    server = MariaDB(tmp_path_factory.mktemp("mariadb")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Redis:
    server = Redis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


# Collations users run: exact answers must not depend on them (keys are compared on their bytes).
# A module runs its tests under each by overriding `database_charset` with `params=COLLATIONS`.
COLLATIONS = {
    "utf8mb4_bin": "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",  # PAD SPACE: 'a ' = 'a'
    "utf8mb4_general_ci": "CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci",  # 'abc' = 'ABC'
    "latin1_swedish_ci": "CHARACTER SET latin1 COLLATE latin1_swedish_ci",  # 'José' = 'jose'
}


@pytest.fixture
def database_charset() -> str | None:
    """The new database's `CHARACTER SET .. COLLATE ..` (None: the server's utf8mb4_bin)."""
    return None


@pytest.fixture
def database(mariadb, database_charset):
    """A fresh, empty database for one test; dropped afterwards."""
    from tests.utils.tables import create_database, drop_database

    name, admin = create_database(mariadb, database_charset)
    yield name
    drop_database(admin, name)


@pytest.fixture
def store_config(mariadb, database):
    from providers.tidb import TiDBOfflineStoreConfig

    return TiDBOfflineStoreConfig(
        host="127.0.0.1",
        port=mariadb.port,
        user=mariadb.user,
        password=mariadb.password,
        database=database,
        write_batch_rows=1000,
    )


@pytest.fixture
def db(store_config):
    """A pymysql connection to the test's database (UTC session)."""
    from providers.tidb.connection import connect

    with connect(store_config) as conn:
        yield conn


@pytest.fixture
def redis_connection_string(redis_server):
    import redis

    redis.Redis.from_url(redis_server.url).flushall()
    return feast_redis_connection_string(redis_server.url)


@pytest.fixture
def repo_config(tmp_path, store_config, redis_connection_string):
    """A Feast RepoConfig on the test's database and Redis, file registry in tmp."""
    from feast.repo_config import RegistryConfig, RepoConfig

    return RepoConfig(
        project=f"p_{uuid.uuid4().hex[:8]}",
        provider="local",
        registry=RegistryConfig(path=str(tmp_path / "registry.db"), cache_ttl_seconds=0),
        offline_store=store_config,
        online_store={"type": "redis", "connection_string": redis_connection_string},
        entity_key_serialization_version=3,
        repo_path=tmp_path,
    )
