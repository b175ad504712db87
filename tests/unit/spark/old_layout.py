"""The one-row-per-user-and-day layout the batch features had before change-only storage.

A frozen copy of the earlier `spark_jobs/features.py` transforms (each daily row attached to every
as-of day of its window, then grouped), kept only as the reference the change-only layout is
compared against at every (user, day): tests/unit/spark/test_features.py. Do not "fix" it.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window


def expand(daily: DataFrame, days: list[dt.date], longest: int) -> DataFrame:
    """Attach to each daily row every as-of day in `days` with 0 <= as_of_day - day <= longest.

    Adds `as_of_day` and `age` (days between the row's day and the as-of day; 0: the same day).
    """
    first, last = min(days), max(days)
    lo = F.greatest(F.col("day"), F.lit(first))
    hi = F.least(F.date_add(F.col("day"), longest), F.lit(last))
    out = daily.where(hi >= lo).withColumn("as_of_day", F.explode(F.sequence(lo, hi)))
    if len(days) != (last - first).days + 1:  # a resumed chunk can have gaps
        out = out.where(F.col("as_of_day").isin(days))
    return out.withColumn("age", F.datediff(F.col("as_of_day"), F.col("day")))


# --------------------------------------------------------------------------- transactions

TXN_WINDOWS = (1, 7, 30)


def daily_transactions(transactions: DataFrame) -> DataFrame:
    """(user_id, day, n, amount, merchants) from raw transactions."""
    return transactions.groupBy("user_id", F.to_date("event_ts").alias("day")).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.col("amount").cast("double")).alias("amount"),
        F.collect_set("merchant_id").alias("merchants"),
    )


def _count_and_sum(prefix: str, w: int) -> list[Column]:
    """Count and sum of the daily aggregates (`n`, `amount`) younger than `w` days."""
    inside = F.col("age") < w
    return [
        F.sum(F.when(inside, F.col("n")).otherwise(F.lit(0)))
        .cast("long")
        .alias(f"{prefix}_count_{w}d"),
        F.coalesce(F.sum(F.when(inside, F.col("amount"))), F.lit(0.0)).alias(f"{prefix}_sum_{w}d"),
    ]


def transaction_features(daily: DataFrame, days: list[dt.date]) -> DataFrame:
    """Per user and as-of day: transaction count, sum and distinct merchants over 1, 7 and 30 days."""
    aggregates = []
    for w in TXN_WINDOWS:
        merchants = F.collect_list(F.when(F.col("age") < w, F.col("merchants")))
        aggregates += [
            *_count_and_sum("txn", w),
            F.size(F.array_distinct(F.flatten(merchants)))
            .cast("long")
            .alias(f"txn_merchants_{w}d"),
        ]
    return expand(daily, days, max(TXN_WINDOWS)).groupBy("user_id", "as_of_day").agg(*aggregates)


# --------------------------------------------------------------------------- withdrawals

WITHDRAWAL_WINDOWS = (1, 7)


def daily_withdrawals(withdrawals: DataFrame) -> DataFrame:
    return withdrawals.groupBy("user_id", F.to_date("event_ts").alias("day")).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.col("amount").cast("double")).alias("amount"),
    )


def withdrawal_features(daily: DataFrame, days: list[dt.date]) -> DataFrame:
    """Per user and as-of day: withdrawal count and sum over 1 and 7 days."""
    aggregates = [c for w in WITHDRAWAL_WINDOWS for c in _count_and_sum("withdrawal", w)]
    return (
        expand(daily, days, max(WITHDRAWAL_WINDOWS))
        .groupBy("user_id", "as_of_day")
        .agg(*aggregates)
    )


# --------------------------------------------------------------------------- logins


def daily_logins(logins: DataFrame) -> DataFrame:
    return logins.groupBy("user_id", F.to_date("event_ts").alias("day")).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(F.col("success"), F.lit(0)).otherwise(F.lit(1))).alias("failed"),
    )


def login_features(daily: DataFrame, days: list[dt.date]) -> DataFrame:
    """Per user and as-of day: failed logins and all logins over 1 day."""
    inside = F.col("age") < 1
    return (
        expand(daily, days, 1)
        .groupBy("user_id", "as_of_day")
        .agg(
            F.sum(F.when(inside, F.col("failed")).otherwise(F.lit(0)))
            .cast("long")
            .alias("failed_logins_1d"),
            F.sum(F.when(inside, F.col("n")).otherwise(F.lit(0))).cast("long").alias("logins_1d"),
        )
    )


# --------------------------------------------------------------------------- profile (365 days)

PROFILE_WINDOW = 365
TOP_N = 3


def daily_login_values(logins: DataFrame) -> DataFrame:
    """(user_id, day, kind, value, n, last_ts) for successful logins; kind is 'ip' or 'device'."""
    ok = logins.where(F.col("success"))
    per_kind = [
        ok.select("user_id", "event_ts", F.lit(kind).alias("kind"), F.col(column).alias("value"))
        for kind, column in (("ip", "ip"), ("device", "device_id"))
    ]
    both = per_kind[0].unionByName(per_kind[1])
    return both.groupBy("user_id", F.to_date("event_ts").alias("day"), "kind", "value").agg(
        F.count(F.lit(1)).alias("n"),
        F.max("event_ts").alias("last_ts"),
    )


def common_values(
    daily: DataFrame,
    days: list[dt.date],
    kind: str,
    window: int = PROFILE_WINDOW,
    top_n: int = TOP_N,
) -> DataFrame:
    """(user_id, as_of_day, values): the user's `top_n` most used values of `kind` over `window` days.

    Order: most logins first, then most recently used, then by value. Users whose window just
    emptied get an empty list.
    """
    recent = expand(daily.where(F.col("kind") == kind), days, window)
    inside = F.col("age") < window
    per_value = recent.groupBy("user_id", "as_of_day", "value").agg(
        F.sum(F.when(inside, F.col("n")).otherwise(F.lit(0))).alias("n"),
        F.max(F.when(inside, F.col("last_ts"))).alias("last_ts"),
    )
    ranked = (
        per_value.where(F.col("n") > 0)
        .withColumn(
            "rank",
            F.row_number().over(
                Window.partitionBy("user_id", "as_of_day").orderBy(
                    F.col("n").desc(), F.col("last_ts").desc(), F.col("value").asc()
                )
            ),
        )
        .where(F.col("rank") <= top_n)
    )
    lists = ranked.groupBy("user_id", "as_of_day").agg(
        F.transform(
            F.sort_array(F.collect_list(F.struct("rank", "value"))), lambda s: s["value"]
        ).alias("values")
    )
    keys = per_value.select("user_id", "as_of_day").distinct()
    return keys.join(lists, ["user_id", "as_of_day"], "left").select(
        "user_id",
        "as_of_day",
        F.coalesce(F.col("values"), F.array().cast("array<string>")).alias("values"),
    )


def profile_features(daily: DataFrame, days: list[dt.date]) -> DataFrame:
    """Per user and as-of day: common IPs and devices over 365 days, as JSON arrays."""
    ips = common_values(daily, days, "ip").withColumnRenamed("values", "ips")
    devices = common_values(daily, days, "device").withColumnRenamed("values", "devices")
    empty = F.array().cast("array<string>")
    return ips.join(devices, ["user_id", "as_of_day"], "full_outer").select(
        "user_id",
        "as_of_day",
        F.to_json(F.coalesce(F.col("ips"), empty)).alias("common_ips_365d"),
        F.to_json(F.coalesce(F.col("devices"), empty)).alias("common_devices_365d"),
    )


COMPUTE = {
    "transactions": (daily_transactions, transaction_features),
    "withdrawals": (daily_withdrawals, withdrawal_features),
    "logins": (daily_logins, login_features),
    "profile": (daily_login_values, profile_features),
}
