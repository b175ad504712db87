"""Each transform on small hand-built DataFrames with known answers, window edges included."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest

from spark_jobs import features as fx

UTC = dt.UTC
D = dt.date(2026, 3, 31)  # the as-of day in these tests


def at(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=UTC)


def ago(days: int) -> dt.date:
    return D - dt.timedelta(days=days)


def by_user(df) -> dict:
    """Rows of one as-of day, by user, without the as_of_day column."""
    return {
        r["user_id"]: {k: v for k, v in r.asDict().items() if k != "as_of_day"}
        for r in df.collect()
    }


TXN_SCHEMA = (
    "user_id long, merchant_id string, amount decimal(14,2), currency string, event_ts timestamp"
)


def test_transaction_windows_and_edges(spark):
    rows = [
        (1, "m1", 10, "EUR", at(D, 23, 59)),  # last minute of the day: in every window
        (1, "m2", 5, "EUR", at(ago(1), 0, 0)),  # first minute of the day before: 7d and 30d
        (1, "m1", 7, "EUR", at(ago(6))),  # 7d edge (6 days back): in 7d
        (1, "m3", 1, "EUR", at(ago(7))),  # just outside 7d, inside 30d
        (1, "m4", 2, "EUR", at(ago(29))),  # 30d edge: inside
        (1, "m5", 100, "EUR", at(ago(30))),  # outside 30d
        (
            1,
            "m6",
            1000,
            "EUR",
            at(D + dt.timedelta(days=1), 0, 0),
        ),  # after the as-of instant: ignored
        (2, "m9", 3, "EUR", at(ago(30))),  # only activity just outside 30d -> a row of zeros
        (3, "m9", 3, "EUR", at(ago(31))),  # older: no row at all
    ]
    raw = spark.createDataFrame([(u, m, Decimal(a), c, t) for u, m, a, c, t in rows], TXN_SCHEMA)
    out = by_user(fx.transaction_features(fx.daily_transactions(raw), [D]))
    assert set(out) == {1, 2}
    u1 = out[1]
    assert (u1["txn_count_1d"], u1["txn_sum_1d"], u1["txn_merchants_1d"]) == (1, 10.0, 1)
    assert (u1["txn_count_7d"], u1["txn_sum_7d"], u1["txn_merchants_7d"]) == (3, 22.0, 2)
    assert (u1["txn_count_30d"], u1["txn_sum_30d"], u1["txn_merchants_30d"]) == (5, 25.0, 4)
    assert out[2] == {"user_id": 2, **{c: 0 for c in fx.FEATURE_SETS["transactions"].columns}}


def test_withdrawal_windows(spark):
    schema = "user_id long, amount decimal(14,2), destination_account string, event_ts timestamp"
    rows = [
        (1, Decimal("50.5"), "a", at(D)),
        (1, Decimal("20"), "a", at(ago(6))),
        (1, Decimal("99"), "a", at(ago(7))),
        (2, Decimal("1"), "b", at(ago(7))),
    ]
    out = by_user(
        fx.withdrawal_features(fx.daily_withdrawals(spark.createDataFrame(rows, schema)), [D])
    )
    assert out[1] == {
        "user_id": 1,
        "withdrawal_count_1d": 1,
        "withdrawal_sum_1d": 50.5,
        "withdrawal_count_7d": 2,
        "withdrawal_sum_7d": 70.5,
    }
    assert out[2]["withdrawal_count_7d"] == 0 and out[2]["withdrawal_sum_1d"] == 0.0


LOGIN_SCHEMA = (
    "user_id long, ip string, device_id string, country string, success boolean, event_ts timestamp"
)


def test_failed_logins_over_one_day(spark):
    rows = [
        (1, "ip", "d", "DE", False, at(D, 0, 0)),
        (1, "ip", "d", "DE", False, at(D, 23, 59)),
        (1, "ip", "d", "DE", True, at(D)),
        (1, "ip", "d", "DE", False, at(ago(1), 23, 59)),
        (2, "ip", "d", "DE", False, at(ago(1))),
    ]
    out = by_user(
        fx.login_features(fx.daily_logins(spark.createDataFrame(rows, LOGIN_SCHEMA)), [D])
    )
    assert out[1] == {"user_id": 1, "failed_logins_1d": 2, "logins_1d": 3}
    assert out[2] == {"user_id": 2, "failed_logins_1d": 0, "logins_1d": 0}  # yesterday only: zeros


def test_common_ips_and_devices_over_365_days(spark):
    rows = [
        # ip A: 3 logins, B: 2 (one more recent than C's), C: 2, D: 5 but 365 days ago (outside)
        *[(1, "A", "phone", "DE", True, at(ago(d))) for d in (1, 2, 3)],
        (1, "B", "phone", "DE", True, at(ago(10), 9)),
        (1, "B", "laptop", "DE", True, at(ago(10), 10)),
        (1, "C", "laptop", "DE", True, at(ago(20))),
        (1, "C", "phone", "DE", True, at(ago(364))),
        *[(1, "D", "tablet", "DE", True, at(ago(365))) for _ in range(5)],
        (1, "E", "phone", "DE", False, at(D)),  # failed logins do not count
        (2, "Z", "old", "DE", True, at(ago(365))),  # window just emptied: empty lists
    ]
    daily = fx.daily_login_values(spark.createDataFrame(rows, LOGIN_SCHEMA))
    out = by_user(fx.profile_features(daily, [D]))
    # B and C both have 2 logins; B was used more recently (day -10 vs C's latest, day -20).
    assert json.loads(out[1]["common_ips_365d"]) == ["A", "B", "C"]
    assert json.loads(out[1]["common_devices_365d"]) == ["phone", "laptop"]
    assert (
        json.loads(out[2]["common_ips_365d"]) == []
        and json.loads(out[2]["common_devices_365d"]) == []
    )


def test_versioned_rows_carry_event_created_and_run(spark):
    rows = spark.createDataFrame(
        [(1, D, 0, 0)], "user_id long, as_of_day date, failed_logins_1d long, logins_1d long"
    )
    created = dt.datetime(2026, 4, 2, 8, 30, tzinfo=UTC)
    out = fx.versioned(rows, fx.FEATURE_SETS["logins"], created, "run-1").collect()[0]
    assert out["event_ts"] == dt.datetime(
        2026, 4, 1, 0, 0
    )  # collected as naive UTC (session tz UTC)
    assert out["created_ts"] == dt.datetime(2026, 4, 2, 8, 30)
    assert out["run_id"] == "run-1"


def test_definition_hash_changes_with_the_definition(monkeypatch):
    hashes = {name: fs.definition_hash() for name, fs in fx.FEATURE_SETS.items()}
    assert len(set(hashes.values())) == len(hashes)
    monkeypatch.setattr(fx, "TOP_N", fx.TOP_N + 2)
    assert fx.FEATURE_SETS["profile"].definition_hash() != hashes["profile"]
    assert fx.FEATURE_SETS["logins"].definition_hash() == hashes["logins"]


@pytest.mark.parametrize("name", sorted(fx.FEATURE_SETS))
def test_compute_returns_exactly_the_declared_columns(spark, name):
    fs = fx.FEATURE_SETS[name]
    empty = {
        "transactions": TXN_SCHEMA,
        "withdrawals": "user_id long, amount decimal(14,2), destination_account string, event_ts timestamp",
        "logins": LOGIN_SCHEMA,
    }[fs.source]
    out = fs.compute(fs.prepare(spark.createDataFrame([], empty)), [D])
    assert out.columns == ["user_id", "as_of_day", *fs.columns]


def test_many_days_in_one_pass_answer_what_each_day_alone_answers(spark):
    """compute(daily, [d1..dn]) read point-in-time equals n one-day computations (each a key
    frame: every user with a value), on consecutive days and with a gap (a resumed chunk)."""
    import random

    rng = random.Random(5)
    rows = [
        (
            u,
            rng.choice(["1.1.1.1", "2.2.2.2", "3.3.3.3"]),
            rng.choice(["p", "q"]),
            "DE",
            rng.random() > 0.2,
            at(ago(rng.randint(0, 60)), rng.randint(0, 23)),
        )
        for u in range(1, 30)
        for _ in range(12)
    ]
    logins = spark.createDataFrame(rows, LOGIN_SCHEMA)
    txns = spark.createDataFrame(
        [
            (
                u,
                rng.choice(["m1", "m2", "m3", "m4"]),
                Decimal(rng.randint(1, 500)),
                "EUR",
                at(ago(rng.randint(0, 45)), rng.randint(0, 23)),
            )
            for u in range(1, 30)
            for _ in range(10)
        ],
        TXN_SCHEMA,
    )
    withdrawals = spark.createDataFrame(
        [
            (
                u,
                Decimal(rng.randint(1, 500)),
                "acct",
                at(ago(rng.randint(0, 12)), rng.randint(0, 23)),
            )
            for u in range(1, 30)
            for _ in range(3)
        ],
        "user_id long, amount decimal(14,2), destination_account string, event_ts timestamp",
    )
    raw = {"logins": logins, "transactions": txns, "withdrawals": withdrawals}
    users = range(1, 31)
    consecutive = [ago(i) for i in range(20, -1, -1)]
    # Checked on the first two days and the last (a one-day computation per day
    # checked is what costs), and on every day of the range with gaps.
    for days, checked in (
        (consecutive, [ago(20), ago(19), ago(0)]),
        ([ago(i) for i in (0, 1, 2, 4, 9)], [ago(i) for i in (0, 1, 2, 4, 9)]),
    ):
        for fs in fx.FEATURE_SETS.values():
            daily = fs.prepare(raw[fs.source]).cache()
            together = fs.compute(daily, days).collect()
            got = answers([together], users, checked, fs.columns)
            for day in checked:
                alone = {r["user_id"]: r for r in fs.compute(daily, [day]).collect()}
                for u in users:
                    row = alone.get(u)
                    want = _empty(fs) if row is None else _values(row, fs.columns)
                    mine = got[u, day] if got[u, day] is not None else _empty(fs)
                    assert mine == want, (fs.name, u, day, mine, want)
            if days is consecutive:  # change-only: fewer rows than users x days with a value
                present = sum(
                    v is not None for v in answers([together], users, days, fs.columns).values()
                )
                assert 0 < len(together) < present, fs.name


def _values(row, columns) -> tuple:
    return tuple(round(row[c], 6) if isinstance(row[c], float) else row[c] for c in columns)


def _empty(fs) -> tuple:
    """A feature set's value when no window holds an event (what no row means)."""
    return tuple("[]" if c in fs.lists else 0 for c in fs.columns)


