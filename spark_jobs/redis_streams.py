"""A Spark Structured Streaming source over Redis Streams (the local broker), exactly once.

Spark has no Redis Streams source; PySpark 4's Python data source API makes one small. The
offset of a stream is the id of the last entry read (Redis ids are totally ordered and immutable),
so Spark's checkpoint records exactly where each micro-batch ended and a restarted query re-reads
a batch it had not committed with `readBetweenOffsets`, entry for entry.

    spark.dataSource.register(RedisStreamsSource)
    spark.readStream.format("redis_streams")
        .option("url", "redis://127.0.0.1:6379/0")
        .option("streams", "events.login,events.transaction")
        .option("maxEventsPerBatch", "20000")
        .option("startingOffsets", "earliest")      # or "latest"
        .load()

Rows: (stream, id, message, broker_ts). `broker_ts` is the instant the broker took the entry (its
id's milliseconds), for measuring event-to-online freshness. The reader runs in the driver
(`SimpleDataSourceStreamReader`): at most `maxEventsPerBatch` entries per stream per micro-batch,
which bounds a batch after downtime. Kafka, in production, goes through Spark's own Kafka source
(spark_jobs/stream.py chooses by the broker URL).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyspark.sql.datasource import DataSource, SimpleDataSourceStreamReader
from pyspark.sql.types import StringType, StructField, StructType, TimestampType

from providers.events import MESSAGE_FIELD

SCHEMA = StructType(
    [
        StructField("stream", StringType(), False),
        StructField("id", StringType(), False),
        StructField("message", StringType(), True),
        StructField("broker_ts", TimestampType(), False),
    ]
)
PAGE = 5000  # entries per XRANGE call


def _millis(entry_id: str) -> int:
    return int(entry_id.split("-", 1)[0])


def _next_id(entry_id: str) -> str:
    """The exclusive start after `entry_id` (XRANGE's `(` prefix, Redis >= 6.2)."""
    return "(" + entry_id


class RedisStreamsReader(SimpleDataSourceStreamReader):
    def __init__(self, options: dict[str, str]) -> None:
        self.url = options.get("url") or ""
        if not self.url.startswith(("redis://", "rediss://")):
            raise ValueError(f"option url must be a redis:// URL, got {self.url!r}")
        self.streams = [s for s in (options.get("streams") or "").split(",") if s]
        if not self.streams:
            raise ValueError("option streams must name at least one stream")
        self.max_per_batch = int(options.get("maxEventsPerBatch", "20000"))
        if self.max_per_batch < 1:
            raise ValueError("option maxEventsPerBatch must be positive")
        self.starting = options.get("startingOffsets", "earliest")
        if self.starting not in ("earliest", "latest"):
            raise ValueError("option startingOffsets must be earliest or latest")
        self.timeout = float(options.get("timeoutSeconds", "10"))
        self._client: Any = None

    def _redis(self):
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(
                self.url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
            )
        return self._client

    def initialOffset(self) -> dict:
        if self.starting == "earliest":
            return {s: "0-0" for s in self.streams}
        offsets = {}
        for stream in self.streams:
            last = self._redis().xrevrange(stream, count=1)
            offsets[stream] = last[0][0].decode() if last else "0-0"
        return offsets

    def _entries(self, stream: str, after: str, until: str | None, limit: int | None):
        """Entries with after < id (<= until), in id order, at most `limit`."""
        client = self._redis()
        cursor = after
        taken = 0
        while limit is None or taken < limit:
            count = PAGE if limit is None else min(PAGE, limit - taken)
            page = client.xrange(stream, min=_next_id(cursor), max=until or "+", count=count)
            if not page:
                return
            for entry_id, fields in page:
                yield entry_id.decode(), fields
            taken += len(page)
            cursor = page[-1][0].decode()
            if len(page) < count:
                return

    @staticmethod
    def _row(stream: str, entry_id: str, fields: dict) -> tuple:
        import datetime as dt

        raw = fields.get(MESSAGE_FIELD)
        message = raw.decode("utf-8", errors="replace") if raw is not None else None
        millis = int(entry_id.split("-", 1)[0])
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (stream, entry_id, message, epoch + dt.timedelta(milliseconds=millis))

    def read(self, start: dict) -> tuple[Iterator[tuple], dict]:
        """Up to `maxEventsPerBatch` entries per stream, cut at one broker time for all streams:
        when a stream hits the cap, the others stop at the same millisecond. The watermark is
        shared by the streams, so reading an hour of one stream with a minute of another would
        make the rest of that other stream late."""
        read: dict[str, list[tuple[str, dict]]] = {}
        capped_at: list[int] = []
        for stream in self.streams:
            after = start.get(stream, "0-0")
            read[stream] = list(self._entries(stream, after, None, self.max_per_batch))
            if len(read[stream]) >= self.max_per_batch:
                capped_at.append(_millis(read[stream][-1][0]))
        bound = min(capped_at) if capped_at else None
        rows, end = [], dict(start)
        for stream, entries in read.items():
            for entry_id, fields in entries:
                if bound is not None and _millis(entry_id) > bound:
                    break
                rows.append(self._row(stream, entry_id, fields))
                end[stream] = entry_id
        return iter(rows), end

    def readBetweenOffsets(self, start: dict, end: dict) -> Iterator[tuple]:
        rows = []
        for stream in self.streams:
            after, until = start.get(stream, "0-0"), end.get(stream)
            if until is None or until == after:
                continue
            for entry_id, fields in self._entries(stream, after, until, None):
                rows.append(self._row(stream, entry_id, fields))
        return iter(rows)

    def commit(self, end: dict) -> None:
        """Nothing to release: entries stay until the operator trims the streams (docs)."""


class RedisStreamsSource(DataSource):
    @classmethod
    def name(cls) -> str:
        return "redis_streams"

    def schema(self) -> StructType:
        return SCHEMA

    def simpleStreamReader(self, schema: StructType) -> RedisStreamsReader:
        return RedisStreamsReader(dict(self.options))
