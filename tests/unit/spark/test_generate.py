"""The synthetic history: every attack shape the docs promise, legitimate look-alikes, noisy labels."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

END = dt.date(2026, 3, 1)
USERS, DAYS, RATE = 3000, 30, 0.05


@pytest.fixture(scope="module")
def history(spark):
    from spark_jobs import generate as g

    tables = {k: v.toPandas() for k, v in g.generate(spark, USERS, DAYS, END, 7, RATE).items()}
    people = g.users(spark, USERS, 7, RATE).toPandas().set_index("user_id")
    for frame in tables.values():
        frame["event_ts"] = pd.to_datetime(frame["event_ts"])
    return tables, people


def attacked(people, kind):
    users = people.index[people["attack"] == kind]
    assert len(users) >= 10, kind
    return users


def before(frame, user, ts, window):
    rows = frame[frame["user_id"] == user]
    return rows[(rows["event_ts"] < ts) & (rows["event_ts"] >= ts - window)]


def takeover_login(logins, user, failures, window):
    """The user's successful login from a one-time device after `failures` failed logins from
    distinct IPs within `window` before it (None if there is none)."""
    rows = logins[logins["user_id"] == user].sort_values("event_ts")
    once = rows["device_id"].map(rows["device_id"].value_counts()) == 1
    for row in rows[rows["success"] & once].itertuples():
        failed = before(rows, user, row.event_ts, window)
        failed = failed[~failed["success"]]
        if len(failed) >= failures and failed["ip"].nunique() == len(failed):
            return row, failed
    return None, None


def test_ids_unique_and_history_inside_its_days(history):
    tables, _ = history
    start = pd.Timestamp(END - dt.timedelta(days=DAYS))
    for name, key in [("logins", "login_id"), ("transactions", "txn_id"),
                      ("withdrawals", "withdrawal_id"), ("labels", "label_id")]:  # fmt: skip
        frame = tables[name]
        assert frame[key].is_unique, name
        assert frame["event_ts"].min() >= start and frame["event_ts"].max() < pd.Timestamp(END)


def test_deterministic_whatever_the_plan(spark, history):
    from spark_jobs import generate as g

    tables, _ = history
    # Another physical plan: one shuffle partition, sort-merge joins instead of broadcasts.
    conf = {"spark.sql.shuffle.partitions": "1", "spark.sql.autoBroadcastJoinThreshold": "-1"}
    before = {k: spark.conf.get(k) for k in conf}
    try:
        for k, v in conf.items():
            spark.conf.set(k, v)
        again = g.generate(spark, USERS, DAYS, END, 7, RATE)["withdrawals"].toPandas()
    finally:
        for k, v in before.items():
            spark.conf.set(k, v)
    again["event_ts"] = pd.to_datetime(again["event_ts"])
    key = ["withdrawal_id"]
    pd.testing.assert_frame_equal(
        again.sort_values(key).reset_index(drop=True),
        tables["withdrawals"].sort_values(key).reset_index(drop=True),
    )


def test_the_history_ends_at_midnight_utc_whatever_the_local_zone(spark, monkeypatch):
    import time

    from pyspark.sql import functions as F

    from spark_jobs import generate as g

    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9: a local-time cut would drop the last 9 h
    time.tzset()
    try:
        logins = g.generate(spark, 300, 2, END, 7, RATE)["logins"]
        # Epoch seconds: a collected timestamp would be converted to the local zone.
        latest = logins.agg(F.max("event_ts").cast("long")).first()[0]
    finally:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
    end = dt.datetime.combine(END, dt.time(), tzinfo=dt.UTC).timestamp()
    assert end - 9 * 3600 < latest < end


def test_labels_join_their_events_as_training_does(history):
    tables, _ = history
    labels = tables["labels"]
    for label, events, success_only in [("account_takeover", "logins", True),
                                        ("withdrawal_fraud", "withdrawals", False)]:  # fmt: skip
        frame = tables[events]
        if success_only:
            frame = frame[frame["success"]]
        mine = labels[labels["label"] == label]
        joined = mine.merge(frame, on=["user_id", "event_ts"], how="left", indicator=True)
        assert len(mine) > 20 and (joined["_merge"] == "both").all(), label


def test_burst_credential_stuffing(history):
    tables, people = history
    logins = tables["logins"]
    for user in attacked(people, "burst_stuffing"):
        success, _ = takeover_login(logins, user, 8, pd.Timedelta(minutes=1))
        assert success is not None, user


def test_slow_credential_stuffing(history):
    tables, people = history
    logins = tables["logins"]
    for user in attacked(people, "slow_stuffing"):
        success, failed = takeover_login(logins, user, 3, pd.Timedelta(hours=13))
        assert success is not None, user
        gaps = failed["event_ts"].diff().dropna()
        assert (gaps >= pd.Timedelta(minutes=20)).all(), user  # too slow for a 10-minute window


def test_phishing_is_a_clean_login_from_home(history):
    tables, people = history
    logins, labels = tables["logins"], tables["labels"]
    takeovers = labels[labels["label"] == "account_takeover"]
    clean = 0
    for user in attacked(people, "phishing"):
        mine = takeovers[takeovers["user_id"] == user]
        if mine.empty:
            continue  # never reported
        ts = mine["event_ts"].iloc[0]
        login = logins[(logins["user_id"] == user) & (logins["event_ts"] == ts)].iloc[0]
        assert login["success"] and login["country"] == people.loc[user, "country"]
        hour = before(logins, user, ts, pd.Timedelta(hours=1))
        clean += int(hour["success"].all())
    assert clean >= 5


def test_card_testing_then_cash_out(history):
    tables, people = history
    payments, withdrawals = tables["transactions"], tables["withdrawals"]
    for user in attacked(people, "card_testing"):
        tiny = payments[(payments["user_id"] == user) & (payments["amount"] <= 2)]
        tiny = tiny.sort_values("event_ts")
        spread = tiny["event_ts"].iloc[-1] - tiny["event_ts"].iloc[0]
        assert (
            len(tiny) >= 10
            and tiny["merchant_id"].nunique() >= 8
            and spread < pd.Timedelta(minutes=11)
        ), user
        after = withdrawals[
            (withdrawals["user_id"] == user)
            & (withdrawals["event_ts"] > tiny["event_ts"].iloc[-1])
            & (withdrawals["event_ts"] < tiny["event_ts"].iloc[-1] + pd.Timedelta(hours=3))
        ]
        assert len(after) >= 1 or tiny["event_ts"].iloc[-1] > pd.Timestamp(END) - pd.Timedelta(
            hours=3
        ), user


def test_mules_pay_out_to_new_accounts(history):
    tables, people = history
    withdrawals = tables["withdrawals"]
    for user in attacked(people, "mule"):
        mine = withdrawals[withdrawals["user_id"] == user]
        late = mine["event_ts"].max() > pd.Timestamp(END) - pd.Timedelta(days=3)
        assert mine["destination_account"].nunique() >= 3 or late, user


def test_honest_users_never_look_like_a_burst(history):
    tables, people = history
    logins = tables["logins"]
    honest = people.index[people["attack"].isna()][:300]
    assert all(takeover_login(logins, u, 8, pd.Timedelta(minutes=1))[0] is None for u in honest)


def test_legitimate_look_alikes(history):
    tables, people = history
    logins = tables["logins"]
    honest = logins[logins["user_id"].isin(people.index[people["attack"].isna()])]
    # Forgotten passwords: runs of failures from one IP within a minute.
    failed = honest[~honest["success"]].sort_values(["user_id", "event_ts"])
    runs = failed.groupby("user_id")["event_ts"].apply(
        lambda ts: int(((ts.diff() < pd.Timedelta(minutes=1)).rolling(2).sum() >= 2).any())
    )
    assert runs.sum() >= 50
    # Travel: logins abroad, some from countries attackers also use.
    home = honest["user_id"].map(people["country"])
    abroad = honest[honest["country"] != home]
    assert abroad["user_id"].nunique() >= 0.05 * USERS
    assert abroad["country"].isin(["CN", "VN", "NG"]).any()
    # New devices: most honest users stick to two, some have more.
    assert (honest.groupby("user_id")["device_id"].nunique() >= 3).sum() >= 0.05 * USERS


def test_labels_are_late_missing_or_wrong(history):
    tables, people = history
    labels = tables["labels"]
    kinds = labels["user_id"].map(people["attack"])
    takeovers = labels[labels["label"] == "account_takeover"]
    assert (takeovers["reported_ts"] - takeovers["event_ts"] >= pd.Timedelta(days=1)).all()
    victims = set(
        people.index[people["attack"].isin(["burst_stuffing", "slow_stuffing", "phishing"])]
    )
    reported = set(takeovers["user_id"]) & victims
    assert 0.8 * len(victims) <= len(reported) < len(victims)  # some never reported
    assert (
        kinds[labels["label"] == "withdrawal_fraud"].isna().sum() >= 3
    )  # disputes on honest users
    frauds = labels[(labels["label"] == "withdrawal_fraud") & kinds.notna()]
    assert (frauds["reported_ts"] - frauds["event_ts"]).max() > pd.Timedelta(days=14)  # mules
