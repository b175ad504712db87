"""Generate a seeded raw event history in TiDB: logins, transactions, withdrawals, labels.

    python -m spark_jobs.generate [--users 2000] [--days 60] [--end 2026-11-23] [--seed 7]
                                  [--attack-rate 0.015] [--replace]

Every random draw is a hash of (seed, user, day, purpose), so the same arguments give the same
events whatever the partitioning or the number of cores.

Legitimate behaviour, including what looks like fraud:
- each user has a home country and currency, 1-3 habitual IPs, 1-2 devices, a few favourite
  merchants and one payout account, and personal activity rates; activity follows a daily rhythm;
- logins sometimes fail (typos), and on some days a user forgets the password: 2-6 failed logins
  from the home IP seconds apart (at most 4 minutes in all), usually ending in a success;
- logins come from one-off mobile-carrier IPs and, now and then, a one-off device; some users get
  a new phone and use it from then on; some travel for days, logging in from a hotel IP abroad
  (sometimes in a country attackers also use; now and then a trip home);
- a few withdrawals go to a new account, for larger amounts.

Attacks (one per attacked user, a share `--attack-rate` of users, on a random day and hour):
- burst credential stuffing: 8-30 failed logins within 45 s, each from a different botnet IP,
  then a success from a new device, then 1-4 large withdrawals to a mule account;
- slow credential stuffing: 3-8 failed logins 20-90 min apart from different proxy IPs, then the
  same takeover;
- phishing: no failed login at all; a success from a new device through a residential proxy in
  the user's own country, withdrawals from 30 min to about 13 h later;
- card testing: 10-40 tiny payments at different merchants seconds apart, then withdrawals;
- mule: the account itself moves money: 3-8 withdrawals to new accounts, hours apart.

Labels are noisy the way real ones are: a takeover (its successful login) is reported 1-5 days
later, a fraudulent withdrawal 1-14 days later (a mule's 7-30), or never (10% and 15%); a few
legitimate ones are reported as fraud (disputes, confused customers).

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
TRAVEL_COUNTRIES = [*COUNTRIES, "TH", "MX", "VN", "CN", "NG"]
# kind: share of the attacked users. The first three take the account over.
ATTACKS = {
    "burst_stuffing": 0.30,
    "slow_stuffing": 0.20,
    "phishing": 0.20,
    "card_testing": 0.15,
    "mule": 0.15,
}
TAKEOVERS = ("burst_stuffing", "slow_stuffing", "phishing")
# Sequence numbers within one (user, day): normal events 0..39, legitimate bursts (forgotten
# passwords) 40..47, attack events 64..127.
MAX_NORMAL_PER_DAY = 40
NOISE_SEQ = 40
ATTACK_SEQ = 64
SEQ_SLOTS = 128
RAW_TABLES = ("logins", "transactions", "withdrawals", "labels")
SECOND = 1_000_000  # micros
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def uniform(seed: int, *parts: Column | str | int) -> Column:
    """A deterministic uniform draw in [0, 1) from the seed and the given columns/labels."""
    cols = [c if isinstance(c, Column) else F.lit(c) for c in parts]
    return (F.abs(F.xxhash64(F.lit(seed), *cols)) % F.lit(1_000_003)) / F.lit(1_000_003.0)


def _pick(options: list[str], u: Column) -> Column:
    return F.element_at(
        F.array(*[F.lit(o) for o in options]), (F.floor(u * len(options)) + 1).cast("int")
    )


def _between(u: Column, low: float, high: float) -> Column:
    return F.lit(low) + u * F.lit(high - low)


def _lit(k: Column | int) -> Column:
    return F.lit(k) if isinstance(k, int) else k


def _ip(seed: int, user: Column, k: Column | int, salt: str) -> Column:
    octet = [
        (F.abs(F.xxhash64(F.lit(seed), user, _lit(k), F.lit(f"{salt}{i}"))) % 254 + 1)
        for i in range(4)
    ]
    return F.concat_ws(".", *[o.cast("string") for o in octet])


def _device(seed: int, user: Column, k: Column | int, salt: str) -> Column:
    return F.concat(
        F.lit("dev-"),
        F.substring(F.sha2(F.concat_ws(":", F.lit(seed), user, _lit(k), F.lit(salt)), 256), 1, 12),
    )


def _account(seed: int, user: Column, k: Column | int, salt: str) -> Column:
    return F.concat(
        F.lit("IBAN"),
        (F.abs(F.xxhash64(F.lit(seed), user, _lit(k), F.lit(salt))) % 10**12).cast("string"),
    )


def _at(start: Column, offset_micros: Column) -> Column:
    """`start` plus an offset in microseconds (attacks are faster than a second per step)."""
    return F.timestamp_micros(F.unix_micros(start) + offset_micros.cast("long"))


def users(spark: SparkSession, n_users: int, seed: int, attack_rate: float = 0.015) -> DataFrame:
    u = F.col("user_id")
    kind, cumulative = uniform(seed, u, "attack_kind"), 0.0
    attack = F.when(F.lit(False), F.lit(None).cast("string"))
    for name, share in ATTACKS.items():
        cumulative += share
        attack = attack.when(kind < cumulative, F.lit(name))
    attack = attack.otherwise(F.lit(list(ATTACKS)[-1]))
    return spark.range(1, n_users + 1, numPartitions=max(1, min(64, n_users // 5000 + 1))).select(
        F.col("id").alias("user_id"),
        _pick(COUNTRIES, uniform(seed, u, "country")).alias("country"),
        (F.floor(uniform(seed, u, "n_ips") * 3) + 1).cast("int").alias("n_ips"),
        (F.floor(uniform(seed, u, "n_devices") * 2) + 1).cast("int").alias("n_devices"),
        (F.lit(0.1) + F.pow(uniform(seed, u, "txn_rate"), 2) * 2.0).alias("txn_rate"),
        (F.lit(0.2) + uniform(seed, u, "login_rate") * 1.0).alias("login_rate"),
        (F.lit(0.01) + uniform(seed, u, "wd_rate") * 0.08).alias("withdrawal_rate"),
        (F.lit(3.0) + uniform(seed, u, "spend") * 1.5).alias("log_spend"),
        F.when(uniform(seed, u, "attack") < attack_rate, attack).alias("attack"),
        uniform(seed, u, "attack_day").alias("attack_u"),
        (uniform(seed, u, "travels") < 0.08).alias("travels"),
        uniform(seed, u, "trip_day").alias("trip_u"),
        (F.floor(uniform(seed, u, "trip_len") * 8) + 2).cast("int").alias("trip_days"),
        _pick(TRAVEL_COUNTRIES, uniform(seed, u, "trip_country")).alias("trip_country"),
        (uniform(seed, u, "new_phone") < 0.10).alias("new_phone"),
        uniform(seed, u, "phone_day").alias("phone_u"),
    )


def user_days(spark: SparkSession, people: DataFrame, start: dt.date, days: int) -> DataFrame:
    calendar = spark.range(days).select(
        F.date_add(F.lit(start), F.col("id").cast("int")).alias("day"),
        F.col("id").cast("int").alias("day_index"),
    )
    i = F.col("day_index")
    trip_start = F.floor(F.col("trip_u") * days).cast("int")
    return (
        people.crossJoin(F.broadcast(calendar))
        .withColumn("trip_start", trip_start)
        .withColumn(
            "in_trip",
            F.col("travels") & (i >= trip_start) & (i < trip_start + F.col("trip_days")),
        )
        .withColumn("phone_changed", F.col("new_phone") & (i >= F.floor(F.col("phone_u") * days)))
    )


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


def _event_id(grid_days: int, seq: Column) -> Column:
    return ((F.col("user_id") * grid_days + F.col("day_index")) * SEQ_SLOTS + seq).cast("long")


def _explode(grid: DataFrame, n: Column, first: int = 0) -> DataFrame:
    return (
        grid.withColumn("n", n)
        .where(F.col("n") > first - 1)
        .withColumn("seq", F.explode(F.sequence(F.lit(first), F.col("n"))))
    )


def _currency() -> Column:
    return F.coalesce(
        *[F.when(F.col("country") == k, F.lit(v)) for k, v in CURRENCY.items()], F.lit("EUR")
    )


def transactions(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    ev = _explode(grid, _count(seed, F.col("txn_rate"), u, d, "txn") - 1)
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
    legit = ev.select(
        _event_id(days, s).alias("txn_id"),
        u,
        merchant.alias("merchant_id"),
        F.greatest(amount, F.lit(0.5)).cast("decimal(14,2)").alias("amount"),
        _currency().alias("currency"),
        _time_of_day(d, uniform(seed, u, d, s, "t")).alias("event_ts"),
    )
    return legit.unionByName(_card_tests(grid, seed, days))


def _incidents(grid: DataFrame, seed: int, days: int, kinds: tuple[str, ...]) -> DataFrame:
    """One row per attack of the given kinds: its (user, day) and start `t0` (any hour; bots do
    not sleep)."""
    u, d = F.col("user_id"), F.col("day")
    day_of = F.floor(F.col("attack_u") * max(days - 1, 1)).cast("int")
    start = F.unix_micros(F.to_timestamp(d)) + F.floor(uniform(seed, u, d, "t0") * 22 * HOUR)
    return grid.where(F.col("attack").isin(*kinds) & (F.col("day_index") == day_of)).withColumn(
        "t0", F.timestamp_micros(start.cast("long"))
    )


def _card_tests(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d, s = F.col("user_id"), F.col("day"), F.col("seq")
    tests = _explode(
        _incidents(grid, seed, days, ("card_testing",)),
        F.lit(ATTACK_SEQ + 9) + F.floor(uniform(seed, u, d, "ct_n") * 31),
        first=ATTACK_SEQ,
    )
    spacing = _between(uniform(seed, u, d, "ct_gap"), 4, 15) * SECOND
    return tests.select(
        _event_id(days, s).alias("txn_id"),
        u,
        F.concat(F.lit("m"), F.floor(uniform(seed, u, d, s, "ct_m") * 3000).cast("string")).alias(
            "merchant_id"
        ),
        F.round(_between(uniform(seed, u, d, s, "ct_a"), 0.5, 2.0), 2)
        .cast("decimal(14,2)")
        .alias("amount"),
        _currency().alias("currency"),
        _at(F.col("t0"), (s - ATTACK_SEQ) * spacing).alias("event_ts"),
    )


def logins(grid: DataFrame, seed: int, days: int) -> DataFrame:
    return (
        _normal_logins(grid, seed, days)
        .unionByName(_forgotten_passwords(grid, seed, days))
        .unionByName(_takeover_logins(grid, seed, days).drop("attack"))
    )


def _normal_logins(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    ev = _explode(grid, _count(seed, F.col("login_rate"), u, d, "login") - 1)
    s = F.col("seq")
    slot = F.col("day_index") * SEQ_SLOTS + s
    # The first IP and device are the most used.
    k_ip = F.floor(F.pow(uniform(seed, u, d, s, "ipk"), 2) * F.col("n_ips")).cast("int")
    k_dev = F.floor(F.pow(uniform(seed, u, d, s, "devk"), 2) * F.col("n_devices")).cast("int")
    ip = (
        F.when(
            F.col("in_trip") & (uniform(seed, u, d, s, "hotel") < 0.8),
            _ip(seed, u, F.col("trip_start"), "hotel"),
        )
        .when(uniform(seed, u, d, s, "mobile") < 0.08, _ip(seed, u, slot, "mobile"))
        .otherwise(_ip(seed, u, k_ip, "home"))
    )
    device = (
        F.when(uniform(seed, u, d, s, "oneoff") < 0.015, _device(seed, u, slot, "oneoff"))
        .when(
            F.col("phone_changed") & (uniform(seed, u, d, s, "phone") < 0.7),
            _device(seed, u, 100, "own"),
        )
        .otherwise(_device(seed, u, k_dev, "own"))
    )
    return ev.select(
        _event_id(days, s).alias("login_id"),
        u,
        ip.alias("ip"),
        device.alias("device_id"),
        F.when(F.col("in_trip"), F.col("trip_country"))
        .otherwise(F.col("country"))
        .alias("country"),
        (uniform(seed, u, d, s, "ok") > 0.03).alias("success"),
        _time_of_day(d, uniform(seed, u, d, s, "t")).alias("event_ts"),
    )


def _forgotten_passwords(grid: DataFrame, seed: int, days: int) -> DataFrame:
    """Legitimate bursts: 2-6 failed logins from home seconds apart, usually then a success."""
    u, d, s = F.col("user_id"), F.col("day"), F.col("seq")
    burst = _explode(
        grid.where(uniform(seed, u, d, "forgot") < 0.004),
        F.lit(NOISE_SEQ + 2) + F.floor(uniform(seed, u, d, "forgot_n") * 5),
        first=NOISE_SEQ,
    )
    last = s == F.col("n")
    spacing = _between(uniform(seed, u, d, "forgot_gap"), 8, 40) * SECOND
    return burst.select(
        _event_id(days, s).alias("login_id"),
        u,
        _ip(seed, u, 0, "home").alias("ip"),
        _device(seed, u, 0, "own").alias("device_id"),
        F.col("country"),
        (last & (uniform(seed, u, d, "forgot_ok") < 0.8)).alias("success"),
        _at(_time_of_day(d, uniform(seed, u, d, "forgot_t")), (s - NOISE_SEQ) * spacing).alias(
            "event_ts"
        ),
    )


def _takeover_logins(grid: DataFrame, seed: int, days: int) -> DataFrame:
    """Each takeover's failed attempts (none for phishing), then its success (the last row)."""
    u, d, s = F.col("user_id"), F.col("day"), F.col("seq")
    kind = F.col("attack")
    failures = (
        F.when(kind == "burst_stuffing", 8 + F.floor(uniform(seed, u, d, "ato_n") * 23))
        .when(kind == "slow_stuffing", 3 + F.floor(uniform(seed, u, d, "ato_n") * 6))
        .otherwise(0)
    )
    spacing = (
        F.when(kind == "burst_stuffing", F.lit(45 * SECOND) / failures)
        .when(kind == "slow_stuffing", _between(uniform(seed, u, d, "ato_gap"), 20, 90) * MINUTE)
        .otherwise(0)
    )
    attempts = _explode(_incidents(grid, seed, days, TAKEOVERS), ATTACK_SEQ + failures, ATTACK_SEQ)
    k = s - ATTACK_SEQ
    success = s == F.col("n")
    proxy_country = uniform(seed, u, d, "ato_home") < 0.5
    return attempts.select(
        _event_id(days, s).alias("login_id"),
        u,
        F.when(kind == "phishing", _ip(seed, u, 0, "residential"))
        .otherwise(_ip(seed, u, k, "botnet"))
        .alias("ip"),
        F.when(success, _device(seed, u, 0, "attacker"))
        .otherwise(_device(seed, u, k % 4, "bot"))
        .alias("device_id"),
        F.when(success & ((kind == "phishing") | proxy_country), F.col("country"))
        .when(success, _pick(ATTACKER_COUNTRIES, uniform(seed, u, "ato_country")))
        .otherwise(_pick([*ATTACKER_COUNTRIES, *COUNTRIES], uniform(seed, u, d, s, "bot_c")))
        .alias("country"),
        success.alias("success"),
        _at(F.col("t0"), k * spacing).alias("event_ts"),
        kind,
    )


