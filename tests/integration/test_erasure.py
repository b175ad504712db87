"""Subject erasure on real services (MariaDB, Redis online store and broker, Spark local, Feast).

A generated history is backfilled (batch and velocity), applied, materialized, and a saved
dataset, a dead letter and broker entries name the subject. Erasing it removes every row and key;
a failed erasure completes when run again; a late event, a re-run backfill, a velocity backfill
and a materialization afterwards bring nothing of it back; every other user's values are the same
as before; `as_of` a time before the erasure refuses or marks the gap. The stream job's side
(late events, window state) is in test_velocity_stream.py; serving's in test_serving.py.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading

import pandas as pd
import pytest
import redis as redis_client

from devstack import Redis
from tests.utils.jobs import feast, jobs_environment
from tests.utils.tables import rows

END = dt.date(2026, 3, 1)
START, LAST = "2026-02-24", "2026-02-28"
BATCH = {
    "user_transaction_features": "txn_count_30d",
    "user_login_features": "logins_1d",
    "user_withdrawal_features": "withdrawal_count_7d",
    "user_profile_features": "common_ips_365d",
}


@pytest.fixture
def broker(tmp_path):
    server = Redis(tmp_path / "broker").start()
    yield server
    server.stop()


class Roles:
    """Each step runs with its role's account (providers/tidb/roles.py), as a deployment does:
    the grants are what this whole test needs."""

    def __init__(self, env: dict[str, str], accounts: dict, monkeypatch):
        self.env, self.accounts, self.monkeypatch = env, accounts, monkeypatch

    def use(self, role: str) -> dict[str, str]:
        """Switch this process to `role`; the environment for a subprocess of that role."""
        for key, value in self.accounts[role].items():
            self.monkeypatch.setenv(key, value)
        return {**self.env, **self.accounts[role]}

    def store(self, role: str):
        from feast import FeatureStore

        from tests.utils.jobs import ROOT

        self.use(role)
        return FeatureStore(repo_path=str(ROOT / "feature_repo"))


@pytest.fixture
def history(mariadb, database, redis_connection_string, broker, monkeypatch):
    from spark_jobs import backfill, generate, velocity_backfill

    env = jobs_environment(mariadb, database, redis_connection_string, monkeypatch)
    env["BROKER_URL"] = broker.url
    monkeypatch.setenv("BROKER_URL", broker.url)
    roles = Roles(env, mariadb.create_roles(database), monkeypatch)
    roles.use("writer")
    assert generate.main(["--users", "60", "--days", "35", "--end", END.isoformat()]) == 0
    assert backfill.main(["--start", START, "--end", LAST, "--no-progress"]) == 0
    feast(roles.use("registry"), "apply")
    roles.use("writer")
    assert velocity_backfill.main(["--start", LAST, "--end", LAST]) == 0
    feast(roles.use("registry"), "materialize-incremental", "2026-03-02T00:00:00")
    return roles


def frame(db, sql: str, params=None) -> pd.DataFrame:
    with db.cursor() as cur:
        cur.execute(sql, params)
        return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])


def latest(db, table: str, column: str) -> pd.DataFrame:
    """Each user's newest value (newest event time, then newest version), by user."""
    out = frame(db, f"SELECT user_id, event_ts, created_ts, {column} FROM {table}")
    out = out.sort_values(["user_id", "event_ts", "created_ts"]).drop_duplicates(
        "user_id", keep="last"
    )
    return out.set_index("user_id")[[column]]


def counts_of(db, user: int) -> dict[str, int]:
    """Rows naming `user`, per table with a user_id column (the tombstones aside)."""
    tables = [
        t
        for (t,) in rows(
            db,
            "SELECT TABLE_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() "
            "AND COLUMN_NAME = 'user_id' AND TABLE_NAME <> 'subject_tombstones'",
        )
    ]
    found = {
        t: rows(db, f"SELECT COUNT(*) FROM `{t}` WHERE user_id = %s", (user,))[0][0] for t in tables
    }
    return {t: n for t, n in found.items() if n}


def online_values(store, users: list[int]) -> pd.DataFrame:
    features = [
        "user_transactions:txn_count_30d",
        "user_logins:logins_1d",
        "user_login_velocity:failed_logins_10m",
    ]
    return store.get_online_features(
        features=features, entity_rows=[{"user_id": u} for u in users]
    ).to_df()


