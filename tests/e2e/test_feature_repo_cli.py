"""The shipped feature_repo/ through the stock `feast` CLI: apply, materialize, read online.

Real MariaDB and Redis (started by the session fixtures), the SQL registry in the same database.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from scripts.demo import load_features, sample_features
from tests.utils.tables import rows

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "feature_repo"
FEAST = str(Path(sys.executable).parent / "feast")


@pytest.fixture
def feast_env(mariadb, database, redis_connection_string, monkeypatch):
    env = {
        **mariadb.env(),
        "TIDB_DATABASE": database,
        "REDIS_CONNECTION_STRING": redis_connection_string,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


def feast(env, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [FEAST, "-c", str(REPO), *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (
        f"feast {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result


def test_apply_materialize_and_read_online(feast_env, store_config, db):
    end = dt.datetime(2026, 3, 1)
    data = sample_features(users=50, days=5, end=end)
    load_features(store_config, data)

    feast(feast_env, "apply")
    registry_tables = {
        r[0]
        for r in rows(
            db, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()"
        )
    }
    assert {"feature_views", "entities", "feature_services"} <= registry_tables

    # materialize a first window, then the rest incrementally
    feast(
        feast_env,
        "materialize",
        (end - dt.timedelta(days=10)).isoformat(),
        (end - dt.timedelta(days=2)).isoformat(),
    )
    feast(feast_env, "materialize-incremental", end.isoformat())

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(REPO))
    online = store.get_online_features(
        features=store.get_feature_service("account_takeover"),
        entity_rows=[{"user_id": u} for u in range(1, 51)] + [{"user_id": 999}],
    ).to_df()
    # The latest row per user, computed independently with SQL.
    expected = pd.DataFrame(
        rows(
            db,
            (
                "SELECT f.user_id, f.txn_count_30d, f.txn_sum_30d FROM user_transaction_features f "
                "JOIN (SELECT user_id, MAX(event_ts) AS ts FROM user_transaction_features GROUP BY user_id) m "
                "ON m.user_id = f.user_id AND m.ts = f.event_ts ORDER BY f.user_id"
            ),
        ),
        columns=["user_id", "txn_count_30d", "txn_sum_30d"],
    )
    got = online.iloc[:50].reset_index(drop=True)
    assert got["txn_count_30d"].tolist() == expected["txn_count_30d"].tolist()
    assert got["txn_sum_30d"].tolist() == pytest.approx(expected["txn_sum_30d"].tolist())
    assert online.iloc[50].isna()[["txn_count_30d", "txn_sum_30d"]].all()  # unknown user


def test_apply_rejects_a_missing_environment_variable(feast_env):
    env = {k: v for k, v in feast_env.items() if k != "TIDB_HOST"}
    result = subprocess.run(
        [FEAST, "-c", str(REPO), "plan"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "TIDB_HOST" in result.stdout + result.stderr


def test_sql_registry_keeps_objects_over_64_kib(feast_env, store_config, db):
    """feast-dev/feast#5800: BLOB columns truncate at 64 KiB on MySQL; the registry must not."""
    from feast import FeatureStore, FeatureView, Field
    from feast.types import Float64

    from providers.tidb import TiDBSource

    load_features(store_config, sample_features(users=1, days=1, end=dt.datetime(2026, 3, 1)))
    feast(feast_env, "apply")  # creates the registry tables and the `user` entity
    store = FeatureStore(repo_path=str(REPO))
    big = FeatureView(
        name="wide_view",
        entities=[store.get_entity("user")],
        schema=[Field(name=f"feature_{i:04d}_" + "x" * 40, dtype=Float64) for i in range(1500)],
        source=TiDBSource(name="wide_src", table="wide", timestamp_field="ts"),
        description="d" * 20_000,
    )
    assert len(big.to_proto().SerializeToString()) > 64 * 1024
    store.apply([big])
    reread = FeatureStore(repo_path=str(REPO)).registry.get_feature_view(
        "wide_view", "fraud", allow_cache=False
    )
    assert len(reread.features) == 1500 and reread.description == big.description
    types = dict(
        rows(
            db,
            "SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'feature_views'",
        )
    )
    assert types["feature_view_proto"] == "longblob"
