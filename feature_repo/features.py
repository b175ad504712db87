"""Feast definitions: the minimal repo of the foundation (the fraud feature set grows from here).

`user_transactions_30d` is a batch view over a TiDB table of per-user aggregates; the
`account_takeover` service serves it. Freshness budgets are tags on each view.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, ValueType
from feast.types import Float64, Int64

from providers.tidb import TiDBSource

user = Entity(
    name="user", join_keys=["user_id"], value_type=ValueType.INT64, description="An account holder."
)

user_transactions_source = TiDBSource(
    name="user_transaction_features",
    table="user_transaction_features",
    timestamp_field="event_ts",
    created_timestamp_column="created_ts",
    description="Per-user transaction aggregates as of each day (UTC).",
)

user_transactions_30d = FeatureView(
    name="user_transactions_30d",
    entities=[user],
    ttl=timedelta(days=2),
    schema=[
        Field(name="txn_count_30d", dtype=Int64),
        Field(name="txn_sum_30d", dtype=Float64),
    ],
    source=user_transactions_source,
    online=True,
    tags={"freshness_budget_seconds": str(24 * 3600), "tier": "batch"},
)

account_takeover = FeatureService(name="account_takeover", features=[user_transactions_30d])