def test_an_erased_subject_is_gone_everywhere_and_stays_gone(
    history, db, store_config, redis_server, broker
):

    from pipelines import erase
    from providers import erasure
    from providers.erasure import subject_of
    from providers.events import KINDS, MESSAGE_FIELD, encode
    from providers.tidb import ErasedSinceAsOf, as_of
    from providers.tidb.source import SavedDatasetTiDBStorage
    from spark_jobs import backfill, replay, velocity_backfill

    store = history.store("reader")  # training's reads (and the saved dataset's table)
    writer = history.store("writer")  # the erasure's
    scratch = store.config.offline_store.scratch_database  # saved datasets live there
    saved = f"{scratch}.training_erasure_check"
    # The subject: the user with the most transactions; the others must not change.
    subject = int(
        rows(
            db, "SELECT user_id FROM transactions GROUP BY user_id ORDER BY COUNT(*) DESC LIMIT 1"
        )[0][0]
    )
    others = [u for (u,) in rows(db, "SELECT DISTINCT user_id FROM logins") if u != subject]
    before = {t: latest(db, t, c).drop(index=subject) for t, c in BATCH.items()}
    online_before = online_values(store, others)
    stored_at = dt.datetime.now(dt.UTC)

    # Where else it lives: a saved dataset, a dead letter, the broker.
    entity_df = pd.DataFrame(
        {
            "user_id": [subject, others[0]],
            "event_timestamp": [pd.Timestamp("2026-02-27", tz="UTC")] * 2,
        }
    )
    store.get_historical_features(
        entity_df=entity_df, features=["user_transactions:txn_count_30d"]
    ).persist(SavedDatasetTiDBStorage(saved))
    with db.cursor() as cur:
        for n, user in enumerate((subject, others[0])):
            cur.execute(
                "INSERT INTO dead_letter_events VALUES (%s, %s, %s, 'bad', NOW(6))",
                ("events.login", f"1-{n}", json.dumps({"user_id": user, "ip": None})),
            )
    producer = redis_client.Redis.from_url(broker.url)
    now = dt.datetime.now(dt.UTC)
    for n, user in enumerate((subject, subject, others[0])):
        event = KINDS["login"].model(
            event_id=8_000_000_000 + n,
            user_id=user,
            event_ts=now,
            ip="203.0.113.1",
            device_id="d",
            country="DE",
            success=False,
        )
        producer.xadd("events.login", {MESSAGE_FIELD: encode(event)})
    held = counts_of(db, subject)
    assert {
        "logins",
        "transactions",
        "user_transaction_features",
        "velocity_transaction",
    } <= set(held), held
    assert rows(db, f"SELECT COUNT(*) FROM {saved} WHERE user_id = %s", (subject,)) == [(1,)]
    online = redis_client.Redis.from_url(redis_server.url)
    key = erase.online_key(store, subject)
    assert online.exists(key)

    # 1. A failed erasure (the broker is unreachable) leaves the tombstone; the re-run completes.
    with pytest.raises(redis_client.ConnectionError):
        erase.erase(writer, subject, "dpo@example.com", "ticket 1", "redis://127.0.0.1:1/0")
    audit = frame(db, "SELECT * FROM erasure_audit ORDER BY started_at")
    assert audit.status.tolist() == ["failed"]
    assert rows(db, "SELECT COUNT(*) FROM subject_tombstones WHERE user_id = %s", (subject,)) == [
        (1,)
    ]

    # A writer whose batch was in flight writes a row after the first sweep: the second finds it.
    def in_flight() -> None:
        from providers.tidb.connection import connect

        with connect(store_config) as late, late.cursor() as cur:
            cur.execute(
                "INSERT INTO login_push_events (user_id, event_ts) VALUES (%s, NOW(6))", (subject,)
            )

    writer_thread = threading.Timer(1.0, in_flight)
    writer_thread.start()
    done = erase.erase(
        writer, subject, "dpo@example.com", "ticket 1", broker.url, settle_seconds=3.0
    )
    writer_thread.join()
    assert done.status == "completed"
    # The rest went in the failed run; the in-flight row in the second sweep.
    assert done.erased == {"broker:events.login": 2, "again:tidb:login_push_events": 1}

    # 2. Nothing of it anywhere; the audit says what, when and by whom, never the key.
    assert counts_of(db, subject) == {}
    assert rows(db, f"SELECT COUNT(*) FROM {saved} WHERE user_id = %s", (subject,)) == [(0,)]
    assert rows(db, f"SELECT COUNT(*) FROM {saved}") == [(1,)]  # the other user's row stays
    assert rows(db, "SELECT COUNT(*) FROM dead_letter_events") == [(1,)]  # the other user's
    assert not online.exists(key)
    left = producer.xrange("events.login")
    assert len(left) == 1 and json.loads(left[0][1][MESSAGE_FIELD])["user_id"] == others[0]
    audit = frame(db, "SELECT * FROM erasure_audit ORDER BY started_at")
    assert audit.status.tolist() == ["failed", "completed"]
    assert audit.requested_by.tolist() == ["dpo@example.com"] * 2
    assert "user_id" not in audit.columns and "Error" in audit.error[0]
    texts = [audit.requested_by, audit.reason, audit.error.fillna("")]
    assert not any(re.search(rf"\b{subject}\b", t) for col in texts for t in col)
    partial = json.loads(audit.erased[0])  # the failed run's record counts what it removed
    assert partial["tidb:dead_letter_events"] == 1 and partial["redis:online"] == 1
    assert partial["tidb:transactions"] == held["transactions"]
    assert partial[f"tidb:{saved}"] == 1  # the scratch database's saved dataset too
    assert erasure.erased_among(online, store.project, [subject, others[0]]) == {subject}

    # 3. A late event slips into the raw table, and a pushed row into a push source's table
    # (written around the platform); backfills, velocity backfill and materialization run again:
    # none of them brings the subject back.
    with db.cursor() as cur:
        cur.execute(
            "INSERT INTO logins (login_id, user_id, ip, device_id, country, success, event_ts) "
            "VALUES (8100000000, %s, '203.0.113.2', 'd', 'DE', 0, '2026-02-28 12:00:00')",
            (subject,),
        )
        cur.execute(
            "INSERT INTO login_push_events (user_id, last_login_ip, event_ts) "
            "VALUES (%s, '203.0.113.2', '2026-02-28 12:00:00')",
            (subject,),
        )
    # The online Redis restarts empty: the mirror of the tombstones is gone with it, and the
    # checks refuse to answer until a materialization (below) writes it again from TiDB.
    online.delete(erasure.erased_set_key(store.project), erasure.erased_version_key(store.project))
    with pytest.raises(erasure.MirrorMissing):
        erasure.erased_among(online, store.project, [subject])
    history.use("writer")
    assert backfill.main(["--start", START, "--end", LAST, "--no-progress", "--new-run"]) == 0
    assert velocity_backfill.main(["--start", LAST, "--end", LAST]) == 0
    feast(history.use("registry"), "materialize", "2026-02-01T00:00:00", "2026-03-02T00:00:00")
    assert set(counts_of(db, subject)) == {"logins", "login_push_events"}  # the slipped-in rows
    assert not online.exists(key)
    assert erasure.erased_among(online, store.project, [subject, others[0]]) == {subject}
    # A replay of the day from the raw tables onto the broker skips the subject's event.
    history.use("writer")
    replayed = replay.run(
        replay.parse_args(
            ["--start", LAST, "--end", END.isoformat(), "--broker", broker.url, "--kinds", "login"]
        )
    )
    on_broker = [subject_of(fields[MESSAGE_FIELD]) for _, fields in producer.xrange("events.login")]
    assert replayed > 0 and subject not in on_broker and len(set(on_broker)) > 1

    # 4. Every other user's values are what they were.
    for table, column in BATCH.items():
        pd.testing.assert_frame_equal(latest(db, table, column), before[table], check_like=True)
    pd.testing.assert_frame_equal(online_values(store, others), online_before)

    # 5. Pinned before the erasure: refused with the subject, marked without it.
    with as_of(stored_at):
        with pytest.raises(ErasedSinceAsOf, match="1 subject"):
            store.get_historical_features(
                entity_df=entity_df, features=["user_transactions:txn_count_30d"]
            )
        job = store.get_historical_features(
            entity_df=entity_df[entity_df.user_id != subject],
            features=["user_transactions:txn_count_30d"],
        )
        assert job.erased_since_as_of == 1
    with as_of(dt.datetime.now(dt.UTC)):
        assert (
            store.get_historical_features(
                entity_df=entity_df, features=["user_transactions:txn_count_30d"]
            ).erased_since_as_of
            == 0
        )


def test_an_unknown_subject_is_a_no_op_and_bad_flags_say_what_to_fix(history, db, capsys):
    from pipelines import erase

    history.use("writer")
    assert (
        erase.main(["--user-id", "999999999", "--requested-by", "dpo", "--reason", "ticket 2"]) == 0
    )
    assert "nothing is stored for this subject" in capsys.readouterr().out
    assert rows(db, "SELECT COUNT(*) FROM subject_tombstones") == [(0,)]
    assert rows(db, "SELECT status FROM erasure_audit") == [("nothing_stored",)]
    for argv, message in [
        (["--user-id", "abc", "--requested-by", "x", "--reason", "y"], "not an integer"),
        (["--user-id", "0", "--requested-by", "x", "--reason", "y"], "outside user ids"),
        (["--user-id", "5"], "--requested-by and --reason are required"),
        (["--user-id", "5", "--requested-by", " ", "--reason", "y"], "1 to 128 characters"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            erase.main(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
