"""The online store's load markers (providers/tidb/materialization.py `_LoadMarks`) on a real
Redis: a view without one is materialized whole; a view is marked only after its job succeeded
and only if the store was not flushed or restarted while the run wrote."""

from __future__ import annotations

import datetime as dt

import pytest
import redis
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.infra.common.materialization_job import MaterializationJobStatus, MaterializationTask
from feast.infra.compute_engines.local.job import LocalMaterializationJob
from feast.types import Int64

from providers import feast_redis
from providers.tidb.materialization import _LoadMarks

END = dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
START = END - dt.timedelta(minutes=5)


def view(name: str, ttl: dt.timedelta | None) -> FeatureView:
    user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
    return FeatureView(
        name=name,
        entities=[user],
        ttl=ttl,
        schema=[Field(name="user_id", dtype=Int64), Field(name="n", dtype=Int64)],
        source=FileSource(path="unused.parquet", timestamp_field="event_ts"),
    )


def task(name: str, ttl: dt.timedelta | None = dt.timedelta(days=30)) -> MaterializationTask:
    return MaterializationTask("p", view(name, ttl), START, END)


def job(ok: bool = True) -> LocalMaterializationJob:
    if ok:
        return LocalMaterializationJob("j", MaterializationJobStatus.SUCCEEDED)
    return LocalMaterializationJob("j", MaterializationJobStatus.ERROR, error=RuntimeError("x"))


@pytest.fixture
def client(redis_server):
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    yield client
    client.close()


def marked(client) -> set[str]:
    return {k.decode() for k in client.hkeys(feast_redis.loaded_key("p"))}


def test_an_unmarked_view_is_loaded_whole_over_its_ttl_or_all_history(client):
    marks = _LoadMarks(client, "p")
    ttl_view = marks.whole_if_unloaded(task("a"))
    assert (ttl_view.start_time, ttl_view.end_time) == (END - dt.timedelta(days=30), END)
    for no_ttl in (None, dt.timedelta(0)):
        whole = marks.whole_if_unloaded(task("b", no_ttl))
        assert whole.start_time == dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
    marks.mark([task("a")], [job()])
    again = _LoadMarks(client, "p").whole_if_unloaded(task("a"))
    assert again.start_time == START  # marked: the incremental interval only


def test_only_succeeded_views_are_marked(client):
    marks = _LoadMarks(client, "p")
    marks.mark([task("a"), task("b")], [job(), job(ok=False)])
    assert marked(client) == {"a"}


@pytest.mark.parametrize("lost", ["flushall", "restart"])
def test_a_store_flushed_or_restarted_during_the_run_is_not_marked(client, redis_server, lost):
    marks = _LoadMarks(client, "p")
    if lost == "flushall":
        client.flushall()
    else:  # no persistence: it comes back empty
        redis_server.stop()
        redis_server.start()
    marks.mark([task("a")], [job()])
    assert marked(client) == set()
    # the next run starts a new epoch and marks what it loads
    following = _LoadMarks(client, "p")
    assert following.whole_if_unloaded(task("a")).start_time < START
    following.mark([task("a")], [job()])
    assert marked(client) == {"a"}