def withdrawals(grid: DataFrame, seed: int, days: int) -> DataFrame:
    return _normal_withdrawals(grid, seed, days).unionByName(
        _fraud_withdrawals(grid, seed, days).drop("attack")
    )


def _normal_withdrawals(grid: DataFrame, seed: int, days: int) -> DataFrame:
    u, d = F.col("user_id"), F.col("day")
    ev = _explode(grid, _count(seed, F.col("withdrawal_rate"), u, d, "wd") - 1)
    s = F.col("seq")
    new_account = uniform(seed, u, d, s, "newdest") < 0.04
    return ev.select(
        _event_id(days, s).alias("withdrawal_id"),
        u,
        F.round(
            F.exp(
                F.col("log_spend")
                + 1.5
                + uniform(seed, u, d, s, "a")
                + F.when(new_account, 1.0).otherwise(0.0)
            ),
            2,
        )
        .cast("decimal(14,2)")
        .alias("amount"),
        F.when(new_account, _account(seed, u, F.col("day_index") * SEQ_SLOTS + s, "new"))
        .otherwise(_account(seed, u, 0, "acct"))
        .alias("destination_account"),
        _time_of_day(d, uniform(seed, u, d, s, "t")).alias("event_ts"),
    )


def _fraud_withdrawals(grid: DataFrame, seed: int, days: int) -> DataFrame:
    """Cash-outs after a takeover or card testing, and a mule's transfers; with `attack`."""
    u, d, s = F.col("user_id"), F.col("day"), F.col("seq")
    kind = F.col("attack")
    after = (
        F.when(kind == "burst_stuffing", _between(uniform(seed, u, d, "wd0"), 5, 30) * MINUTE)
        .when(kind == "slow_stuffing", _between(uniform(seed, u, d, "wd0"), 10, 90) * MINUTE)
        .when(kind == "phishing", _between(uniform(seed, u, d, "wd0"), 30, 720) * MINUTE)
        .when(kind == "card_testing", _between(uniform(seed, u, d, "wd0"), 10, 40) * MINUTE)
        .otherwise(0)
    )
    spacing = F.when(
        kind == "mule", _between(uniform(seed, u, d, "wd_gap"), 2, 10) * HOUR
    ).otherwise(_between(uniform(seed, u, d, "wd_gap"), 3, 25) * MINUTE)
    count = F.when(kind == "mule", 3 + F.floor(uniform(seed, u, d, "wd_n") * 6)).otherwise(
        1 + F.floor(uniform(seed, u, d, "wd_n") * 4)
    )
    # A takeover's cash-out starts after its successful login.
    logins = _takeover_logins(grid, seed, days).where(F.col("success"))
    incidents = _incidents(grid, seed, days, tuple(ATTACKS)).join(
        logins.select("user_id", F.col("event_ts").alias("took_over")), "user_id", "left"
    )
    burst = _explode(incidents, ATTACK_SEQ + count - 1, ATTACK_SEQ)
    k = s - ATTACK_SEQ
    start = F.coalesce(F.col("took_over"), F.col("t0"))
    destination = F.when(kind == "mule", _account(seed, u, k, "mule_out")).otherwise(
        _account(seed, u, k % 2, "mule")
    )
    boost = F.when(kind == "mule", 1.0).otherwise(2.0)
    return burst.select(
        _event_id(days, s).alias("withdrawal_id"),
        u,
        F.round(F.exp(F.col("log_spend") + boost + uniform(seed, u, d, s, "a") * 1.5), 2)
        .cast("decimal(14,2)")
        .alias("amount"),
        destination.alias("destination_account"),
        _at(start, after + k * spacing).alias("event_ts"),
        kind,
    )


