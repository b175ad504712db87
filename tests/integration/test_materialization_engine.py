"""The TiDB -> Redis engine writes exactly what Feast's own local engine writes, byte for byte."""

from __future__ import annotations

import datetime as dt
from datetime import timedelta

import pandas as pd
import pytest
import redis as redis_py
from feast import Entity, FeatureStore, FeatureView, Field, ValueType
from feast.repo_config import MaterializationConfig, RegistryConfig, RepoConfig
from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String

from providers import feast_redis
from providers.tidb import TiDBSource
from tests.utils.tables import create_table

UTC = dt.UTC
T0 = dt.datetime(2026, 2, 1, tzinfo=UTC)
ENGINE = {"type": "providers.tidb.materialization.TiDBRedisEngine", "batch_rows": 100}
IN_PROCESS = {**ENGINE, "processes": 1}
USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
DEVICE = Entity(name="device", join_keys=["device_id"], value_type=ValueType.STRING)
DDL = (
    "user_id BIGINT, device_id VARCHAR(64), spend DOUBLE, n BIGINT, ratio FLOAT, small INT, "
    "flag TINYINT(1), label VARCHAR(64), tags JSON, event_ts DATETIME(6), created_ts DATETIME(6)"
)


def _naive(ts: dt.datetime) -> dt.datetime:
    return ts.astimezone(UTC).replace(tzinfo=None)


@pytest.fixture
def seeded(db):
    """350 users (several Redis batches of 100), every type, NULLs, ties on event time."""
    rows = []
    for u in range(1, 351):
        for k in range(3):
            event = T0 + timedelta(hours=u % 7 + 24 * k)
            rows.append(
                {
                    "user_id": u,
                    "device_id": f"dév-{u % 50}",
                    "spend": None if u % 11 == 0 else u * 1.5 + k,
                    "n": None if u % 13 == 0 else u * 10 + k,
                    "ratio": float(u) / 4,
                    "small": -u,
                    "flag": u % 2,
                    "label": None if u % 17 == 0 else f"l{u}-{k}",
                    "tags": None if u % 19 == 0 else f'["a{u}", "b{k}"]',
                    "event_ts": _naive(event),
                    "created_ts": _naive(event + timedelta(minutes=1)),
                }
            )
        if u % 10 == 0:  # a second version of the last row, created later: it must win
            rows.append(
                {**rows[-1], "spend": -1.0, "created_ts": _naive(event + timedelta(hours=1))}
            )
    create_table(db, "engine_src", DDL, pd.DataFrame(rows))


def _views() -> list[FeatureView]:
    common = dict(timestamp_field="event_ts", created_timestamp_column="created_ts")
    by_user = FeatureView(
        name="by_user",
        entities=[USER],
        ttl=timedelta(0),
        schema=[
            Field(name="spend", dtype=Float64),
            Field(name="n", dtype=Int64),
            Field(name="ratio", dtype=Float32),
            Field(name="small", dtype=Int32),
            Field(name="flag", dtype=Bool),
            Field(name="label", dtype=String),
            Field(name="tags", dtype=Array(String)),
        ],
        source=TiDBSource(name="by_user_src", table="engine_src", json_columns=["tags"], **common),
        online=True,
    )
    by_device = FeatureView(  # a STRING join key, and a field mapping
        name="by_device",
        entities=[DEVICE],
        ttl=timedelta(0),
        schema=[Field(name="amount", dtype=Float64)],
        source=TiDBSource(
            name="by_device_src", table="engine_src", field_mapping={"spend": "amount"}, **common
        ),
        online=True,
    )
    return [by_user, by_device]


