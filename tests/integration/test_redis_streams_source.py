"""The Redis Streams source's reads (spark_jobs/redis_streams.py) on a real Redis, without Spark:
bounded batches cut at one broker time across streams, exact replays between offsets."""

from __future__ import annotations

import redis as redis_client

from spark_jobs.redis_streams import RedisStreamsReader


def test_batches_are_cut_at_one_broker_time_for_every_stream(redis_server):
    client = redis_client.Redis.from_url(redis_server.url)
    client.flushall()
    # Stream a: 10 entries at ms 1..10; stream b: one entry at ms 2 and one at ms 9.
    for ms in range(1, 11):
        client.xadd("a", {b"e": b"x"}, id=f"{ms}-0")
    client.xadd("b", {b"e": b"y"}, id="2-0")
    client.xadd("b", {b"e": b"y"}, id="9-0")
    reader = RedisStreamsReader(
        {"url": redis_server.url, "streams": "a,b", "maxEventsPerBatch": "4"}
    )
    rows, end = reader.read(reader.initialOffset())
    ids = [(stream, entry) for stream, entry, _, _ in rows]
    # `a` is capped at ms 4, so `b` stops there too: its ms-9 entry waits for a later batch
    assert ids == [("a", "1-0"), ("a", "2-0"), ("a", "3-0"), ("a", "4-0"), ("b", "2-0")]
    assert end == {"a": "4-0", "b": "2-0"}
    rows, end2 = reader.read(end)
    assert [e for _, e, _, _ in rows] == ["5-0", "6-0", "7-0", "8-0"] and end2["b"] == "2-0"
    rows, end3 = reader.read(end2)
    assert [(s, e) for s, e, _, _ in rows] == [("a", "9-0"), ("a", "10-0"), ("b", "9-0")]
    # A replay after a restart reads exactly the planned range, entry for entry.
    replay = list(reader.readBetweenOffsets(end, end2))
    assert [e for _, e, _, _ in replay] == ["5-0", "6-0", "7-0", "8-0"]
    assert list(reader.readBetweenOffsets(end3, end3)) == []
    client.close()