def labels(grid: DataFrame, seed: int, days: int) -> DataFrame:
    """account_takeover labels on the takeover's successful login, withdrawal_fraud labels on
    fraudulent withdrawals: reported late or never, plus a few false reports."""
    u = F.col("user_id")

    def delay(key: str, low_days: int, high_days: int) -> Column:
        spread = uniform(seed, F.col(key), "report") * (high_days - low_days)
        return F.make_interval(
            days=(F.floor(spread) + low_days).cast("int"),
            hours=F.floor(uniform(seed, F.col(key), "report_h") * 24).cast("int"),
        )

    def reported(key: str, share: float) -> Column:
        return uniform(seed, F.col(key), "reported") < share

    takeovers = (
        _takeover_logins(grid, seed, days)
        .where(F.col("success") & reported("login_id", 0.9))
        .select(
            (F.col("login_id") * 2).alias("label_id"),
            u,
            F.lit("account_takeover").alias("label"),
            F.col("event_ts"),
            (F.col("event_ts") + delay("login_id", 1, 5)).alias("reported_ts"),
        )
    )
    confused = (
        _normal_logins(grid, seed, days)
        .where(F.col("success") & (uniform(seed, F.col("login_id"), "confused") < 0.0001))
        .select(
            (F.col("login_id") * 2).alias("label_id"),
            u,
            F.lit("account_takeover").alias("label"),
            F.col("event_ts"),
            (F.col("event_ts") + delay("login_id", 1, 10)).alias("reported_ts"),
        )
    )
    mule = F.col("attack") == "mule"
    frauds = (
        _fraud_withdrawals(grid, seed, days)
        .where(reported("withdrawal_id", 0.85))
        .select(
            (F.col("withdrawal_id") * 2 + 1).alias("label_id"),
            u,
            F.lit("withdrawal_fraud").alias("label"),
            F.col("event_ts"),
            (
                F.col("event_ts")
                + F.when(mule, delay("withdrawal_id", 7, 30)).otherwise(
                    delay("withdrawal_id", 1, 14)
                )
            ).alias("reported_ts"),
        )
    )
    disputes = (
        _normal_withdrawals(grid, seed, days)
        .where(uniform(seed, F.col("withdrawal_id"), "dispute") < 0.003)
        .select(
            (F.col("withdrawal_id") * 2 + 1).alias("label_id"),
            u,
            F.lit("withdrawal_fraud").alias("label"),
            F.col("event_ts"),
            (F.col("event_ts") + delay("withdrawal_id", 3, 30)).alias("reported_ts"),
        )
    )
    return takeovers.unionByName(confused).unionByName(frauds).unionByName(disputes)