def _store(
    repo_config: RepoConfig, tmp_path, name: str, engine: dict | None, ttl: int | None = None
) -> FeatureStore:
    online = repo_config.online_store.model_copy(update={"key_ttl_seconds": ttl})
    config = RepoConfig(
        project=repo_config.project,
        provider="local",
        registry=RegistryConfig(path=str(tmp_path / f"{name}.db"), cache_ttl_seconds=0),
        offline_store=repo_config.offline_store,
        online_store=online,
        entity_key_serialization_version=3,
        repo_path=tmp_path,
        materialization=MaterializationConfig(pull_latest_features=True),
        **({"batch_engine": engine} if engine else {}),
    )
    store = FeatureStore(config=config)
    store.apply([USER, DEVICE, *_views()])
    return store


def _dump(client: redis_py.Redis) -> dict[bytes, dict[bytes, bytes]]:
    """Feast's keys; the platform's own (load markers and their epoch, providers/feast_redis.py)
    are left out: Feast's engine writes none."""
    return {
        key: client.hgetall(key)
        for key in client.scan_iter(count=1000)
        if not key.startswith(b"{feature_platform:")
    }


def _run(store: FeatureStore, client: redis_py.Redis) -> dict[bytes, dict[bytes, bytes]]:
    client.flushall()
    # A later window first, then an earlier one: the earlier rows must not replace later ones.
    store.materialize(T0 + timedelta(days=1, hours=12), T0 + timedelta(days=4))
    store.materialize(T0 - timedelta(days=1), T0 + timedelta(days=1, hours=12))
    return _dump(client)


# No key TTL: compared and written by the Lua script. A TTL: Feast's two pipelines.
# Views written by forked processes (the default), or all in this process.
@pytest.mark.parametrize(("ttl", "engine"), [(None, ENGINE), (3600, ENGINE), (None, IN_PROCESS)])
def test_engine_writes_what_feasts_local_engine_writes(
    repo_config, seeded, tmp_path, redis_server, ttl, engine, capsys
):
    import re

    from providers.tidb.materialization import TiDBRedisEngine

    client = redis_py.Redis.from_url(redis_server.url)
    feast_store = _store(repo_config, tmp_path, "feast", None, ttl)
    ours_store = _store(repo_config, tmp_path, "ours", engine, ttl)
    assert isinstance(ours_store._get_provider().batch_engine, TiDBRedisEngine)
    theirs = _run(feast_store, client)
    capsys.readouterr()
    ours = _run(ours_store, client)
    # Progress while it runs, then a summary per run: every view, the rows it read.
    err = capsys.readouterr().err
    summaries = re.findall(r"materialized (\d+) of (\d+) views .*: ([\d,]+) rows read", err)
    views = len(_views())
    assert [(int(a), int(b)) for a, b, _ in summaries] == [(views, views)] * 2, err
    assert sum(int(n.replace(",", "")) for *_, n in summaries) >= 350 + 50
    assert "rows/s" in err and "materialize" in err
    assert len(theirs) == 350 + 50  # every user and device
    assert ours.keys() == theirs.keys()
    marked = client.hkeys(feast_redis.loaded_key(ours_store.project))
    assert sorted(marked) == sorted(v.name.encode() for v in _views())  # ours marks its loads
    different = [k for k in theirs if ours[k] != theirs[k]]
    assert not different, (different[:3], [ours[k] for k in different[:1]], theirs[different[0]])
    some_key = next(iter(ours))
    assert (client.ttl(some_key) > 0) == (ttl is not None)
    # And the values are the right ones: the latest row, ties to the latest created.
    values = ours_store.get_online_features(
        features=["by_user:spend", "by_user:label", "by_user:tags", "by_device:amount"],
        entity_rows=[{"user_id": 10, "device_id": "dév-10"}, {"user_id": 19, "device_id": "x"}],
    ).to_dict()
    assert values["spend"][0] == -1.0 and values["label"][0] == "l10-2"
    assert values["tags"][1] is None and values["amount"][1] is None


