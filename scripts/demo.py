"""`make demo`: the platform end to end on the local stack, as far as it exists today.

1. generate a seeded raw event history in TiDB (Spark),
2. backfill the batch features for the last 28 days (Spark, versioned rows),
3. `feast apply` and `feast materialize-incremental` with the stock CLI,
4. print online features from Redis for a few users, for both models' feature services,
5. show versioning: a training row read `as_of` a knowledge time vs the latest values.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "feature_repo"
USERS = int(os.environ.get("DEMO_USERS", "2000"))
DAYS = int(os.environ.get("DEMO_DAYS", "60"))
BACKFILL_DAYS = 28


def step(title: str, *cmd: str) -> None:
    print(f"\n== {title}\n$ {' '.join(cmd)}", flush=True)
    started = time.monotonic()
    subprocess.run([sys.executable if c == "python" else c for c in cmd], check=True, cwd=ROOT)
    print(f"   ({time.monotonic() - started:.1f}s)", flush=True)


def feast_bin() -> str:
    return str(Path(sys.executable).parent / "feast")


def main() -> int:
    missing = [
        v
        for v in ("TIDB_HOST", "TIDB_USER", "TIDB_DATABASE", "REDIS_CONNECTION_STRING")
        if not os.environ.get(v)
    ]
    if missing:
        print(
            f"error: {', '.join(missing)} not set; run `make demo` (it starts the stack).",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=BACKFILL_DAYS), today - dt.timedelta(days=1)
    step(
        f"Generate {USERS} users x {DAYS} days of logins, transactions, withdrawals, labels",
        "python",
        "-m",
        "spark_jobs.generate",
        "--users",
        str(USERS),
        "--days",
        str(DAYS),
        "--end",
        today.isoformat(),
        "--replace",
    )
    before_backfill = dt.datetime.now(dt.UTC)
    step(
        f"Backfill batch features for {start} .. {end}",
        "python",
        "-m",
        "spark_jobs.backfill",
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--no-progress",
    )
    step("Register the definitions", feast_bin(), "-c", "feature_repo", "apply")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat()
    step(
        "Materialize TiDB -> Redis",
        feast_bin(),
        "-c",
        "feature_repo",
        "materialize-incremental",
        now,
    )

    from feast import FeatureStore

    from providers.tidb import as_of

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 40)
    store = FeatureStore(repo_path=str(REPO))
    users = [1, 2, 3]
    from feast.data_source import PushMode

    # A login of user 1 from 203.0.113.7, pushed online and offline as serving will do.
    login = pd.DataFrame(
        {
            "user_id": [1],
            "last_login_ip": ["203.0.113.7"],
            "last_login_device": ["dev-new"],
            "last_login_country": ["DE"],
            "recent_ips": [["203.0.113.7"]],
            "event_ts": [pd.Timestamp.now(tz="UTC")],
        }
    )
    store.push("login_push", login, to=PushMode.ONLINE_AND_OFFLINE)
    ato = store.get_online_features(
        features=store.get_feature_service("account_takeover"),
        entity_rows=[
            {"user_id": u, "login_ip": "203.0.113.7", "login_device": "dev-new"} for u in users
        ],
    ).to_df()
    print(
        "\n== Online features from Redis: account_takeover (a login from 203.0.113.7 on a new device;"
        " user 1 has just pushed one from there)"
    )
    print(ato.set_index("user_id").T.to_string())
    fraud = store.get_online_features(
        features=store.get_feature_service("withdrawal_fraud"),
        entity_rows=[{"user_id": u, "amount": 500.0} for u in users],
    ).to_df()
    print("\n== Online features from Redis: withdrawal_fraud (a withdrawal of 500.00)")
    print(fraud.set_index("user_id").T.to_string())

    entity_df = pd.DataFrame(
        {
            "user_id": users,
            "event_timestamp": [pd.Timestamp(end, tz="UTC") + pd.Timedelta(hours=12)] * 3,
        }
    )
    feats = ["user_transactions:txn_count_30d", "user_transactions:txn_sum_30d"]
    with as_of(before_backfill):
        before = store.get_historical_features(entity_df=entity_df, features=feats).to_df()
    latest = store.get_historical_features(entity_df=entity_df, features=feats).to_df()
    print(
        f"\n== Point-in-time features from TiDB at {entity_df['event_timestamp'][0]}: the latest version,"
        f" and as_of {before_backfill:%H:%M:%S} (before this backfill; earlier runs' versions, if any)"
    )
    print(
        latest.merge(before, on=["user_id", "event_timestamp"], suffixes=("", "_as_of")).to_string(
            index=False
        )
    )
    print(
        f"\nDemo finished in {time.monotonic() - started:.1f}s. The stack is still running; `make down` stops it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
