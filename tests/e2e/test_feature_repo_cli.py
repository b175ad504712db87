"""The shipped feature_repo/ through the stock `feast` CLI: apply, materialize, read online.

Real MariaDB and Redis (started by the session fixtures), the SQL registry in its own database
next to the data (`<database>_registry`).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from tests.utils.jobs import FEAST, feast
from tests.utils.tables import rows

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "feature_repo"


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


def test_events_backfill_apply_materialize_and_serve(feast_env, db, monkeypatch):
    """The whole batch path: raw events -> Spark backfill -> feast apply -> materialize -> Redis."""
    from spark_jobs import backfill, generate, velocity_backfill

    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    assert generate.main(["--users", "80", "--days", "35", "--end", "2026-03-01"]) == 0
    feast(feast_env, "apply")
    registry_tables = {
        r[0]
        for r in rows(
            db,
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
            (f"{feast_env['TIDB_DATABASE']}_registry",),
        )
    }
    assert {
        "feature_views",
        "entities",
        "feature_services",
        "on_demand_feature_views",
    } <= registry_tables
    # --materialize runs `feast materialize` over the backfilled range afterwards
    assert (
        backfill.main(
            ["--start", "2026-02-26", "--end", "2026-02-28", "--no-progress", "--materialize"]
        )
        == 0
    )
    # Velocity features' cold start: the same windows the stream job computes, from the raw events
    assert velocity_backfill.main(["--start", "2026-02-26", "--end", "2026-02-28"]) == 0
    feast(feast_env, "materialize-incremental", "2026-03-01T00:00:00")

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(REPO))
    # Feast reads what our engine materialized for a stream feature view: each user's latest row
    latest = {
        user: (attempts, distinct_ips)
        for user, attempts, distinct_ips in rows(
            db,
            "SELECT v.user_id, v.login_attempts_1m, v.distinct_ips_1h FROM velocity_login v "
            "JOIN (SELECT user_id, MAX(event_ts) AS ts FROM velocity_login GROUP BY user_id) m "
            "ON m.user_id = v.user_id AND m.ts = v.event_ts",
        )
    }
    assert len(latest) > 40
    velocity = store.get_online_features(
        features=["user_login_velocity:login_attempts_1m", "user_login_velocity:distinct_ips_1h"],
        entity_rows=[{"user_id": u} for u in sorted(latest)],
    ).to_dict()
    assert list(zip(velocity["login_attempts_1m"], velocity["distinct_ips_1h"], strict=True)) == [
        latest[u] for u in sorted(latest)
    ]
    users = list(range(1, 81))
    online = store.get_online_features(
        features=store.get_feature_service("withdrawal_fraud"),
        entity_rows=[{"user_id": u, "amount": 100.0} for u in users]
        + [{"user_id": 999, "amount": 1.0}],
    ).to_df()
    # The latest row per user (event time, then created time), computed independently with SQL.
    expected = pd.DataFrame(
        rows(
            db,
            (
                "SELECT user_id, txn_count_30d, txn_sum_30d FROM user_transaction_features f "
                "WHERE event_ts = (SELECT MAX(event_ts) FROM user_transaction_features g WHERE g.user_id = f.user_id) "
                "ORDER BY user_id"
            ),
        ),
        columns=["user_id", "txn_count_30d", "txn_sum_30d"],
    ).set_index("user_id")
    got = online.set_index("user_id").loc[expected.index]
    assert got["txn_count_30d"].tolist() == expected["txn_count_30d"].tolist()
    assert got["txn_sum_30d"].tolist() == pytest.approx(expected["txn_sum_30d"].tolist())
    with_history = got[got["txn_count_30d"] > 0]
    ratio = 100.0 / (with_history["txn_sum_30d"] / with_history["txn_count_30d"])
    assert with_history["amount_vs_30d_mean"].tolist() == pytest.approx(ratio.tolist())
    assert (
        online.set_index("user_id").loc[999].isna()[["txn_count_30d", "withdrawal_count_7d"]].all()
    )

    ato = store.get_online_features(
        features=store.get_feature_service("account_takeover"),
        entity_rows=[{"user_id": 1, "login_ip": "203.0.113.7", "login_device": "dev-unknown"}],
    ).to_dict()
    assert (
        ato["common_ips_365d"][0]
        and ato["ip_is_common"] == [False]
        and ato["device_is_new"] == [True]
    )
    stored = rows(
        db,
        "SELECT common_ips_365d FROM user_profile_features WHERE user_id = 1 "
        "ORDER BY event_ts DESC, created_ts DESC LIMIT 1",
    )[0][0]
    assert ato["common_ips_365d"][0] == json.loads(stored)  # a list of IPs, not a JSON string
    common_ip = ato["common_ips_365d"][0][0]
    ato = store.get_online_features(
        features=store.get_feature_service("account_takeover"),
        entity_rows=[{"user_id": 1, "login_ip": common_ip, "login_device": "dev-unknown"}],
    ).to_dict()
    assert ato["ip_is_common"] == [True]


def test_apply_rejects_a_missing_environment_variable(feast_env):
    env = {k: v for k, v in feast_env.items() if k != "TIDB_HOST"}
    result = subprocess.run(
        [FEAST, "-c", str(REPO), "plan"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "TIDB_HOST" in result.stdout + result.stderr


def test_sql_registry_keeps_objects_over_64_kib(feast_env, db):
    """feast-dev/feast#5800: BLOB columns truncate at 64 KiB on MySQL; the registry must not."""
    from feast import FeatureStore, FeatureView, Field
    from feast.types import Float64

    from providers.tidb import TiDBSource
    from spark_jobs.schema import ensure_schema
    from spark_jobs.settings import Database

    ensure_schema(Database.from_env())  # the tables the feature repo's sources read
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
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'feature_views'",
            (f"{feast_env['TIDB_DATABASE']}_registry",),
        )
    )
    assert types["feature_view_proto"] == "longblob"


def test_a_rerun_with_materialize_corrects_online_values(feast_env, db, monkeypatch):
    """Feast's Redis store ignores a value whose event time is not newer than the stored one; a
    re-run's corrected version (same event time) must still reach serving."""
    from feast import FeatureStore

    from spark_jobs import backfill, generate

    monkeypatch.setenv("SPARK_MASTER", "local[2]")
    assert generate.main(["--users", "20", "--days", "32", "--end", "2026-03-01"]) == 0
    feast(feast_env, "apply")
    args = [
        "--start",
        "2026-02-28",
        "--end",
        "2026-02-28",
        "--features",
        "transactions",
        "--no-progress",
    ]
    assert backfill.main([*args, "--materialize"]) == 0
    store = FeatureStore(repo_path=str(REPO))

    def online_count() -> int:
        out = store.get_online_features(
            features=["user_transactions:txn_count_1d"], entity_rows=[{"user_id": 3}]
        ).to_dict()
        return out["txn_count_1d"][0]

    before = online_count()
    with db.cursor() as cur:  # a late event for the day already served
        cur.execute(
            "INSERT INTO transactions VALUES (999999999, 3, 'late', 10.00, 'EUR', '2026-02-28 12:00:00')"
        )
    assert backfill.main([*args, "--materialize"]) == 0
    assert online_count() == before + 1
    versions = rows(
        db,
        "SELECT COUNT(*) FROM user_transaction_features WHERE user_id = 3 "
        "AND event_ts = '2026-03-01'",
    )[0][0]
    assert versions == 2  # the old version stays offline, for as_of
