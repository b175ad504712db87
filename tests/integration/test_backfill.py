"""The Spark jobs on the real server: generate a history, backfill, check values, version, resume.

Feature values are compared with an independent pandas computation over the raw events read with
plain SQL. Re-running a range after late events appends a version; `as_of` the first run rebuilds
the first values exactly. A run that dies between a write and its bookkeeping resumes without
duplicating rows.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.utils.jobs import jobs_environment
from tests.utils.tables import rows

ROOT = Path(__file__).resolve().parents[2]
END = dt.date(2026, 3, 1)  # history ends before this day
START, LAST = dt.date(2026, 2, 10), dt.date(2026, 2, 16)  # the backfilled as-of days
N_USERS, N_DAYS = 150, 45


@pytest.fixture
def jobs_env(mariadb, database, redis_connection_string, monkeypatch):
    jobs_environment(mariadb, database, redis_connection_string, monkeypatch)
    from spark_jobs import generate

    assert (
        generate.main(["--users", str(N_USERS), "--days", str(N_DAYS), "--end", END.isoformat()])
        == 0
    )
    return database


def backfill(*extra: str) -> int:
    from spark_jobs import backfill as job

    return job.main(
        ["--start", START.isoformat(), "--end", LAST.isoformat(), "--no-progress", *extra]
    )


def frame(db, sql: str) -> pd.DataFrame:
    with db.cursor() as cur:
        cur.execute(sql)
        return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])


def expected_transactions(db, first: dt.date = START, last: dt.date = LAST) -> pd.DataFrame:
    """1/7/30-day transaction features per user and as-of day, computed here with pandas."""
    txns = frame(
        db,
        "SELECT user_id, merchant_id, CAST(amount AS DOUBLE) AS amount, event_ts FROM transactions",
    )
    txns["day"] = txns["event_ts"].dt.date
    out = []
    for day in pd.date_range(first, last).date:
        age = txns["day"].map(lambda d, day=day: (day - d).days)
        window = txns[(age >= 0) & (age <= 30)].assign(age=age)
        for user, g in window.groupby("user_id"):
            row = {"user_id": user, "event_ts": pd.Timestamp(day) + pd.Timedelta(days=1)}
            for w in (1, 7, 30):
                inside = g[g["age"] < w]
                row |= {
                    f"txn_count_{w}d": len(inside),
                    f"txn_sum_{w}d": inside["amount"].sum(),
                    f"txn_merchants_{w}d": inside["merchant_id"].nunique(),
                }
            out.append(row)
    return pd.DataFrame(out)


TXN_COLUMNS = [f"txn_{m}_{w}d" for w in (1, 7, 30) for m in ("count", "sum", "merchants")]
LOGIN_COLUMNS = ["failed_logins_1d", "logins_1d"]
WITHDRAWAL_COLUMNS = [f"withdrawal_{m}_{w}d" for w in (1, 7) for m in ("count", "sum")]


def answers(
    db, table: str, columns: list[str], first: dt.date = START, last: dt.date = LAST
) -> pd.DataFrame:
    """Per (user_id, event_ts) of every user with a row and every as-of instant of the range: the
    latest stored row at or before it (newest version first), the point-in-time answer."""
    stored = frame(db, f"SELECT user_id, event_ts, created_ts, {', '.join(columns)} FROM {table}")
    stored = stored.sort_values(["user_id", "event_ts", "created_ts"])
    stored = stored.drop_duplicates(["user_id", "event_ts"], keep="last")
    out = []
    for day in pd.date_range(first, last).date:
        hi = pd.Timestamp(day) + pd.Timedelta(days=1)
        latest = stored[stored["event_ts"] <= hi].drop_duplicates("user_id", keep="last")
        out.append(latest.assign(event_ts=hi))
    return pd.concat(out).set_index(["user_id", "event_ts"])[columns]


def compare(got: pd.DataFrame, want: pd.DataFrame, columns: list[str]) -> None:
    """Equal where `want` has a row; where it has none (no events in any window) the answer is
    no row or zeros (the row written the day a window emptied)."""
    assert set(want.index) <= set(got.index)
    for col in columns:
        if "_sum_" in col:
            assert got.loc[want.index, col].to_numpy() == pytest.approx(want[col].to_numpy()), col
        else:
            assert got.loc[want.index, col].tolist() == want[col].tolist(), col
    rest = got.drop(index=want.index)
    assert (rest[columns] == 0).all().all(), rest[(rest[columns] != 0).any(axis=1)].head()


def test_backfill_values_versions_and_as_of(
    jobs_env, db, store_config, redis_connection_string, tmp_path
):
    assert rows(db, "SELECT COUNT(*) FROM labels WHERE label = 'account_takeover'")[0][0] >= 1
    assert backfill() == 0
    first_done = dt.datetime.now(dt.UTC)
    runs_ = frame(db, "SELECT * FROM feature_runs")
    assert runs_["status"].tolist() == ["succeeded"] and runs_[
        "definition_hash"
    ].str.len().tolist() == [16]
    assert runs_["code_version"].iloc[0] != "" and json.loads(runs_["parameters"].iloc[0])[
        "start"
    ] == str(START)
    assert rows(db, "SELECT COUNT(*) FROM feature_run_partitions")[0][0] == 4 * 7
    assert int(rows(db, "SELECT SUM(rows_written) FROM feature_run_partitions")[0][0]) == int(
        runs_["rows_written"].iloc[0]
    )

    # 1. Values equal an independent computation at every user and day of the range, read the
    # point-in-time way (the latest row at or before the day): rows are stored only on change.
    got = answers(db, "user_transaction_features", TXN_COLUMNS)
    want = expected_transactions(db)
    assert len(want) > N_USERS * 3
    compare(got, want.set_index(["user_id", "event_ts"]), TXN_COLUMNS)
    stored = rows(db, "SELECT COUNT(*) FROM user_transaction_features")[0][0]
    assert 0 < stored < len(want)  # change-only: fewer rows than (user, day) with a value
    # Logins (1 day) and withdrawals (1 and 7 days), every day.
    logins = frame(db, "SELECT user_id, success, event_ts FROM logins")
    withdrawals = frame(
        db, "SELECT user_id, CAST(amount AS DOUBLE) AS amount, event_ts FROM withdrawals"
    )
    want_logins, want_withdrawals = [], []
    for day in pd.date_range(START, LAST).date:
        hi = pd.Timestamp(day) + pd.Timedelta(days=1)
        today = logins[
            (logins["event_ts"] >= hi - pd.Timedelta(days=1)) & (logins["event_ts"] < hi)
        ]
        for user, g in today.groupby("user_id"):
            want_logins.append(
                {
                    "user_id": user,
                    "event_ts": hi,
                    "failed_logins_1d": int((g["success"] == 0).sum()),
                    "logins_1d": len(g),
                }
            )
        for user, g in withdrawals[
            (withdrawals["event_ts"] >= hi - pd.Timedelta(days=7)) & (withdrawals["event_ts"] < hi)
        ].groupby("user_id"):
            row = {"user_id": user, "event_ts": hi}
            for w in (1, 7):
                inside = g[g["event_ts"] >= hi - pd.Timedelta(days=w)]["amount"]
                row |= {f"withdrawal_count_{w}d": len(inside), f"withdrawal_sum_{w}d": inside.sum()}
            want_withdrawals.append(row)
    compare(
        answers(db, "user_login_features", LOGIN_COLUMNS),
        pd.DataFrame(want_logins).set_index(["user_id", "event_ts"]),
        LOGIN_COLUMNS,
    )
    compare(
        answers(db, "user_withdrawal_features", WITHDRAWAL_COLUMNS),
        pd.DataFrame(want_withdrawals).set_index(["user_id", "event_ts"]),
        WITHDRAWAL_COLUMNS,
    )
    profile = frame(
        db,
        "SELECT common_ips_365d FROM user_profile_features WHERE user_id = 1 "
        "AND event_ts <= '2026-02-17' ORDER BY event_ts DESC LIMIT 1",
    )
    ips = frame(
        db,
        "SELECT ip, COUNT(*) AS n, MAX(event_ts) AS last FROM logins WHERE user_id = 1 AND success "
        "AND event_ts < '2026-02-17' GROUP BY ip ORDER BY n DESC, last DESC, ip LIMIT 3",
    )
    assert json.loads(profile["common_ips_365d"].iloc[0]) == ips["ip"].tolist()

    # 2. A late transaction arrives; the re-run appends a new version, the old one stays.
    time.sleep(0.01)
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO transactions VALUES (999999999, 7, 'late', 1000.00, 'EUR', '2026-02-12 10:00:00')"
        )
    assert backfill("--features", "transactions") == 0
    second = frame(
        db,
        "SELECT t.event_ts, t.txn_count_1d, r.started_at FROM user_transaction_features t "
        "JOIN feature_runs r ON r.run_id = t.run_id WHERE t.user_id = 7 ORDER BY r.started_at",
    )
    assert second["started_at"].nunique() == 2  # the first version's rows stay
    assert pd.Timestamp("2026-02-13") in set(
        second[second["started_at"] == second["started_at"].max()]["event_ts"]
    )
    assert rows(db, "SELECT COUNT(*) FROM feature_runs WHERE status = 'succeeded'")[0][0] == 2

    # 3. Through Feast: as_of the first run gives the first values exactly, the default the latest.
    sys.path.insert(0, str(ROOT / "feature_repo"))
    try:
        import batch_features
        import entities
    finally:
        sys.path.remove(str(ROOT / "feature_repo"))
    from feast import FeatureStore
    from feast.repo_config import RegistryConfig, RepoConfig

    from providers.tidb import as_of

    store = FeatureStore(
        config=RepoConfig(
            project="backfill_test",
            provider="local",
            registry=RegistryConfig(path=str(tmp_path / "r.db")),
            offline_store=store_config,
            online_store={"type": "redis", "connection_string": redis_connection_string},
            entity_key_serialization_version=3,
            repo_path=tmp_path,
        )
    )
    store.apply([entities.user, batch_features.user_transactions])
    entity_df = pd.DataFrame(
        {
            "user_id": list(range(1, N_USERS + 1)),
            "event_timestamp": pd.Timestamp("2026-02-13 09:00", tz="UTC"),
        }
    )
    feats = [
        f"user_transactions:{c}"
        for c in ("txn_count_1d", "txn_sum_1d", "txn_count_30d", "txn_sum_30d")
    ]
    with as_of(first_done):
        rebuilt = store.get_historical_features(entity_df=entity_df, features=feats).to_df()
    latest = store.get_historical_features(entity_df=entity_df, features=feats).to_df()
    first = want[want["event_ts"] == pd.Timestamp("2026-02-13")].set_index("user_id")
    rebuilt = rebuilt.set_index("user_id")
    assert rebuilt.loc[first.index, "txn_count_30d"].tolist() == first["txn_count_30d"].tolist()
    assert rebuilt.loc[first.index, "txn_sum_30d"].to_numpy() == pytest.approx(
        first["txn_sum_30d"].to_numpy()
    )
    user7 = latest.set_index("user_id").loc[7]
    assert user7["txn_count_1d"] == first.loc[7, "txn_count_1d"] + 1
    assert user7["txn_sum_1d"] == pytest.approx(first.loc[7, "txn_sum_1d"] + 1000.0)
    others = latest.set_index("user_id").drop(index=7)
    assert others["txn_count_30d"].tolist() == rebuilt.drop(index=7)["txn_count_30d"].tolist()

    # 4. With --compare-stored, the next day's run writes only what the stored rows (both runs')
    # do not answer.
    from spark_jobs import backfill as job

    day = LAST + dt.timedelta(days=1)
    daily = [
        "--start",
        day.isoformat(),
        "--end",
        day.isoformat(),
        "--no-progress",
        "--compare-stored",
    ]
    assert job.main([*daily, "--features", "transactions,profile"]) == 0
    want = expected_transactions(db, day, day).set_index(["user_id", "event_ts"])
    compare(answers(db, "user_transaction_features", TXN_COLUMNS, day, day), want, TXN_COLUMNS)
    written = rows(
        db,
        "SELECT COUNT(*) FROM user_transaction_features WHERE event_ts = %s",
        (day + dt.timedelta(days=1),),
    )[0][0]
    assert 0 < written < len(want), (written, len(want))  # a key frame: one per user with a value
    for user in (1, 2, 3):
        stored = frame(
            db,
            "SELECT common_ips_365d FROM user_profile_features WHERE user_id = "
            f"{user} ORDER BY event_ts DESC, created_ts DESC LIMIT 1",
        )
        ips = frame(
            db,
            f"SELECT ip, COUNT(*) AS n, MAX(event_ts) AS last FROM logins WHERE user_id = {user} "
            f"AND success AND event_ts < '{day + dt.timedelta(days=1)}' GROUP BY ip "
            "ORDER BY n DESC, last DESC, ip LIMIT 3",
        )
        assert json.loads(stored["common_ips_365d"].iloc[0]) == ips["ip"].tolist(), user


@pytest.fixture
def local_infile_off(db):
    """The server refuses LOAD DATA LOCAL INFILE (this test's server only: one per worker)."""
    with db.cursor() as cur:
        cur.execute("SET GLOBAL local_infile = 0")
    yield
    with db.cursor() as cur:
        cur.execute("SET GLOBAL local_infile = 1")


def test_an_interrupted_backfill_resumes_without_duplicates(
    jobs_env, db, monkeypatch, local_infile_off, capfd
):
    """Also on a server that refuses LOCAL INFILE: the writes fall back to INSERTs, with a warning."""
    from spark_jobs import jdbc

    real_write, calls = jdbc.write_rows, []

    def write_then_die(df, db_, table):
        real_write(df, db_, table)
        calls.append(table)
        if len(calls) == 2:  # the second chunk is written, then the job dies before recording it
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(jdbc, "write_rows", write_then_die)
    with pytest.raises(RuntimeError, match="simulated crash"):
        backfill("--chunk-days", "4", "--features", "transactions,logins")
    run = frame(db, "SELECT run_id, status FROM feature_runs")
    assert run["status"].tolist() == ["failed"]
    assert (
        rows(db, "SELECT COUNT(*) FROM feature_run_partitions")[0][0] == 4
    )  # only the first chunk

    assert "refuses LOAD DATA LOCAL INFILE" in capfd.readouterr().err
    monkeypatch.setattr(jdbc, "write_rows", real_write)
    assert backfill("--chunk-days", "4", "--features", "transactions,logins") == 0
    after = frame(db, "SELECT run_id, status FROM feature_runs")
    assert after["run_id"].tolist() == run["run_id"].tolist() and after["status"].tolist() == [
        "succeeded"
    ]
    assert rows(db, "SELECT COUNT(*) FROM feature_run_partitions")[0][0] == 2 * 7
    for table in ("user_transaction_features", "user_login_features"):
        dupes = rows(
            db,
            f"SELECT COUNT(*) FROM (SELECT user_id, event_ts FROM {table} "
            "GROUP BY user_id, event_ts HAVING COUNT(*) > 1) d",
        )[0][0]
        assert dupes == 0, table
    recorded = int(rows(db, "SELECT SUM(rows_written) FROM feature_run_partitions")[0][0])
    stored = sum(
        rows(db, f"SELECT COUNT(*) FROM {t}")[0][0]
        for t in ("user_transaction_features", "user_login_features")
    )
    assert recorded == stored
    # Values across the chunk boundary (a key frame on the 5th day) and the resume are right.
    want = expected_transactions(db).set_index(["user_id", "event_ts"])
    compare(answers(db, "user_transaction_features", TXN_COLUMNS), want, TXN_COLUMNS)


def test_backfill_rejects_bad_flags(capsys):
    from spark_jobs import backfill as job

    for argv, message in [
        (["--start", "2026-02-10", "--end", "2026-02-01"], "before --start"),
        (["--start", "last-week", "--end", "2026-02-01"], "not a date"),
        (
            ["--start", "2026-02-01", "--end", "2026-02-02", "--features", "nope"],
            "unknown feature set",
        ),
        (["--start", "2026-02-01", "--end", "2026-02-02", "--conf", "novalue"], "KEY=VALUE"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            job.parse_args(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
