"""`make demo`: the platform end to end on the local stack, as far as it exists today.

Creates the feature table and a small seeded history in TiDB/MariaDB, then runs the stock
`feast` CLI (`apply`, `materialize-incremental`) against feature_repo/, and prints online
features from Redis next to a point-in-time training set from the offline store.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "feature_repo"
FEATURE_TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS user_transaction_features ("
    " user_id BIGINT NOT NULL, txn_count_30d BIGINT, txn_sum_30d DOUBLE,"
    " event_ts DATETIME(6) NOT NULL, created_ts DATETIME(6) NOT NULL,"
    " KEY idx_user_ts (user_id, event_ts))"
)


def sample_features(users: int, days: int, end: dt.datetime, seed: int = 7) -> pd.DataFrame:
    """One row per user per day: a deterministic stand-in until the Spark jobs compute them."""
    rng = np.random.default_rng(seed)
    day0 = end - dt.timedelta(days=days)
    rows = []
    for d in range(days):
        ts = day0 + dt.timedelta(days=d + 1)
        counts = rng.poisson(20, size=users)
        sums = np.round(counts * rng.gamma(2.0, 25.0, size=users), 2)
        rows.append(
            pd.DataFrame(
                {
                    "user_id": np.arange(1, users + 1),
                    "txn_count_30d": counts,
                    "txn_sum_30d": sums,
                    "event_ts": ts,
                    "created_ts": ts,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def load_features(store_config, df: pd.DataFrame) -> None:
    import pyarrow as pa

    from providers.tidb import connection

    with connection.connect(store_config) as conn:
        connection.execute(conn, (FEATURE_TABLE_DDL, []))
        connection.execute(conn, ("DELETE FROM user_transaction_features", []))
        connection.insert_arrow(
            conn,
            "user_transaction_features",
            pa.Table.from_pandas(df, preserve_index=False),
            store_config.write_batch_rows,
        )


def feast(*args: str) -> None:
    cmd = [str(Path(sys.executable).parent / "feast"), "-c", str(REPO), *args]
    print(f"$ feast -c feature_repo {' '.join(args)}", flush=True)
    subprocess.run(cmd, check=True)


def main() -> int:
    from feast import FeatureStore

    from providers.tidb import TiDBOfflineStoreConfig

    missing = [
        v
        for v in ("TIDB_HOST", "TIDB_PORT", "TIDB_USER", "TIDB_DATABASE", "REDIS_CONNECTION_STRING")
        if not os.environ.get(v)
    ]
    if missing:
        print(
            f"error: {', '.join(missing)} not set; run `make demo` (it starts the stack).",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    cfg = TiDBOfflineStoreConfig(
        host=os.environ["TIDB_HOST"],
        port=int(os.environ["TIDB_PORT"]),
        user=os.environ["TIDB_USER"],
        password=os.environ.get("TIDB_PASSWORD", ""),
        database=os.environ["TIDB_DATABASE"],
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    df = sample_features(users=1000, days=7, end=now)
    print(f"Loading {len(df)} feature rows (1000 users x 7 days) into TiDB ...", flush=True)
    load_features(cfg, df)
    feast("apply")
    feast("materialize-incremental", now.isoformat())

    store = FeatureStore(repo_path=str(REPO))
    users = [1, 2, 3]
    online = store.get_online_features(
        features=store.get_feature_service("account_takeover"),
        entity_rows=[{"user_id": u} for u in users],
    ).to_df()
    print("\nOnline features (Redis) for users 1-3:")
    print(online.to_string(index=False))
    entity_df = pd.DataFrame(
        {"user_id": users, "event_timestamp": [now - dt.timedelta(days=3)] * 3}
    )
    training = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service("account_takeover")
    ).to_df()
    print("\nPoint-in-time features (TiDB) for the same users 3 days ago:")
    print(training.to_string(index=False))
    print(
        f"\nDemo finished in {time.monotonic() - started:.1f}s. The stack is still running; `make down` stops it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