def test_engine_hands_other_views_to_feasts_local_engine(
    repo_config, seeded, tmp_path, redis_server
):
    """A view the fast path does not handle (here a BatchFeatureView) is Feast's to materialize."""
    from feast import BatchFeatureView

    from providers.tidb.materialization import TiDBRedisEngine

    view = BatchFeatureView(
        name="batch_view",
        entities=[USER],
        ttl=timedelta(0),
        schema=[Field(name="spend", dtype=Float64)],
        source=TiDBSource(
            name="batch_src",
            table="engine_src",
            timestamp_field="event_ts",
            created_timestamp_column="created_ts",
        ),
        online=True,
    )
    store = _store(repo_config, tmp_path, "fallback", ENGINE)
    store.apply([view])
    engine = store._get_provider().batch_engine
    assert isinstance(engine, TiDBRedisEngine)
    assert not engine._fast_path(_task(store, view))
    store.materialize(T0 - timedelta(days=1), T0 + timedelta(days=4), feature_views=["batch_view"])
    got = store.get_online_features(features=["batch_view:spend"], entity_rows=[{"user_id": 10}])
    assert got.to_dict()["spend"] == [-1.0]


def _task(store: FeatureStore, view):
    from feast.infra.common.materialization_job import MaterializationTask

    return MaterializationTask(
        project=store.project,
        feature_view=view,
        start_time=T0,
        end_time=T0 + timedelta(days=1),
    )


def test_a_view_failing_in_a_writer_process_fails_materialize(
    repo_config, seeded, tmp_path, redis_server, capsys
):
    broken = FeatureView(
        name="broken",
        entities=[USER],
        ttl=timedelta(0),
        schema=[Field(name="spend", dtype=Float64)],
        source=TiDBSource(name="broken_src", table="engine_src", timestamp_field="event_ts"),
        online=True,
    )
    store = _store(repo_config, tmp_path, "broken", ENGINE)
    store.apply([broken])
    from providers.tidb.connection import connect

    with connect(repo_config.offline_store) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE engine_src")  # every view now reads a table that is gone
    with pytest.raises(Exception, match="engine_src"):
        store.materialize(T0 - timedelta(days=1), T0 + timedelta(days=4))
    assert f"materialized 0 of {len(_views()) + 1} views" in capsys.readouterr().err


def test_forked_writers_never_read_from_tidb(
    repo_config, seeded, tmp_path, redis_server, monkeypatch
):
    """connectorx's thread pool does not survive a fork: a child that read from TiDB after this
    process had read crashed (SIGSEGV). Only this process reads; children encode and write."""
    import os

    from providers.tidb import reader

    parent, real = os.getpid(), reader.read_batches

    def read_batches(*args, **kwargs):
        if os.getpid() != parent:
            raise AssertionError("a forked writer read from TiDB")
        return real(*args, **kwargs)

    monkeypatch.setattr(reader, "read_batches", read_batches)
    store = _store(repo_config, tmp_path, "ours", ENGINE)
    client = redis_py.Redis.from_url(redis_server.url)
    assert len(_run(store, client)) == 350 + 50


