"""Batch feature views over the versioned tables the Spark jobs write (spark_jobs/features.py).

Rows are stamped with the instant they hold from (midnight after the day computed), the time
they became known (`created_ts`) and their run (`run_id`). Re-runs append versions; ties on
event time go to the latest `created_ts`, and `providers.tidb.as_of` pins a training set to
what was known at a given time.
"""

from datetime import timedelta

from entities import user
from feast import FeatureView, Field
from feast.types import Array, Float64, Int64, String

from providers.tidb import TiDBSource

# Batch features are recomputed daily; a value is stale once a day and the job's run time have
# passed, and unusable (TTL) after two days without a new run.
BATCH = {"tier": "batch", "freshness_budget_seconds": str(26 * 3600)}
BATCH_TTL = timedelta(days=2)


def _source(table: str, description: str) -> TiDBSource:
    return TiDBSource(
        name=table,
        table=table,
        timestamp_field="event_ts",
        created_timestamp_column="created_ts",
        description=description,
    )


user_transactions = FeatureView(
    name="user_transactions",
    entities=[user],
    ttl=BATCH_TTL,
    schema=[
        Field(name=f"txn_{m}_{w}d", dtype=Float64 if m == "sum" else Int64)
        for w in (1, 7, 30)
        for m in ("count", "sum", "merchants")
    ],
    source=_source(
        "user_transaction_features", "Transaction count, sum and distinct merchants, 1/7/30 days."
    ),
    tags=BATCH,
    description="Card/transfer activity of the user over the last 1, 7 and 30 days.",
)

user_withdrawals = FeatureView(
    name="user_withdrawals",
    entities=[user],
    ttl=BATCH_TTL,
    schema=[
        Field(name="withdrawal_count_1d", dtype=Int64),
        Field(name="withdrawal_sum_1d", dtype=Float64),
        Field(name="withdrawal_count_7d", dtype=Int64),
        Field(name="withdrawal_sum_7d", dtype=Float64),
    ],
    source=_source("user_withdrawal_features", "Withdrawal count and sum, 1/7 days."),
    tags=BATCH,
)

user_logins = FeatureView(
    name="user_logins",
    entities=[user],
    ttl=BATCH_TTL,
    schema=[Field(name="failed_logins_1d", dtype=Int64), Field(name="logins_1d", dtype=Int64)],
    source=_source("user_login_features", "Failed and total logins over 1 day."),
    tags=BATCH,
)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    ttl=BATCH_TTL,
    schema=[
        Field(name="common_ips_365d", dtype=Array(String)),
        Field(name="common_devices_365d", dtype=Array(String)),
    ],
    source=_source(
        "user_profile_features", "Top 3 IPs and devices of successful logins over 365 days."
    ),
    tags=BATCH,
    description="Where and on what the user usually logs in from (the 'sync' half of login risk).",
)
