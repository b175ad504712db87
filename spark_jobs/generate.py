"""Generate a seeded, realistic raw event history in TiDB: logins, transactions, withdrawals, labels.

    python -m spark_jobs.generate [--users 2000] [--days 60] [--end 2026-11-23] [--seed 7] [--replace]

Every random draw is a hash of (seed, user, day, purpose), so the same arguments give the same
events whatever the partitioning or the number of cores. The model:

- each user has a home country and currency, 1-3 habitual IPs, 1-2 devices, a few favourite
  merchants and one payout account, and personal activity rates;
- activity follows a daily rhythm (quiet nights, busy evenings); logins occasionally fail (typos);
- about 1% of users suffer an account takeover on one day: failed logins, then a successful login
  from a new IP, device and country, then within hours a burst of large withdrawals to a new
  account. Labels record the takeover and each fraudulent withdrawal, reported days later.

Event ids are built from (user, day, sequence): unique within one generated history (the job
empties the raw tables before writing another, with --replace).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.settings import (
    Database,
    SettingsError,
    finish_args,
    iso_date,
    job_parser,
    job_session,
    positive_int,
)

COUNTRIES = ["DE", "FR", "ES", "IT", "NL", "GB", "US", "PL", "SE", "BR"]
CURRENCY = {"GB": "GBP", "US": "USD", "PL": "PLN", "SE": "SEK", "BR": "BRL"}
ATTACKER_COUNTRIES = ["RU", "NG", "VN", "KP", "CN"]
MAX_NORMAL_PER_DAY = 40  # sequence numbers 0..39 for normal events, 40..63 for takeover events
SEQ_SLOTS = 64
RAW_TABLES = ("logins", "transactions", "withdrawals", "labels")


def uniform(seed: int, *parts: Column | str | int) -> Column:
    """A deterministic uniform draw in [0, 1) from the seed and the given columns/labels."""
    cols = [c if isinstance(c, Column) else F.lit(c) for c in parts]
    return (F.abs(F.xxhash64(F.lit(seed), *cols)) % F.lit(1_000_003)) / F.lit(1_000_003.0)


def _pick(options: list[str], u: Column) -> Column:
    return F.element_at(
        F.array(*[F.lit(o) for o in options]), (F.floor(u * len(options)) + 1).cast("int")
    )


def _ip(seed: int, user: Column, k: Column | int, salt: str) -> Column:
    octet = [
        (
            F.abs(
                F.xxhash64(
                    F.lit(seed), user, F.lit(k) if isinstance(k, int) else k, F.lit(f"{salt}{i}")
                )
            )
            % 254
            + 1
        )
        for i in range(4)
    ]
    return F.concat_ws(".", *[o.cast("string") for o in octet])


def _device(seed: int, user: Column, k: Column | int, salt: str) -> Column:
    return F.concat(
        F.lit("dev-"),
        F.substring(
            F.sha2(
                F.concat_ws(
                    ":", F.lit(seed), user, F.lit(k) if isinstance(k, int) else k, F.lit(salt)
                ),
                256,
            ),
            1,
            12,
        ),
    )


def users(spark: SparkSession, n_users: int, seed: int, takeover_rate: float = 0.01) -> DataFrame:
    u = F.col("user_id")
    return spark.range(1, n_users + 1, numPartitions=max(1, min(64, n_users // 5000 + 1))).select(
        F.col("id").alias("user_id"),
        _pick(COUNTRIES, uniform(seed, u, "country")).alias("country"),
        (F.floor(uniform(seed, u, "n_ips") * 3) + 1).cast("int").alias("n_ips"),
        (F.floor(uniform(seed, u, "n_devices") * 2) + 1).cast("int").alias("n_devices"),
        (F.lit(0.1) + F.pow(uniform(seed, u, "txn_rate"), 2) * 2.0).alias("txn_rate"),
        (F.lit(0.2) + uniform(seed, u, "login_rate") * 1.0).alias("login_rate"),
        (F.lit(0.01) + uniform(seed, u, "wd_rate") * 0.08).alias("withdrawal_rate"),
        (F.lit(3.0) + uniform(seed, u, "spend") * 1.5).alias("log_spend"),
        (uniform(seed, u, "takeover") < takeover_rate).alias("taken_over"),
        uniform(seed, u, "takeover_day").alias("takeover_u"),
    )


def user_days(spark: SparkSession, people: DataFrame, start: dt.date, days: int) -> DataFrame:
    calendar = spark.range(days).select(
        F.date_add(F.lit(start), F.col("id").cast("int")).alias("day"),
        F.col("id").cast("int").alias("day_index"),
    )
    return people.crossJoin(F.broadcast(calendar))


def _count(seed: int, rate: Column, *parts) -> Column:
    """A Poisson-like count with mean ~rate: exponential draw times the rate, randomly rounded."""
    e = -F.log(F.lit(1.0) - uniform(seed, *parts, "e"))
    return F.least(
        F.floor(rate * e + uniform(seed, *parts, "r")), F.lit(MAX_NORMAL_PER_DAY - 1)
    ).cast("int")


def _time_of_day(day: Column, u: Column) -> Column:
    """A timestamp on `day` (UTC): a few events at night, rising through the day to a late-evening peak."""
    seconds = F.floor((F.lit(0.02) + F.lit(0.975) * F.pow(u, F.lit(0.6))) * 86399)
    return F.timestamp_seconds(F.unix_timestamp(F.to_timestamp(day)) + seconds)


def _takeover_start(day: Column, u: Column) -> Column:
    """Between 08:00 and 20:00: the attack (up to ~2 h) ends the same day, inside the history."""
    seconds = F.floor((F.lit(8) + F.lit(12) * u) * 3600)
    return F.timestamp_seconds(F.unix_timestamp(F.to_timestamp(day)) + seconds)


def _event_id(grid_days: int, seq: Column) -> Column:
    return ((F.col("user_id") * grid_days + F.col("day_index")) * SEQ_SLOTS + seq).cast("long")


def _explode(grid: DataFrame, n: Column) -> DataFrame:
    return (
        grid.withColumn("n", n)
        .where(F.col("n") > 0)
        .withColumn("seq", F.explode(F.sequence(F.lit(0), F.col("n") - 1)))
    )


def transactions(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    ev = _explode(grid, _count(seed, F.col("txn_rate"), u, d, "txn"))
    s = F.col("seq")
    favourite = uniform(seed, u, d, s, "fav") < 0.8
    merchant = F.when(
        favourite,
        F.concat(
            F.lit("m"),
            (
                F.abs(F.xxhash64(F.lit(seed), u, F.floor(uniform(seed, u, d, s, "fm") * 5))) % 3000
            ).cast("string"),
        ),
    ).otherwise(F.concat(F.lit("m"), F.floor(uniform(seed, u, d, s, "rm") * 3000).cast("string")))
    normal = (
        uniform(seed, u, d, s, "z1")
        + uniform(seed, u, d, s, "z2")
        + uniform(seed, u, d, s, "z3")
        - 1.5
    ) * 2
    amount = F.round(F.exp(F.col("log_spend") + normal * 0.9), 2)
    currency = F.coalesce(
        *[F.when(F.col("country") == k, F.lit(v)) for k, v in CURRENCY.items()], F.lit("EUR")
    )
    return ev.select(
        _event_id(days, s).alias("txn_id"),
        u,
        merchant.alias("merchant_id"),
        F.greatest(amount, F.lit(0.5)).cast("decimal(14,2)").alias("amount"),
        currency.alias("currency"),
        _time_of_day(d, uniform(seed, u, d, s, "t")).alias("event_ts"),
    )


def logins(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    ev = _explode(grid, _count(seed, F.col("login_rate"), u, d, "login"))
    s = F.col("seq")
    k_ip = F.floor(F.pow(uniform(seed, u, d, s, "ipk"), 2) * F.col("n_ips")).cast(
        "int"
    )  # first IP most used
    k_dev = F.floor(F.pow(uniform(seed, u, d, s, "devk"), 2) * F.col("n_devices")).cast("int")
    normal = ev.select(
        _event_id(days, s).alias("login_id"),
        u,
        _ip(seed, u, k_ip, "home").alias("ip"),
        _device(seed, u, k_dev, "own").alias("device_id"),
        F.col("country"),
        (uniform(seed, u, d, s, "ok") > 0.03).alias("success"),
        _time_of_day(d, uniform(seed, u, d, s, "t")).alias("event_ts"),
    )
    return normal.unionByName(_takeover_logins(grid, seed, days))


def _takeovers(grid: DataFrame, days: int) -> DataFrame:
    """The (user, day) of each takeover, with its start time."""
    day_of = F.floor(F.col("takeover_u") * days).cast("int")
    return grid.where(F.col("taken_over") & (F.col("day_index") == day_of))


def _takeover_logins(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    t0 = _takeover_start(d, uniform(seed, u, d, "ato_t"))
    attempts = (
        _takeovers(grid, days)
        .withColumn("t0", t0)
        .withColumn("n", (F.floor(uniform(seed, u, d, "ato_n") * 4) + 3).cast("int"))
        .withColumn("seq", F.explode(F.sequence(F.lit(0), F.col("n"))))
    )  # n failures, then one success
    s = F.col("seq")
    return attempts.select(
        _event_id(days, F.lit(MAX_NORMAL_PER_DAY) + s).alias("login_id"),
        u,
        _ip(seed, u, 0, "attacker").alias("ip"),
        _device(seed, u, 0, "attacker").alias("device_id"),
        _pick(ATTACKER_COUNTRIES, uniform(seed, u, "ato_country")).alias("country"),
        (s == F.col("n")).alias("success"),
        (F.col("t0") + F.make_interval(mins=s * 2)).alias("event_ts"),
    )


def withdrawals(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    ev = _explode(grid, _count(seed, F.col("withdrawal_rate"), u, d, "wd"))
    s = F.col("seq")
    normal = ev.select(
        _event_id(days, s).alias("withdrawal_id"),
        u,
        F.round(F.exp(F.col("log_spend") + 1.5 + uniform(seed, u, d, s, "a")), 2)
        .cast("decimal(14,2)")
        .alias("amount"),
        F.concat(
            F.lit("IBAN"),
            (F.abs(F.xxhash64(F.lit(seed), u, F.lit("acct"))) % 10**12).cast("string"),
        ).alias("destination_account"),
        _time_of_day(d, uniform(seed, u, d, s, "t")).alias("event_ts"),
    )
    return normal.unionByName(_fraud_withdrawals(grid, seed, days).drop("t0"))


def _fraud_withdrawals(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    t0 = _takeover_start(d, uniform(seed, u, d, "ato_t"))
    burst = (
        _takeovers(grid, days)
        .withColumn("t0", t0)
        .withColumn("n", (F.floor(uniform(seed, u, d, "ato_w") * 4) + 2).cast("int"))
        .withColumn("seq", F.explode(F.sequence(F.lit(1), F.col("n"))))
    )
    s = F.col("seq")
    return burst.select(
        _event_id(days, F.lit(MAX_NORMAL_PER_DAY + 10) + s).alias("withdrawal_id"),
        u,
        F.round(F.exp(F.col("log_spend") + 3.0 + uniform(seed, u, d, s, "a")), 2)
        .cast("decimal(14,2)")
        .alias("amount"),
        F.concat(
            F.lit("IBAN"),
            (F.abs(F.xxhash64(F.lit(seed), u, F.lit("mule"))) % 10**12).cast("string"),
        ).alias("destination_account"),
        (F.col("t0") + F.make_interval(mins=F.lit(20) + s * 15)).alias("event_ts"),
        F.col("t0"),
    )


def labels(grid: DataFrame, seed: int, days: int) -> DataFrame:
    """One account_takeover label per takeover and one withdrawal_fraud label per fraudulent withdrawal."""
    u = F.col("user_id")
    delay = F.make_interval(
        days=(F.floor(uniform(seed, F.col("withdrawal_id"), "report") * 3) + 1).cast("int")
    )
    ato = (
        _takeover_logins(grid, seed, days)
        .where(F.col("success"))
        .select(
            (F.col("login_id") * 2).alias("label_id"),
            u,
            F.lit("account_takeover").alias("label"),
            F.col("event_ts"),
            (F.col("event_ts") + F.make_interval(days=F.lit(2))).alias("reported_ts"),
        )
    )
    fraud = _fraud_withdrawals(grid, seed, days).select(
        (F.col("withdrawal_id") * 2 + 1).alias("label_id"),
        u,
        F.lit("withdrawal_fraud").alias("label"),
        F.col("event_ts"),
        (F.col("event_ts") + delay).alias("reported_ts"),
    )
    return ato.unionByName(fraud)


def generate(
    spark: SparkSession, n_users: int, days: int, end: dt.date, seed: int
) -> dict[str, DataFrame]:
    """The four raw event tables for `days` days ending the day before `end` (UTC)."""
    start = end - dt.timedelta(days=days)
    grid = user_days(spark, users(spark, n_users, seed), start, days)
    return {
        "logins": logins(grid, seed, days),
        "transactions": transactions(grid, seed, days),
        "withdrawals": withdrawals(grid, seed, days),
        "labels": labels(grid, seed, days),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = job_parser("python -m spark_jobs.generate", __doc__)
    parser.add_argument(
        "--users", type=positive_int, default=2000, help="Number of users (default 2000)."
    )
    parser.add_argument(
        "--days", type=positive_int, default=60, help="Days of history (default 60)."
    )
    parser.add_argument(
        "--end",
        type=iso_date,
        default=dt.datetime.now(dt.UTC).date(),
        help="History ends before this day, UTC (default: today).",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--replace", action="store_true", help="Empty the raw event tables first.")
    args = parser.parse_args(argv)
    if args.users * args.days > 200_000_000:
        parser.error("users x days above 200 million: too large for one run of this generator")
    return finish_args(parser, args)


def main(argv: list[str] | None = None) -> int:
    from providers.tidb import connection, sql
    from spark_jobs.jdbc import write_rows
    from spark_jobs.schema import ensure_schema

    args = parse_args(argv)
    try:
        db = Database.from_env(jdbc_jar=args.jdbc_jar, jdbc_driver=args.jdbc_driver)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ensure_schema(db)
    with connection.connect(db.offline_store_config()) as conn:
        existing = {t: int(connection.fetch_one(conn, sql.count_all(t))[0]) for t in RAW_TABLES}
        if any(existing.values()):
            if not args.replace:
                print(
                    f"error: the raw event tables already hold events ({existing}). "
                    "Pass --replace to regenerate them.",
                    file=sys.stderr,
                )
                return 1
            for table in RAW_TABLES:
                connection.execute(conn, sql.truncate(table))
    started = time.monotonic()
    spark = job_session("generate-events", args, db)
    print(
        f"Generating {args.users} users x {args.days} days ending {args.end} (seed {args.seed}) ...",
        flush=True,
    )
    total = 0
    for table, frame in generate(spark, args.users, args.days, args.end, args.seed).items():
        t0 = time.monotonic()
        frame = frame.cache()
        n = frame.count()
        write_rows(frame, db, table)
        frame.unpersist()
        total += n
        print(f"  {table:<13} {n:>12,} rows  {time.monotonic() - t0:6.1f}s", flush=True)
    spark.stop()
    elapsed = time.monotonic() - started
    print(f"Wrote {total:,} events in {elapsed:.1f}s ({total / max(elapsed, 1e-9):,.0f} rows/s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