def test_a_write_failing_in_a_child_skips_the_rest_of_that_view_only(
    repo_config, seeded, tmp_path, redis_server, monkeypatch
):
    """Two children, three views: the first view of child 0 fails after one of its four batches;
    the child discards that view's remaining batches and writes its next view whole."""
    from providers.tidb.materialization import TiDBRedisEngine

    def view(name: str) -> FeatureView:
        return FeatureView(
            name=name,
            entities=[USER],
            ttl=timedelta(0),
            schema=[Field(name="spend", dtype=Float64)],
            source=TiDBSource(
                name=f"{name}_src",
                table="engine_src",
                timestamp_field="event_ts",
                created_timestamp_column="created_ts",
            ),
            online=True,
        )

    real = TiDBRedisEngine._write_tables

    def write_tables(self, task, tables):
        if task.feature_view.name == "a_fails":
            next(iter(tables))  # one batch of 100 read, three left in the pipe
            raise RuntimeError("the write of a_fails broke")
        return real(self, task, tables)

    monkeypatch.setattr(TiDBRedisEngine, "_write_tables", write_tables)
    store = _store(repo_config, tmp_path, "three", ENGINE)
    store.apply([view("a_fails"), view("b_other"), view("c_after")])
    redis_py.Redis.from_url(redis_server.url).flushall()
    with pytest.raises(Exception, match="the write of a_fails broke"):
        store.materialize(
            T0 - timedelta(days=1),
            T0 + timedelta(days=4),
            feature_views=["a_fails", "b_other", "c_after"],
        )
    users = [{"user_id": u} for u in range(1, 351)]

    def spend(name: str) -> list:
        online = store.get_online_features(features=[f"{name}:spend"], entity_rows=users)
        return online.to_dict()["spend"]

    # c_after shares child 0 with a_fails: had a_fails' three leftover batches reached it, it
    # would hold users 101-350 only.
    assert spend("c_after") == spend("b_other")
    assert sum(v is not None for v in spend("c_after")) > 300
    assert set(spend("a_fails")) == {None}


def test_coverage_advances_over_days_recorded_and_loaded_only(
    repo_config, seeded, db, tmp_path, redis_server
):
    """A tagged view is vouched for up to the midnight after the last day of an unbroken run
    of recorded days, each recorded before the materialization started and loaded by it (or
    already vouched for); never past the materialized end, never back."""
    from spark_jobs.schema import RUN_TABLES

    create_table(db, "feature_run_partitions", RUN_TABLES["feature_run_partitions"])
    hour_ago = _naive(dt.datetime.now(UTC) - timedelta(hours=1))

    def record(*days: dt.date, finished: dt.datetime = hour_ago) -> None:
        with db.cursor() as cur:
            cur.executemany(
                "INSERT INTO feature_run_partitions VALUES ('r', 'fs', %s, 'succeeded', 0, %s, %s)",
                [(d, finished, finished) for d in days],
            )

    day = T0.date()  # Feb 1
    record(*(day - timedelta(days=k) for k in (3, 2, 1, 0)), day + timedelta(days=2))  # no Feb 2
    view = FeatureView(
        name="vouched",
        entities=[USER],
        ttl=timedelta(0),
        schema=[Field(name="spend", dtype=Float64)],
        source=TiDBSource(
            name="vouched_src", table="engine_src", timestamp_field="event_ts",
            created_timestamp_column="created_ts",
        ),
        tags={feast_redis.VOUCHED_TAG: "fs"},
    )  # fmt: skip
    store = _store(repo_config, tmp_path, "vouched", ENGINE)
    store.apply([view])
    client = redis_py.Redis.from_url(redis_server.url)
    client.flushall()
    key = feast_redis.progress_key(store.project)

    def vouched() -> dt.datetime:
        return dt.datetime.fromtimestamp(int(client.hget(key, "vouched")) / 1e6, UTC)

    store.materialize(T0 - timedelta(days=5), T0, feature_views=["vouched"])
    assert vouched() == T0  # Jan 31's values: the materialized end, though Feb 1 is recorded
    store.materialize(T0, T0 + timedelta(days=4), feature_views=["vouched"])
    assert vouched() == T0 + timedelta(days=1)  # Feb 1, then the gap
    record(day + timedelta(days=1), finished=_naive(dt.datetime.now(UTC)))  # Feb 2, late
    store.materialize(T0 + timedelta(days=4), T0 + timedelta(days=6), feature_views=["vouched"])
    assert vouched() == T0 + timedelta(days=1)  # Feb 2's rows were never loaded: no advance
    store.materialize(T0, T0 + timedelta(days=6), feature_views=["vouched"])
    assert vouched() == T0 + timedelta(days=3)  # loaded now: through Feb 3
    store.materialize(T0 - timedelta(days=5), T0, feature_views=["vouched"])
    assert vouched() == T0 + timedelta(days=3)  # an older interval never moves it back