def answers(versions: list[list], users, days: list[dt.date], columns) -> dict:
    """{(user, day): values} read the point-in-time way: the latest row at or before the day
    (by as-of day, then by version: `versions` oldest first), None when there is none."""
    latest: dict = {}
    for version, rows in enumerate(versions):
        for r in rows:
            values = _values(r, columns)
            latest.setdefault(r["user_id"], []).append((r["as_of_day"], version, values))
    out = {}
    for u in users:
        mine = sorted(latest.get(u, []))
        for day in days:
            before = [v for d, _, v in mine if d <= day]
            out[u, day] = before[-1] if before else None
    return out


def test_change_only_layout_gives_the_daily_layouts_answers(spark):
    """A generated month: at every (user, day), the change rows answer what one row per user and
    day answered (tests/unit/spark/old_layout.py, the earlier transforms), with far fewer rows."""
    from spark_jobs.generate import generate
    from tests.unit.spark import old_layout

    n_users, end = 150, dt.date(2026, 3, 1)
    raw = generate(spark, n_users, 75, end, seed=11)
    month = [end - dt.timedelta(days=i) for i in range(30, 0, -1)]
    users = range(0, n_users + 2)
    for fs in fx.FEATURE_SETS.values():
        prepare_old, compute_old = old_layout.COMPUTE[fs.name]
        new = fs.compute(fs.prepare(raw[fs.source]), month).collect()
        old = compute_old(prepare_old(raw[fs.source]), month).collect()
        got, want = (answers([rows], users, month, fs.columns) for rows in (new, old))
        differ = [key for key in want if got[key] != want[key]]
        assert not differ, (fs.name, differ[:3], [(got[k], want[k]) for k in differ[:3]])
        assert sum(v is not None for v in want.values()) > n_users * 10, fs.name
        assert len(new) < len(old), (fs.name, len(new), len(old))
    # The profile with a 7-day window, from only the events the job reads (one window before
    # the first day): values enter and leave the window inside the month.
    first = month[0]
    read = raw["logins"].where(
        raw["logins"]["event_ts"] >= dt.datetime.combine(first - dt.timedelta(days=7), dt.time())
    )
    new = fx.profile_features(fx.daily_login_values(read), month, window=7).collect()
    daily = old_layout.daily_login_values(read)
    empty = "array<string>"
    old = (
        old_layout.common_values(daily, month, "ip", window=7)
        .withColumnRenamed("values", "ips")
        .join(
            old_layout.common_values(daily, month, "device", window=7).withColumnRenamed(
                "values", "devices"
            ),
            ["user_id", "as_of_day"],
            "full_outer",
        )
        .selectExpr(
            "user_id",
            "as_of_day",
            f"to_json(coalesce(ips, cast(array() as {empty}))) AS common_ips_365d",
            f"to_json(coalesce(devices, cast(array() as {empty}))) AS common_devices_365d",
        )
        .collect()
    )
    columns = fx.FEATURE_SETS["profile"].columns
    got, want = (answers([rows], users, month, columns) for rows in (new, old))
    differ = [key for key in want if got[key] != want[key]]
    assert not differ, (differ[:3], [(got[k], want[k]) for k in differ[:3]])
    assert sum(v == ("[]", "[]") for v in want.values()) > 0  # windows did empty


