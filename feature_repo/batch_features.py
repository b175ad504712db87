"""Batch feature views over the versioned tables the Spark jobs write (spark_jobs/features.py).

Rows are stamped with the instant they hold from (midnight after the day computed) and their
run (`run_id`). Feast reads them through a query that joins the run bookkeeping: a row is visible
only once its (run, feature set, day) partition is recorded as written whole, and its
`created_ts` is the moment that happened. So a half-written or failed run is never read, a
re-run's newer version wins ties on event time, and `providers.tidb.as_of(t)` sees exactly what
a reader at time t could have seen.

TTL: none. Rows are written only when a value changes (and a row of zeros when a window
empties), so a user's last row stays correct while they are inactive, online and offline alike.
Freshness is the pipeline's: serving ages a value from the last day the feature set's runs
recorded and materialization loaded (VOUCHED_TAG), so `stale` means the pipeline is late, not
that the user is idle.
"""

from datetime import timedelta

from entities import user
from feast import FeatureView, Field
from feast.types import Array, Float64, Int64, String

from providers.feast_redis import VOUCHED_TAG
from providers.tidb import TiDBSource
from spark_jobs.runs import recorded_rows

# Batch features are recomputed daily: a value is stale once a day and the job's run time have passed.
BATCH = {"tier": "batch", "freshness_budget_seconds": str(26 * 3600)}
BATCH_TTL = timedelta(0)  # no TTL (see above)


def _source(table: str, feature_set: str, columns: list[str], description: str) -> TiDBSource:
    """The rows of `table` whose partition is recorded, known from the time it was recorded."""
    query = recorded_rows(table, feature_set, columns)
    return TiDBSource(
        name=table,
        query=query,
        json_columns=[c for c in columns if c.startswith("common_")],  # the profile's lists
        timestamp_field="event_ts",
        created_timestamp_column="created_ts",
        description=description,
    )


TXN_SCHEMA = [
    Field(name=f"txn_{m}_{w}d", dtype=Float64 if m == "sum" else Int64)
    for w in (1, 7, 30)
    for m in ("count", "sum", "merchants")
]
WITHDRAWAL_SCHEMA = [
    Field(name="withdrawal_count_1d", dtype=Int64),
    Field(name="withdrawal_sum_1d", dtype=Float64),
    Field(name="withdrawal_count_7d", dtype=Int64),
    Field(name="withdrawal_sum_7d", dtype=Float64),
]
LOGIN_SCHEMA = [Field(name="failed_logins_1d", dtype=Int64), Field(name="logins_1d", dtype=Int64)]
PROFILE_SCHEMA = [
    Field(name="common_ips_365d", dtype=Array(String)),
    Field(name="common_devices_365d", dtype=Array(String)),
]


def _view(
    name: str, table: str, feature_set: str, schema: list[Field], description: str
) -> FeatureView:
    source = _source(table, feature_set, [f.name for f in schema], description)
    return FeatureView(
        name=name,
        entities=[user],
        ttl=BATCH_TTL,
        schema=schema,
        source=source,
        # Freshness: a value is vouched for up to the last day its feature set's runs recorded
        # (providers.feast_redis.VOUCHED_TAG), not just to its row's time (rows are per change).
        tags={**BATCH, VOUCHED_TAG: feature_set},
        description=description,
    )


user_transactions = _view(
    "user_transactions",
    "user_transaction_features",
    "transactions",
    TXN_SCHEMA,
    "Transaction count, sum and distinct merchants over 1, 7 and 30 days.",
)
user_withdrawals = _view(
    "user_withdrawals",
    "user_withdrawal_features",
    "withdrawals",
    WITHDRAWAL_SCHEMA,
    "Withdrawal count and sum over 1 and 7 days.",
)
user_logins = _view(
    "user_logins",
    "user_login_features",
    "logins",
    LOGIN_SCHEMA,
    "Failed and total logins over 1 day.",
)
user_profile = _view(
    "user_profile",
    "user_profile_features",
    "profile",
    PROFILE_SCHEMA,
    "Top 3 IPs and devices of successful logins over 365 days (the 'sync' half of login risk).",
)
