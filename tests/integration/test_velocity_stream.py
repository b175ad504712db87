"""The velocity stream on real services: a generated day replayed through the broker, the stream
job (a subprocess, Spark local[2], RocksDB state) against the backfill over the same raw events.

- The stream's values equal the backfill's at >= 1,000 (user, instant) points older than its lag,
  and Feast's point-in-time retrieval (training) returns the same; Redis holds each key's latest.
- Every event on the broker lands in the raw tables (and only those), late ones included.
- Killed mid-stream with SIGKILL and restarted from its checkpoint: nothing lost or counted twice.
- Redis down while it runs: the job retries from its checkpoint and catches up.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import redis as redis_client

from devstack import Redis, feast_redis_connection_string
from tests.utils.jobs import ROOT, feast, jobs_environment
from tests.utils.tables import create_database, drop_database

DAY = dt.date(2026, 3, 1)
WATERMARK_S = 10
VIEWS = {
    "user_login_velocity": "velocity_login",
    "user_transaction_velocity": "velocity_transaction",
    "user_withdrawal_velocity": "velocity_withdrawal",
}


@pytest.fixture(scope="module")
def stack(mariadb, tmp_path_factory):
    """One generated day on the broker (out of order within 3 s); raw tables empty: only the
    stream's landing fills them."""
    from spark_jobs import generate, replay

    online = Redis(tmp_path_factory.mktemp("velocity-redis")).start()
    broker = Redis(tmp_path_factory.mktemp("velocity-broker"), durable=True).start()
    database, admin = create_database(mariadb)
    try:
        with pytest.MonkeyPatch.context() as mp:
            env = jobs_environment(mariadb, database, feast_redis_connection_string(online.url), mp)
            env["BROKER_URL"] = broker.url
            mp.setenv("BROKER_URL", broker.url)
            end = DAY + dt.timedelta(days=1)
            assert generate.main(["--users", "1500", "--days", "1", "--end", end.isoformat()]) == 0
            feast(env, "apply")
            args = replay.parse_args(
                [
                    "--start",
                    DAY.isoformat(),
                    "--end",
                    end.isoformat(),
                    "--disorder-seconds",
                    "3",
                    "--broker",
                    broker.url,
                ]
            )
            sent = replay.run(args)
            _truncate_raw(admin, database)
            yield {
                "env": env,
                "online": online,
                "broker": broker,
                "database": database,
                "admin": admin,
                "sent": sent,
            }
    finally:
        online.stop()
        broker.stop()
        drop_database(admin, database)


def _truncate_raw(admin, database: str) -> None:
    with admin.cursor() as cur:
        for table in ("logins", "transactions", "withdrawals"):
            cur.execute(f"TRUNCATE TABLE `{database}`.`{table}`")