def test_a_rerun_shadows_every_row_of_the_older_version(spark):
    """A late event can make a day that changed stop changing. The re-run must still write that
    day (its `forced` rows), or the older run's row there would stay the answer."""
    rows = [
        (1, "ip", "d", "DE", True, at(ago(3), 9)),
        (1, "ip", "d", "DE", True, at(ago(3), 10)),  # 2 logins on day -3
        (1, "ip", "d", "DE", True, at(ago(2), 9)),  # 1 on day -2: logins_1d changes 2 -> 1
        (2, "ip", "d", "DE", True, at(ago(5))),
    ]
    late = [(1, "ip", "d", "DE", True, at(ago(2), 11))]  # now 2 on day -2: no change at -2
    fs = fx.FEATURE_SETS["logins"]
    days = [ago(i) for i in range(4, -1, -1)]
    first = fs.compute(fs.prepare(spark.createDataFrame(rows, LOGIN_SCHEMA)), days).collect()
    daily = fs.prepare(spark.createDataFrame(rows + late, LOGIN_SCHEMA))
    each_day = [r for d in days for r in fs.compute(daily, [d]).collect()]
    truth = answers([each_day], [1, 2], days, fs.columns)
    forced = spark.createDataFrame(
        [(r["user_id"], r["as_of_day"]) for r in first], "user_id long, day date"
    )
    rerun = fs.compute(daily, days, forced).collect()
    assert answers([first, rerun], [1, 2], days, fs.columns) == truth
    # The profile's forced rows too: the older run's lists on day -2 are shadowed, also for a
    # user the re-run has no events for any more (user 2's events were all late-deleted).
    profile = fx.FEATURE_SETS["profile"]
    before = profile.compute(profile.prepare(spark.createDataFrame(rows, LOGIN_SCHEMA)), days)
    before = before.collect()
    after_rows = [r for r in rows + late if r[0] != 2]
    after = profile.prepare(spark.createDataFrame(after_rows, LOGIN_SCHEMA))
    shadow = spark.createDataFrame(
        [(r["user_id"], r["as_of_day"]) for r in before], "user_id long, day date"
    )
    each_day = [r for d in days for r in profile.compute(after, [d]).collect()]
    rerun_profile = profile.compute(after, days, shadow).collect()
    assert answers([before, rerun_profile], [1, 2], days, profile.columns) == {
        **answers([each_day], [1, 2], days, profile.columns),
        **{(2, d): ("[]", "[]") for d in days if d >= ago(5)},  # shadowed: now empty
    }
    # Without the forced rows the older run's day -2 row (1 login) would be the answer.
    unforced = fs.compute(daily, days).collect()
    assert answers([first, unforced], [1, 2], days, fs.columns)[1, ago(2)] == (0, 1)
    assert truth[1, ago(2)] == (0, 2)


