"""Velocity features: sliding-window aggregations over the event streams, declared once.

Each stream feature view names its event stream (the Kafka topic, or the Redis Streams key
locally) and its aggregations. The stream job (`spark_jobs/stream.py`) and the backfill
(`spark_jobs/velocity_backfill.py`) read these declarations from the registry and compute them
with the same code (`spark_jobs/windows.py`); docs/velocity_features.md defines the window
semantics: value at instant t = the aggregate over the events up to t in the last W/slide tiles.

Both engines write versioned rows (one per change point: an event, or a tile leaving a window) to
the view's table, which is the view's batch source, and the latest to Redis. So training reads
exactly what serving could have read. Feast itself does not aggregate (0.67 neither in retrieval nor
in materialization): the batch source holds the aggregated values.

`udf` (pandas mode) derives the columns the aggregations read from an event; Feast stores it in the
registry and both engines run it. It must import what it uses, and it is stored by value
(`_portable`): Feast 0.67 unpickles a stream view's udf with dill, and a function pickled by
reference to this module could not be loaded by a process that does not have feature_repo/ on its
path (the stream job, serving).
"""

from datetime import timedelta

from entities import user
from feast import Field, KafkaSource, StreamFeatureView
from feast.aggregation import Aggregation
from feast.data_format import JsonFormat
from feast.types import Float64, Int64, String

from providers.events import KINDS
from providers.tidb import TiDBSource

# Rows are written as events arrive; a value is late once the stream's lag passes this budget.
NEAR_REAL_TIME = {"tier": "near-real-time", "freshness_budget_seconds": "30"}
MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def _stream(kind: str, table: str) -> KafkaSource:
    """The event stream of `kind`, with the view's versioned rows in TiDB as its batch source."""
    events = KINDS[kind]
    return KafkaSource(
        name=f"{kind}_stream",
        # Where the deployment's Kafka is: the stream job takes its broker from its own settings
        # (STREAM_BROKER), so one registry serves every environment; this records the default.
        kafka_bootstrap_servers="kafka:9092",
        topic=events.stream,
        timestamp_field="event_ts",
        message_format=JsonFormat(schema_json=_schema_json(kind)),
        batch_source=TiDBSource(
            name=table,
            table=table,
            timestamp_field="event_ts",
            created_timestamp_column="created_ts",
        ),
        description=f"{kind} events ({events.model.__name__}, providers/events.py).",
    )


def _schema_json(kind: str) -> str:
    """The message schema as Spark DDL (documentation for Feast's own processor)."""
    spark_types = {"int": "BIGINT", "str": "STRING", "bool": "BOOLEAN", "Decimal": "DECIMAL(14,2)"}
    fields = KINDS[kind].model.model_fields
    return ", ".join(
        f"{name} {'TIMESTAMP' if name == 'event_ts' else spark_types[f.annotation.__name__]}"
        for name, f in fields.items()
    )


def login_signals(df):
    """A failed login is 1, a successful one 0 (so `sum` counts failures)."""
    out = df.copy()
    out["failed"] = (~out["success"].astype(bool)).astype("int64")
    return out


def amounts(df):
    """Amounts as doubles: both engines aggregate the same binary values."""
    out = df.copy()
    out["amount"] = out["amount"].astype("float64")
    return out


def _portable(fn):
    """`fn` re-created from its source as if defined in __main__, so dill stores it by value."""
    import inspect

    source = inspect.getsource(fn)
    namespace = {"__name__": "__main__"}
    exec(compile(source, f"<udf {fn.__name__}>", "exec"), namespace)  # noqa: S102 (this file)
    portable = namespace[fn.__name__]
    return portable


def _view(name, kind, table, udf, aggregations, description) -> StreamFeatureView:
    import inspect

    types = {"count": Int64, "count_distinct": Int64, "last": String}
    return StreamFeatureView(
        name=name,
        source=_stream(kind, table),
        entities=[user],
        ttl=timedelta(0),  # a row holds until the next change point (a window emptying is one)
        schema=[Field(name=a.name, dtype=types.get(a.function, Float64)) for a in aggregations],
        aggregations=aggregations,
        timestamp_field="event_ts",
        mode="pandas",
        udf=_portable(udf),
        udf_string=inspect.getsource(udf),
        online=True,
        tags=NEAR_REAL_TIME,
        description=description,
    )


user_login_velocity = _view(
    "user_login_velocity",
    "login",
    "velocity_login",
    login_signals,
    [
        Aggregation("event_id", "count", MINUTE, timedelta(seconds=10), "login_attempts_1m"),
        Aggregation("failed", "sum", 10 * MINUTE, MINUTE, "failed_logins_10m"),
        Aggregation("failed", "sum", HOUR, MINUTE, "failed_logins_1h"),
        Aggregation("ip", "count_distinct", HOUR, MINUTE, "distinct_ips_1h"),
        Aggregation("device_id", "count_distinct", HOUR, MINUTE, "distinct_devices_1h"),
        Aggregation("country", "count_distinct", DAY, HOUR, "distinct_countries_1d"),
    ],
    "Login velocity: attempts, failures, distinct IPs, devices and countries.",
)

user_transaction_velocity = _view(
    "user_transaction_velocity",
    "transaction",
    "velocity_transaction",
    amounts,
    [
        Aggregation("event_id", "count", 5 * MINUTE, timedelta(seconds=10), "txn_count_5m"),
        Aggregation("amount", "sum", 5 * MINUTE, timedelta(seconds=10), "txn_amount_5m"),
        Aggregation("event_id", "count", HOUR, MINUTE, "txn_count_1h"),
        Aggregation("amount", "sum", HOUR, MINUTE, "txn_amount_1h"),
        Aggregation("amount", "min", HOUR, MINUTE, "txn_min_amount_1h"),
        Aggregation("amount", "max", HOUR, MINUTE, "txn_max_amount_1h"),
        Aggregation("merchant_id", "count_distinct", HOUR, MINUTE, "distinct_merchants_1h"),
        Aggregation("amount", "mean", 30 * DAY, DAY, "txn_mean_amount_30d"),
    ],
    "Transaction velocity: counts and amounts over minutes and an hour (card testing), "
    "the 30-day mean amount as the user's baseline.",
)

user_withdrawal_velocity = _view(
    "user_withdrawal_velocity",
    "withdrawal",
    "velocity_withdrawal",
    amounts,
    [
        Aggregation("event_id", "count", HOUR, MINUTE, "withdrawals_1h"),
        Aggregation("amount", "sum", HOUR, MINUTE, "withdrawal_amount_1h"),
        Aggregation("destination_account", "count_distinct", 30 * DAY, DAY, "destinations_30d"),
        Aggregation("destination_account", "last", 30 * DAY, DAY, "last_destination_30d"),
    ],
    "Withdrawal velocity: count and amount in the last hour, destinations over 30 days.",
)