def query(stack, sql: str, params=None) -> pd.DataFrame:
    import warnings

    import pymysql

    admin = stack["admin"]
    conn = pymysql.connect(
        host=admin.host,
        port=admin.port,
        user=admin.user.decode() if isinstance(admin.user, bytes) else admin.user,
        password=admin.password.decode() if isinstance(admin.password, bytes) else admin.password,
        database=stack["database"],
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pandas prefers SQLAlchemy
            return pd.read_sql(sql, conn, params=params)
    finally:
        conn.close()


def stream_command(checkpoint: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "spark_jobs.stream",
        "--checkpoint",
        str(checkpoint),
        "--master",
        "local[2]",
        "--watermark-seconds",
        str(WATERMARK_S),
        "--stop-when-idle",
        "2",
        *extra,
    ]


def run_stream(
    stack, checkpoint: Path, *extra: str, timeout: float = 300, env: dict | None = None
) -> dict:
    result = subprocess.run(
        stream_command(checkpoint, "--trigger-seconds", "0.5", *extra),
        env=env or stack["env"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def stream_run_id(checkpoint: Path) -> str:
    return (checkpoint / "run_id").read_text().strip()


@pytest.fixture(scope="module")
def main_run(stack, tmp_path_factory):
    """The stream over the whole day, run to its end once."""
    checkpoint = tmp_path_factory.mktemp("ckpt-main")
    totals = run_stream(stack, checkpoint)
    return {"checkpoint": checkpoint, "run_id": stream_run_id(checkpoint), "totals": totals}


@pytest.fixture(scope="module")
def backfill_run(stack, main_run):
    """The velocity backfill over the raw events the stream landed."""
    from spark_jobs import velocity_backfill

    assert velocity_backfill.main(["--start", DAY.isoformat(), "--end", DAY.isoformat()]) == 0
    found = query(
        stack,
        "SELECT run_id FROM feature_runs WHERE job = 'velocity_backfill' "
        "ORDER BY started_at DESC LIMIT 1",
    )
    return found.run_id[0]


def latest_versions(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (user, change point): its latest version."""
    ordered = frame.sort_values(["user_id", "event_ts", "created_ts"])
    return ordered.drop_duplicates(["user_id", "event_ts"], keep="last")


def values_at(rows_: pd.DataFrame, points: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Each point's value: the latest row at or before its instant (a point-in-time join)."""
    joined = pd.merge_asof(
        points.sort_values("t"),
        rows_.sort_values("event_ts")[["user_id", "event_ts", *features]],
        left_on="t",
        right_on="event_ts",
        by="user_id",
        direction="backward",
    )
    return joined.sort_values(["user_id", "t"]).reset_index(drop=True)[["user_id", "t", *features]]


def features_of(table: pd.DataFrame) -> list[str]:
    return [
        c
        for c in table.columns
        if c not in {"user_id", "event_ts", "created_ts", "run_id", "commit_id"}
    ]


def horizon(stack) -> pd.Timestamp:
    """What the stream vouches for: instants up to its final watermark (latest event - delay)."""
    latest = max(
        query(stack, f"SELECT MAX(event_ts) AS m FROM {t}").m[0]
        for t in ("logins", "transactions", "withdrawals")
    )
    return pd.Timestamp(latest) - pd.Timedelta(seconds=WATERMARK_S)


def random_points(rng, back: pd.DataFrame, until: pd.Timestamp, n: int) -> pd.DataFrame:
    """Half at the backfill's own change points (where an off-by-one shows), half uniform."""
    eligible = back[back.event_ts <= until]
    exact = eligible.sample(n // 2, random_state=int(rng.integers(1 << 30)), replace=True)
    users = rng.choice(back.user_id.unique(), n - n // 2)
    start = pd.Timestamp(DAY)
    span = (until - start).total_seconds()
    uniform = pd.DataFrame(
        {
            "user_id": users,
            "t": [
                (start + pd.Timedelta(seconds=float(s))).floor("us")
                for s in rng.uniform(0, span, len(users))
            ],
        }
    )
    return pd.concat(
        [exact[["user_id", "event_ts"]].rename(columns={"event_ts": "t"}), uniform],
        ignore_index=True,
    )


def test_stream_equals_the_backfill_at_random_instants_older_than_its_lag(
    stack, main_run, backfill_run
):
    totals = main_run["totals"]
    assert totals["events"] == stack["sent"] > 1500, totals
    assert totals["late_events"] == 0 and totals["dead_letters"] == 0, totals
    until = horizon(stack)
    rng = np.random.default_rng(14)
    compared = 0
    for table in VIEWS.values():
        frame = query(stack, f"SELECT * FROM {table}")
        features = features_of(frame)
        stream = latest_versions(frame[frame.run_id == main_run["run_id"]])
        back = latest_versions(frame[frame.run_id == backfill_run])
        assert len(stream) and len(back)
        points = random_points(rng, back, until, 1200)
        expected = values_at(back, points, features)
        served = values_at(stream, points, features)
        pd.testing.assert_frame_equal(served, expected, check_exact=True)
        compared += len(points)
        # Row for row, too: the same change points with the same values up to the horizon.
        columns = ["user_id", "event_ts", *features]
        pd.testing.assert_frame_equal(
            stream[stream.event_ts <= until][columns].reset_index(drop=True),
            back[back.event_ts <= until][columns].reset_index(drop=True),
            check_exact=True,
        )
    assert compared >= 3000


def test_training_reads_the_same_values_through_feast(stack, main_run, backfill_run):
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    frame = query(stack, "SELECT * FROM velocity_login")
    features = features_of(frame)
    back = latest_versions(frame[frame.run_id == backfill_run])
    points = random_points(np.random.default_rng(3), back, horizon(stack), 400)
    entity_df = points.rename(columns={"t": "event_timestamp"})
    entity_df["event_timestamp"] = entity_df.event_timestamp.dt.tz_localize("UTC")
    got = store.get_historical_features(
        entity_df=entity_df, features=[f"user_login_velocity:{f}" for f in features]
    ).to_df()
    got = got.rename(columns={"event_timestamp": "t"})
    got["t"] = got.t.dt.tz_convert(None).astype("datetime64[ns]")
    got = got.sort_values(["user_id", "t"]).reset_index(drop=True)[["user_id", "t", *features]]
    expected = values_at(back, points, features)
    expected["t"] = expected.t.astype("datetime64[ns]")
    for feature in features:  # Feast returns nullable integers where a key has no row yet
        got[feature] = got[feature].astype("float64")
        expected[feature] = expected[feature].astype("float64")
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def online_values(stack, view: str, features: list[str], users: list[int]) -> pd.DataFrame:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    online = store.get_online_features(
        features=[f"{view}:{f}" for f in features], entity_rows=[{"user_id": u} for u in users]
    ).to_dict()
    return pd.DataFrame(online)[["user_id", *features]]


def assert_redis_holds_latest(stack, run_id: str) -> None:
    for view, table in VIEWS.items():
        frame = query(stack, f"SELECT * FROM {table}")
        features = features_of(frame)
        mine = latest_versions(frame[frame.run_id == run_id])
        last = mine.sort_values("event_ts").drop_duplicates("user_id", keep="last")
        last = last.sort_values("user_id").reset_index(drop=True)
        got = online_values(stack, view, features, [int(u) for u in last.user_id])
        assert plain(got) == plain(last[["user_id", *features]])


def plain(frame: pd.DataFrame) -> list[dict]:
    """Rows as Python values (NaN as None; 3 == 3.0), for comparing Feast's and SQL's types."""
    return [
        {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]


def test_redis_holds_each_keys_latest_row_readable_by_feast(stack, main_run):
    assert_redis_holds_latest(stack, main_run["run_id"])


def test_every_event_on_the_broker_lands_in_the_raw_tables(stack, main_run):
    from providers.events import KINDS, MESSAGE_FIELD, decode

    client = redis_client.Redis.from_url(stack["broker"].url)
    for kind in KINDS.values():
        on_broker = sorted(
            decode(kind, fields[MESSAGE_FIELD]).event_id for _, fields in client.xrange(kind.stream)
        )
        landed = sorted(query(stack, f"SELECT {kind.id_column} AS i FROM {kind.table}").i)
        assert landed == on_broker and len(landed) > 0
    client.close()


def _commits(stack, run_id: str) -> int:
    return int(
        query(stack, "SELECT COUNT(*) AS n FROM velocity_commits WHERE run_id = %s", (run_id,)).n[0]
    )


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def start_stream(stack, checkpoint: Path, *extra: str) -> subprocess.Popen:
    """The job in the background; its output goes to a file (a pipe nobody reads would fill up
    and block it)."""
    output = (checkpoint.parent / f"{checkpoint.name}.out").open("w")
    return subprocess.Popen(
        stream_command(checkpoint, *extra),
        env=stack["env"],
        cwd=ROOT,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # SIGKILL reaches the JVM and the Python workers too
    )


def assert_run_equals_backfill(stack, run_id: str, backfill_run: str) -> None:
    until = horizon(stack)
    for table in VIEWS.values():
        frame = query(stack, f"SELECT * FROM {table}")
        features = features_of(frame)
        columns = ["user_id", "event_ts", *features]
        stream = latest_versions(frame[frame.run_id == run_id])
        back = latest_versions(frame[frame.run_id == backfill_run])
        pd.testing.assert_frame_equal(
            stream[stream.event_ts <= until][columns].reset_index(drop=True),
            back[back.event_ts <= until][columns].reset_index(drop=True),
            check_exact=True,
        )
    # Every commit whole, none twice: the rows of the run are exactly those its commits recorded.
    recorded = query(
        stack, "SELECT SUM(rows_written) AS n FROM velocity_commits WHERE run_id = %s", (run_id,)
    ).n[0]
    written = sum(
        int(query(stack, f"SELECT COUNT(*) AS n FROM {t} WHERE run_id = %s", (run_id,)).n[0])
        for t in VIEWS.values()
    )
    assert written == recorded


def test_killed_mid_stream_it_resumes_from_its_checkpoint_without_loss_or_double_count(
    stack, backfill_run, tmp_path_factory
):
    """Live traffic: the day's first half is replayed into a fresh broker at 30 events/s while the
    job runs; SIGKILL once a micro-batch is committed; the second half arrives while the job is down;
    restart, and the result is the backfill's. The halves make sure the restarted run has work
    whatever the machine's speed: with one live producer for the whole day, a slow start could see
    the whole day consumed before the kill, and the restart would have nothing to prove."""
    import threading

    from spark_jobs import replay

    live = Redis(tmp_path_factory.mktemp("live-broker"), durable=True).start()
    checkpoint = tmp_path_factory.mktemp("ckpt-kill")
    noon = dt.datetime.combine(DAY, dt.time(12))

    def half(start: dt.datetime, end: dt.datetime, rate: str) -> argparse.Namespace:
        bounds = ["--start", start.isoformat(), "--end", end.isoformat()]
        return replay.parse_args([*bounds, "--rate", rate, "--batch", "20", "--broker", live.url])

    sent: list[int] = []
    first = half(dt.datetime.combine(DAY, dt.time()), noon, "30")
    producer = threading.Thread(target=lambda: sent.append(replay.run(first)), daemon=True)
    live_stack = {**stack, "env": {**stack["env"], "BROKER_URL": live.url}}
    try:
        producer.start()
        process = start_stream(live_stack, checkpoint, "--trigger-seconds", "0.5")
        try:
            _wait_for(lambda: (checkpoint / "run_id").exists(), 120, "the run id")
            run_id = stream_run_id(checkpoint)
            # Committed on both sides: in TiDB, and in Spark's checkpoint (a kill between the
            # two replays the batch on restart, which the commit record makes harmless but which
            # would leave this test nothing to resume from).
            _wait_for(
                lambda: (
                    _commits(stack, run_id) >= 1
                    and (checkpoint / "velocity" / "commits" / "0").exists()
                ),
                240,
                "a committed micro-batch",
            )
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        before = _commits(stack, run_id)
        assert process.returncode == -signal.SIGKILL
        producer.join(timeout=120)
        sent.append(replay.run(half(noon, noon + dt.timedelta(hours=12), "0")))
        assert sum(sent) == stack["sent"] and all(sent), sent
        totals = run_stream(live_stack, checkpoint)
        assert stream_run_id(checkpoint) == run_id  # the same run continues
        assert _commits(stack, run_id) > before and 0 < totals["events"] < stack["sent"]
        assert_run_equals_backfill(stack, run_id, backfill_run)
    finally:
        live.stop()


def test_redis_down_the_job_retries_from_its_checkpoint_and_catches_up(
    stack, backfill_run, tmp_path_factory
):
    online: Redis = stack["online"]
    checkpoint = tmp_path_factory.mktemp("ckpt-redis")
    online.stop()
    process = start_stream(stack, checkpoint, "--trigger-seconds", "0.5")
    try:
        _wait_for(lambda: (checkpoint / "run_id").exists(), 120, "the run id")
        run_id = stream_run_id(checkpoint)
        # Without the online Redis nothing can be checked against the erased subjects, so no
        # micro-batch is written anywhere: the queries fail, and the job restarts them.
        out_file = checkpoint.parent / f"{checkpoint.name}.out"
        _wait_for(
            lambda: "restarting from the checkpoint" in out_file.read_text(), 240, "a restart"
        )
        assert _commits(stack, run_id) == 0
        assert process.poll() is None  # still running: retrying, not dead
    finally:
        online.start()  # same port, empty
    assert process.wait(timeout=300) == 0
    out = (checkpoint.parent / f"{checkpoint.name}.out").read_text()
    # stdout and stderr share the file: the JVM may still log after the summary line
    summary = [line for line in out.splitlines() if line.startswith('{"run_id"')]
    assert summary and json.loads(summary[-1])["events"] >= stack["sent"], out[-3000:]
    assert_run_equals_backfill(stack, run_id, backfill_run)
    assert_redis_holds_latest(stack, run_id)


def test_late_events_are_counted_not_aggregated_and_still_land(stack, main_run):
    from providers.events import KINDS, MESSAGE_FIELD, encode

    latest = horizon(stack) + pd.Timedelta(seconds=WATERMARK_S)  # the latest event of any kind
    user = 987_654
    client = redis_client.Redis.from_url(stack["broker"].url)

    def login(event_id: int, when: pd.Timestamp) -> None:
        event = KINDS["login"].model(
            event_id=event_id,
            user_id=user,
            event_ts=when.to_pydatetime().replace(tzinfo=dt.UTC),
            ip="198.51.100.7",
            device_id="dev-late",
            country="DE",
            success=False,
        )
        client.xadd("events.login", {MESSAGE_FIELD: encode(event)})

    for i in range(4):  # an hour behind the watermark
        login(9_000_000_000 + i, latest - pd.Timedelta(hours=1))
    login(9_000_000_010, latest - pd.Timedelta(seconds=2))  # inside the watermark
    client.close()
    totals = run_stream(stack, main_run["checkpoint"])  # the same run, resumed
    assert totals["late_events"] == 4 and totals["events"] == 1, totals
    landed = query(stack, "SELECT login_id FROM logins WHERE user_id = %s", (user,))
    assert sorted(landed.login_id) == [9_000_000_000 + i for i in range(4)] + [9_000_000_010]
    rows_ = query(
        stack,
        "SELECT login_attempts_1m, failed_logins_10m FROM velocity_login "
        "WHERE user_id = %s AND run_id = %s ORDER BY event_ts LIMIT 1",
        (user, main_run["run_id"]),
    )
    assert (int(rows_.login_attempts_1m[0]), float(rows_.failed_logins_10m[0])) == (1, 1.0)


def test_skew_report_measures_the_streams_lag_at_serving_time(stack, main_run):
    """The skew report's lag for stream features: 0 when the served value was the latest change
    point at the request, else the time since the change point serving had not applied."""
    from feast import FeatureStore

    from pipelines.skew import _stream_lag

    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    rows_ = latest_versions(
        query(stack, "SELECT user_id, event_ts, created_ts FROM velocity_login")
    )
    user = int(rows_.user_id.value_counts().idxmax())  # a user with several change points
    points = sorted(rows_[rows_.user_id == user].event_ts)
    older, newer = pd.Timestamp(points[-2], tz="UTC"), pd.Timestamp(points[-1], tz="UTC")
    request = newer + pd.Timedelta(seconds=3)
    logged = pd.DataFrame(
        {
            "user_id": [user, user],
            "__log_timestamp": [request, request],
            # served: the older change point (the stream was behind), then the latest one
            "user_login_velocity__failed_logins_10m__timestamp": [older, newer],
        }
    )
    lag = _stream_lag(store, "user_login_velocity", logged, ["user_id"])
    assert lag.tolist() == [pytest.approx((request - newer).total_seconds()), 0.0]


def test_the_broker_is_trimmed_below_what_both_queries_committed(stack, tmp_path):
    """Kept a day by default (the broker is also a replay buffer); with no retention, a run
    leaves on the broker at most each stream's last entry, which both queries have committed.
    Its own broker database and users, so the day's tests above see nothing of it."""
    import redis

    from providers.events import KINDS, MESSAGE_FIELD, encode

    url = stack["env"]["BROKER_URL"].rsplit("/", 1)[0] + "/1"
    first_id = 7_000_000_000_000  # above any id the day or the other tests use
    client = redis.Redis.from_url(url)
    now = dt.datetime.now(dt.UTC)
    for i in range(30):
        kind = KINDS["login"] if i % 3 else KINDS["withdrawal"]
        fields = (
            {"ip": "10.0.0.1", "device_id": "d", "country": "DE", "success": True}
            if i % 3
            else {"amount": "10.00", "destination_account": "IBAN1"}
        )
        event = kind.model(event_id=first_id + i, user_id=9_000_001 + i % 5, event_ts=now, **fields)
        client.xadd(kind.stream, {MESSAGE_FIELD: encode(event)})
    streams = [KINDS["login"].stream, KINDS["withdrawal"].stream]
    env = {**stack["env"], "BROKER_URL": url}
    checkpoint = tmp_path / "ckpt"
    totals = run_stream(stack, checkpoint, "--starting-offsets", "earliest", env=env)
    assert totals["landed"] == 30
    assert [client.xlen(s) for s in streams] == [20, 10]  # inside the default retention
    run_stream(stack, checkpoint, "--broker-retention-seconds", "0", env=env)
    assert [client.xlen(s) for s in streams] == [1, 1]  # each stream's last entry
    landed = query(stack, "SELECT COUNT(*) AS n FROM logins WHERE login_id >= %s", (first_id,))
    assert landed.n[0] == 20  # trimmed only after landing


def _bucket_state(checkpoint: Path, view: str, bucket: int) -> tuple[set[int], set[int]]:
    """(keys with live windows, keys with a due expiry) of one bucket, read from the checkpoint
    with Spark's state data source."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").getOrCreate()
    spark.streams.active  # noqa: B018 - starts the state store coordinator the reader needs

    def state(name: str) -> list:
        return (
            spark.read.format("statestore")
            .option("path", str(checkpoint / "velocity"))
            .option("stateVarName", name)
            .load()
            .where(f"key.view = '{view}' AND key.bucket = {bucket}")
            .collect()
        )

    live: dict[int, str] = {}
    for row in state("log"):  # in list order: the latest entry of a key wins, "" removes it
        live[int(row.list_element.key)] = row.list_element.windows
    due = {int(k) for row in state("index") for k in json.loads(row.value.due)}
    return {k for k, w in live.items() if w}, due


def test_an_erased_subject_leaves_the_window_state_and_its_late_events_are_dropped(stack, main_run):
    """Last in the module: it erases a user of its own (above the day's ids) from the main run."""
    from feast import FeatureStore

    from pipelines import erase
    from providers import erasure
    from providers.events import KINDS, MESSAGE_FIELD, encode
    from spark_jobs.stream import BUCKETS

    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    subject, neighbour = 987_701, 987_701 + BUCKETS  # one bucket
    latest = horizon(stack) + pd.Timedelta(seconds=WATERMARK_S)
    client = redis_client.Redis.from_url(stack["broker"].url)
    serial = iter(range(9_100_000_000, 9_200_000_000))

    def login(user: int) -> None:
        event = KINDS["login"].model(
            event_id=next(serial),
            user_id=user,
            event_ts=(latest - pd.Timedelta(seconds=2)).to_pydatetime().replace(tzinfo=dt.UTC),
            ip="198.51.100.8",
            device_id="dev-erase",
            country="DE",
            success=False,
        )
        client.xadd("events.login", {MESSAGE_FIELD: encode(event)})

    login(subject)
    login(subject)
    run_stream(stack, main_run["checkpoint"])
    bucket = subject % BUCKETS
    live, due = _bucket_state(main_run["checkpoint"], "user_login_velocity", bucket)
    assert subject in live and subject in due
    assert len(query(stack, "SELECT 1 FROM velocity_login WHERE user_id = %s", (subject,)))

    done = erase.erase(store, subject, "dpo@example.com", "ticket 3", stack["broker"].url)
    assert done.erased["broker:events.login"] == 2 and done.erased["tidb:velocity_login"] >= 1
    # Late events of the subject (one not even valid: not kept as a dead letter either), and one
    # of a neighbour that makes the bucket step. The online Redis restarted empty meanwhile: the
    # job rewrites the mirror of the tombstones from TiDB when it starts.
    login(subject)
    login(subject)
    client.xadd("events.login", {MESSAGE_FIELD: json.dumps({"user_id": subject, "ip": "bad"})})
    login(neighbour)
    client.close()
    online = redis_client.Redis.from_url(stack["online"].url)
    online.delete(erasure.erased_set_key(store.project), erasure.erased_version_key(store.project))
    totals = run_stream(stack, main_run["checkpoint"])
    assert totals["erased_events"] == 3 and totals["events"] == 1, totals
    assert erasure.erased_among(online, store.project, [subject, neighbour]) == {subject}
    dead = query(stack, "SELECT message FROM dead_letter_events")
    assert not [m for m in dead.message if erasure.subject_of(m) == subject]
    live, due = _bucket_state(main_run["checkpoint"], "user_login_velocity", bucket)
    assert subject not in live and subject not in due and neighbour in live
    for table in ("logins", "velocity_login"):
        users = query(
            stack,
            f"SELECT DISTINCT user_id FROM {table} WHERE user_id IN %s",
            ((subject, neighbour),),
        )
        assert users.user_id.tolist() == [neighbour], table
    assert online_values(stack, "user_login_velocity", ["failed_logins_10m"], [subject])[
        "failed_logins_10m"
    ].tolist() == [None]