def generate(
    spark: SparkSession,
    n_users: int,
    days: int,
    end: dt.date,
    seed: int,
    attack_rate: float = 0.015,
) -> dict[str, DataFrame]:
    """The four raw event tables for `days` days ending the day before `end` (UTC). An attack
    that would run past the end is cut there (its later events and their labels are dropped)."""
    start = end - dt.timedelta(days=days)
    grid = user_days(spark, users(spark, n_users, seed, attack_rate), start, days)
    # A string, read in the session's time zone (UTC): a naive datetime would be read in the
    # Python process's local zone.
    before_end = F.col("event_ts") < F.lit(end.isoformat()).cast("timestamp")
    tables = {
        "logins": logins(grid, seed, days),
        "transactions": transactions(grid, seed, days),
        "withdrawals": withdrawals(grid, seed, days),
        "labels": labels(grid, seed, days),
    }
    return {name: frame.where(before_end) for name, frame in tables.items()}


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


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
    parser.add_argument(
        "--attack-rate",
        type=_share,
        default=0.015,
        help="Share of users attacked once in the history (default 0.015).",
    )
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
        f"Generating {args.users} users x {args.days} days ending {args.end} "
        f"(seed {args.seed}, attack rate {args.attack_rate}) ...",
        flush=True,
    )
    total = 0
    tables = generate(spark, args.users, args.days, args.end, args.seed, args.attack_rate)
    for table, frame in tables.items():
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
