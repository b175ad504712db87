"""Real-time features: pushed by serving as events happen (online and offline at once).

Their batch sources are the TiDB tables that pushes to the offline store append to
(spark_jobs/schema.py, PUSH_TABLES), so training sees the same values serving saw.
"""

from datetime import timedelta

from entities import user
from feast import FeatureView, Field, PushSource
from feast.types import Array, Float64, String

from providers.tidb import TiDBSource

REALTIME = {"tier": "real-time", "freshness_budget_seconds": "5"}

login_push = PushSource(
    name="login_push",
    batch_source=TiDBSource(
        name="login_push_events", table="login_push_events", timestamp_field="event_ts"
    ),
    description="Each login, pushed by serving: IP, device, country and the user's recent IPs.",
)

transaction_push = PushSource(
    name="transaction_push",
    batch_source=TiDBSource(
        name="transaction_push_events", table="transaction_push_events", timestamp_field="event_ts"
    ),
    description="Each transaction, pushed by serving.",
)

user_last_login = FeatureView(
    name="user_last_login",
    entities=[user],
    ttl=timedelta(days=90),
    schema=[
        # `request.*` tags: how serving validates a push (serving/schemas.py), as the table stores it
        Field(name="last_login_ip", dtype=String, tags={"request.format": "ip"}),
        Field(name="last_login_device", dtype=String, tags={"request.max_length": "64"}),
        Field(name="last_login_country", dtype=String, tags={"request.pattern": "^[A-Z]{2}$"}),
        Field(name="recent_ips", dtype=Array(String)),
    ],
    source=login_push,
    online=True,
    tags=REALTIME,
    description="The user's latest login and recent IPs (the 'async' half of login risk).",
)

user_last_transaction = FeatureView(
    name="user_last_transaction",
    entities=[user],
    ttl=timedelta(days=90),
    schema=[
        Field(name="last_txn_amount", dtype=Float64),
        Field(name="last_txn_merchant", dtype=String, tags={"request.max_length": "32"}),
    ],
    source=transaction_push,
    online=True,
    tags=REALTIME,
)