def test_daily_runs_write_only_what_the_stored_rows_do_not_answer(spark):
    """A backfill, then one-day runs each compared with the answers stored before it: every
    (user, day) answers what one pass over all days answers (no row = empty), and the daily
    runs write fewer rows than their key frames hold."""
    from spark_jobs.generate import generate

    n_users, end = 80, dt.date(2026, 3, 1)
    raw = generate(spark, n_users, 60, end, seed=5)
    days = [end - dt.timedelta(days=i) for i in range(10, 0, -1)]
    backfilled, daily_days = days[:7], days[7:]
    users = range(0, n_users + 2)
    for fs in fx.FEATURE_SETS.values():
        prepared = fs.prepare(raw[fs.source]).cache()
        empty = _empty(fs)

        def norm(table: dict, empty=empty) -> dict:
            return {key: empty if value is None else value for key, value in table.items()}

        truth = norm(answers([fs.compute(prepared, days).collect()], users, days, fs.columns))
        versions = [fs.compute(prepared, backfilled).collect()]
        key_frame_rows = compared_rows = 0
        for day in daily_days:
            before = answers(versions, users, [day - dt.timedelta(days=1)], fs.columns)
            computed = fs.compute(prepared, [day]).cache()
            stored = spark.createDataFrame(
                [(u, *values) for (u, _), values in before.items() if values is not None],
                computed.select("user_id", *fs.columns).schema,
            )
            rows = fx.against_stored(computed, stored, day, fs.columns, fs.lists).collect()
            key_frame_rows += computed.count()
            computed.unpersist()
            compared_rows += len(rows)
            versions.append(rows)
        got = norm(answers(versions, users, days, fs.columns))
        differ = [key for key in truth if got[key] != truth[key]]
        assert not differ, (fs.name, differ[:3], [(got[k], truth[k]) for k in differ[:3]])
        assert compared_rows < key_frame_rows, (fs.name, compared_rows, key_frame_rows)


