"""Feast feature repos for the benchmarks: the same definitions over three offline stores.

    tidb      ours: providers.tidb.TiDBOfflineStore, TiDBSource(table=...)
    postgres  Feast's contrib PostgreSQLOfflineStore, PostgreSQLSource(table=...)
    duckdb    Feast's DuckDB offline store, FileSource(path=<parquet>)

Everything else is identical: project `bench`, entity `user` (join key user_id, Int64), the four
views of benchmarks/data.py with the same schema, no TTL (`timedelta(0)`, as the project's batch
views), online, the same Redis online store (REDIS_CONNECTION_STRING), a file registry inside the
repo dir, entity key serialization v3 and `pull_latest_features: true` for all three. Hosts and
secrets come from the environment (TIDB_*, PG_*); run feast with `feast_env()` so `providers.tidb`
is importable.
"""

from __future__ import annotations

import os
from pathlib import Path

from benchmarks import data
from benchmarks.common import ROOT

STORES = ("tidb", "postgres", "duckdb")
PROJECT = "bench"

_COMMON = """\
project: bench
provider: local
registry:
  registry_type: file
  path: registry.db
  cache_ttl_seconds: 60
online_store:
  type: redis
  connection_string: ${REDIS_CONNECTION_STRING}
materialization:
  pull_latest_features: true
entity_key_serialization_version: 3
"""

_OFFLINE = {
    "tidb": """\
offline_store:
  type: providers.tidb.TiDBOfflineStore
  host: ${TIDB_HOST}
  port: ${TIDB_PORT}
  user: ${TIDB_USER}
  password: ${TIDB_PASSWORD}
  database: ${TIDB_DATABASE}
# As the project's feature_store.yaml: TiDB -> Redis through the platform's engine.
batch_engine:
  type: providers.tidb.materialization.TiDBRedisEngine
  batch_rows: 50000
""",
    # Feast's PostgreSQLConfig defaults to sslmode=require; the local bench server has no TLS.
    "postgres": """\
offline_store:
  type: postgres
  host: ${PG_HOST}
  port: ${PG_PORT}
  database: ${PG_DATABASE}
  db_schema: public
  user: ${PG_USER}
  password: ${PG_PASSWORD}
  sslmode: disable
""",
    "duckdb": """\
offline_store:
  type: duckdb
""",
}

_IMPORT = {
    "tidb": "from providers.tidb import TiDBSource",
    "postgres": "from feast.infra.offline_stores.contrib.postgres_offline_store.postgres_source "
    "import (\n    PostgreSQLSource,\n)",
    "duckdb": "from feast import FileSource",
}

_DEFINITIONS = '''\
"""Benchmark definitions ({store}), written by benchmarks/repos.py."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, ValueType
from feast.types import Float64, Int64

{imports}

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
{views}'''

_VIEW = """
{name} = FeatureView(
    name="{name}",
    entities=[user],
    ttl=timedelta(0),
    schema=[{fields}],
    online=True,
    source={source},
)
"""


def _source(store: str, table: str, parquet_dir: Path | None) -> str:
    times = 'timestamp_field="event_ts", created_timestamp_column="created_ts"'
    if store == "tidb":
        return f'TiDBSource(table="{table}", {times})'
    if store == "postgres":
        return f'PostgreSQLSource(name="{table}", table="{table}", {times})'
    if parquet_dir is None:
        raise ValueError("the duckdb repo needs the parquet directory")
    path = (parquet_dir / f"{table}.parquet").resolve()
    return f'FileSource(name="{table}", path="{path}", {times})'


def write_repo(store: str, repo_dir: Path, parquet_dir: Path | None = None) -> Path:
    """feature_store.yaml + definitions.py for `store` in `repo_dir` (created); returns it."""
    if store not in STORES:
        raise ValueError(f"store must be one of {STORES}, not {store!r}")
    repo_dir.mkdir(parents=True, exist_ok=True)
    (repo_dir / "feature_store.yaml").write_text(_COMMON + _OFFLINE[store])
    views = []
    for i, name in enumerate(data.VIEWS):
        feats = data.features(i)
        fields = ", ".join(
            f'Field(name="{f}", dtype={"Int64" if f == feats[0] else "Float64"})' for f in feats
        )
        views.append(
            _VIEW.format(name=name, fields=fields, source=_source(store, name, parquet_dir))
        )
    (repo_dir / "definitions.py").write_text(
        _DEFINITIONS.format(store=store, imports=_IMPORT[store], views="".join(views))
    )
    return repo_dir


def feast_env(services: dict[str, str]) -> dict[str, str]:
    """Environment for the feast CLI and workers: services' settings + the project importable."""
    path = os.environ.get("PYTHONPATH")
    return {**services, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}