def test_a_compared_key_frame_empties_stale_values_and_keeps_forced_rows(spark):
    """Stored answers are trusted only as far as they equal the computed value: a stored value
    the events no longer support gets an empty row; an older version's row on the day is still
    shadowed; JSON lists compare as values (TiDB normalises the text)."""
    day = ago(0)
    rows = [
        (1, "10.0.0.1", "d1", "DE", True, at(ago(0), 9)),
        (2, "10.0.0.2", "d2", "DE", True, at(ago(0), 9)),
        (3, "10.0.0.3", "d3", "DE", True, at(ago(0), 9)),
    ]
    profile = fx.FEATURE_SETS["profile"]
    computed = profile.compute(profile.prepare(spark.createDataFrame(rows, LOGIN_SCHEMA)), [day])
    schema = computed.select("user_id", *profile.columns).schema
    stored = spark.createDataFrame(
        [
            (1, '["10.0.0.1"]', '["d1"]'),  # what the day computes: no row
            (2, '[ "10.0.0.2" ]', '["d2"]'),  # the same lists, other text: no row
            (3, '["10.0.0.9"]', '["d3"]'),  # differs: a row
            (4, '["10.0.0.4"]', "[]"),  # no events any more: emptied
            (5, "[]", "[]"),  # already empty: no row
        ],
        schema,
    )
    forced = spark.createDataFrame([(1, day)], "user_id long, day date")
    got = {
        r["user_id"]: (r["as_of_day"], r["common_ips_365d"], r["common_devices_365d"])
        for r in fx.against_stored(computed, stored, day, profile.columns, profile.lists).collect()
    }
    assert got == {
        3: (day, '["10.0.0.3"]', '["d3"]'),
        4: (day, "[]", "[]"),
    }
    shadowed = fx.against_stored(computed, stored, day, profile.columns, profile.lists, forced)
    assert sorted(r["user_id"] for r in shadowed.collect()) == [1, 3, 4]
    # Numbers: a stale count is zeroed, an equal one is not rewritten, other days pass through.
    logins = fx.FEATURE_SETS["logins"]
    two_days = [ago(1), ago(0)]
    computed = logins.compute(logins.prepare(spark.createDataFrame(rows, LOGIN_SCHEMA)), two_days)
    schema = computed.select("user_id", *logins.columns).schema
    stored = spark.createDataFrame([(1, 0, 1), (7, 2, 5)], schema)
    got = sorted(
        (r["user_id"], r["as_of_day"], r["failed_logins_1d"], r["logins_1d"])
        for r in fx.against_stored(computed, stored, ago(1), logins.columns).collect()
    )
    # day -1 (the compared key frame): user 7's stale (2, 5) is emptied; user 1's stored (0, 1)
    # differs from the day's (none): emptied too. Day 0's change rows are kept as they are.
    assert got == [
        (1, ago(1), 0, 0),
        (1, ago(0), 0, 1),
        (2, ago(0), 0, 1),
        (3, ago(0), 0, 1),
        (7, ago(1), 0, 0),
    ]
