"""The streaming job: velocity features from the event streams, state in Spark's state store.

    python -m spark_jobs.stream --checkpoint DIR [--broker redis://...|kafka://host:9092]
        [--views user_login_velocity ...] [--watermark-seconds 10] [--trigger-seconds 1]
        [--max-events-per-batch 20000] [--starting-offsets earliest|latest]
        [--stop-when-idle SECONDS]

Two queries run from the same streams, each with its own checkpoint under DIR:

- `velocity`: events -> (view, key bucket) groups -> `transformWithState` running the window
  engine of spark_jobs/windows.py per key, its state (tiles and not yet final events) in the
  RocksDB state store, an event-time timer at the bucket's next tile expiry; the rows go to TiDB (versioned,
  exactly once per micro-batch) and Redis (Feast's format).
- `landing`: every broker message into the raw event tables (INSERT IGNORE on the event id), so
  the backfill sees each event the stream saw, late ones included.

Event time with a watermark of `--watermark-seconds`: an event later than that behind the latest
event time is not counted by the stream (Spark drops it before the state; its count is reported,
see `late_events`), and still lands in TiDB for the backfill. A failed micro-batch (Redis or TiDB
down) fails its query; the job restarts both from their checkpoints with exponential backoff
(tenacity), so it catches up without losing or double-counting anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from spark_jobs.settings import (
    Database,
    SettingsError,
    finish_args,
    job_main,
    job_parser,
    spark_session,
)

log = logging.getLogger("spark_jobs.stream")
RUN_FILE = "run_id"
DEFINITIONS_FILE = "definitions.json"
TRIM_EVERY_S = 30.0
LAYOUT_FILE = "state_layout"


# --- the stateful step (runs in Spark's Python workers) --------------------------------------------

PREPARED_SCHEMA = (
    "view string, bucket int, key long, watermark_ts timestamp, event_us long, event_id long, "
    "values string, broker_ms long"
)
# Keys are grouped by (view, key % BUCKETS). Every call of PySpark's state API is a round trip to
# the JVM's state server; with a group per key, those calls took about half of the Python
# workers' time, several times the window engine's (py-spy; docs/benchmarks.md, "Stream"). So a bucket keeps its keys' windows as a log in one list
# state (appended once per micro-batch, compacted when mostly superseded) and one index value
# (each key's next expiry, the bucket's one timer, a version token); a worker keeps the windows it
# last wrote in memory and reuses them while the stored token still matches. Changing BUCKETS
# changes the state's layout (a new checkpoint).
BUCKETS = 16
STATE_LAYOUT = f"log-per-bucket/{BUCKETS}"
OUTPUT_SCHEMA = (
    "view string, key long, event_us long, values string, broker_ms string, consumed long"
)


def prepare(views: list, erased: Any = None):
    """mapInPandas: broker messages -> one row per (view, event) with the columns its aggregations
    read, the view's udf applied to the whole micro-batch at once (not per key). Messages that are
    not valid events are dropped here; the landing query records them as dead letters. Events of
    erased subjects are dropped too (`erased`: providers.erasure.MirrorCheck; a Redis error or a
    missing mirror fails the batch, and the job restarts from its checkpoint, rather than let one
    through); the landing query counts them."""

    def run(frames):
        from spark_jobs.velocity import decode_frame, prepared

        columns = [c.split()[0] for c in PREPARED_SCHEMA.split(", ")]
        for frame in frames:
            out = []
            for view in views:
                mine = frame[frame["stream"] == view.kind.stream]
                if mine.empty:
                    continue
                events = decode_frame(view, mine["message"], keep_index=True)
                if events.empty:
                    continue
                broker = pd.to_datetime(mine.loc[events.index, "broker_ts"])
                broker = broker.dt.tz_convert(None) if broker.dt.tz is not None else broker
                events["broker_ms"] = (broker.astype("int64") // 1_000_000).to_numpy()
                ready = prepared(view, events, carry=["broker_ms"])
                if ready.empty:
                    continue
                # The watermark follows event time, but never past the broker's own clock: an
                # event stamped in the future by a fast producer clock does not make everyone
                # else's events late (nor the served progress run ahead of now).
                broker_ns = ready["broker_ms"].to_numpy().astype("int64") * 1_000_000
                ready["watermark_ts"] = np.minimum(
                    ready["event_ts"].to_numpy(dtype="datetime64[ns]"),
                    broker_ns.astype("datetime64[ns]"),
                )
                ready["view"] = view.name
                ready["bucket"] = (ready["key"] % BUCKETS).astype("int32")
                out.append(ready)
            if out:
                batch = pd.concat(out, ignore_index=True)[columns]
                if erased is not None:
                    gone = erased.among(batch["key"].unique().tolist())
                    if gone:
                        batch = batch[~batch["key"].isin(gone)]
                if not batch.empty:
                    yield batch

    return run


def _processor_class():
    """Defined lazily: importing pyspark's streaming module needs a SparkContext-free worker."""
    from pyspark.sql.streaming.stateful_processor import StatefulProcessor

    class VelocityProcessor(StatefulProcessor):
        """One bucket of one view's keys (see BUCKETS). A step takes the keys with new events and
        the keys whose next expiry the watermark passed, emits a row per change point of each,
        and writes the bucket's state with three to five calls, however many keys it touched."""

        def __init__(self, views: dict[str, Any], erased: Any = None) -> None:
            self.views = views
            self.erased = erased  # providers.erasure.MirrorCheck, or None

        def init(self, handle) -> None:
            self.handle = handle
            self.log = handle.getListState("log", "key long, windows string")
            self.index = handle.getValueState(
                "index", "due string, timer long, token string, entries long"
            )

        def _load(self, group, stored) -> dict[int, Any]:
            from spark_jobs.worker_cache import WRITTEN

            cached = WRITTEN.pop(group, None)  # invalid until this step completes
            if cached is not None and stored is not None and cached[0] == stored[2]:
                return cached[1]
            windows: dict[int, Any] = {}
            if stored is not None:
                for key, text in self.log.get():  # oldest first: the latest entry wins
                    if text:
                        windows[key] = text
                    else:
                        windows.pop(key, None)
            return windows

        def _step(self, group_key, rows, timer_values, fired_ms: int | None):
            import uuid

            from pyspark.sql import Row

            from spark_jobs.windows import Event, KeyWindows

            group = (group_key[0], int(group_key[1]))
            view = self.views[group[0]]
            stored = self.index.get()
            due = {int(k): e for k, e in json.loads(stored[0]).items()} if stored else {}
            timer = stored[1] if stored else None
            if timer is not None and timer == fired_ms:
                timer = None  # Spark deletes the timer it fired
            entries = stored[3] if stored else 0
            state = self._load(group, stored)
            watermark_us = max(timer_values.getCurrentWatermarkInMs(), 0) * 1000
            new: dict[int, list] = {}
            for row in rows:
                new.setdefault(row.key, []).append(row)
            changed: list[tuple[int, str]] = []
            if self.erased is not None:
                from spark_jobs.worker_cache import PURGED

                # An erasure moves the mirror's version: drop its subjects' windows from the
                # bucket (their events are dropped before this; this clears what they left).
                version = self.erased.version()
                if PURGED.get(group) != version:
                    for user in self.erased.among(set(state) | set(due) | set(new)):
                        new.pop(user, None)
                        due.pop(user, None)
                        if state.pop(user, None) is not None:
                            changed.append((user, ""))
                    PURGED[group] = version
            for user in sorted(set(new) | {k for k, e in due.items() if e <= watermark_us}):
                windows = state.get(user)
                if windows is None:
                    windows = KeyWindows(view.aggs)
                elif isinstance(windows, str):
                    windows = KeyWindows.loads(view.aggs, windows)
                events, broker_ms = [], []
                for row in new.get(user, ()):
                    if row.event_us >= windows.finalized_us:
                        events.append(Event(row.event_us, row.event_id, json.loads(row.values)))
                        broker_ms.append(row.broker_ms)
                emitted = windows.advance(events, watermark_us)
                if windows.is_empty():
                    if state.pop(user, None) is not None:
                        changed.append((user, ""))
                    due.pop(user, None)
                else:
                    state[user] = windows
                    due[user] = windows.next_expiry()
                    changed.append((user, windows.dumps()))
                last = len(emitted) - 1
                for i, (point, values) in enumerate(emitted):
                    yield Row(
                        view=view.name,
                        key=int(user),
                        event_us=point,
                        values=json.dumps(values),
                        broker_ms=json.dumps(broker_ms) if i == last else None,
                        consumed=len(events) if i == last else 0,
                    )
            if changed:
                entries += len(changed)
                if entries > 2 * len(state) + 64:  # mostly superseded: rewrite the live entries
                    latest = dict(changed)
                    live = [
                        (k, latest[k] if k in latest else w if isinstance(w, str) else w.dumps())
                        for k, w in state.items()
                    ]
                    if live:
                        self.log.put(live)
                    else:
                        self.log.clear()
                    entries = len(live)
                else:
                    self.log.appendList(changed)
            # ms, rounded up: later than the watermark, as every expiry is after what was emitted
            wanted = -(-min(due.values()) // 1000) if due else None
            if timer is not None and timer != wanted:
                self.handle.deleteTimer(timer)
            if wanted is not None and wanted != timer:
                self.handle.registerTimer(wanted)
            token = stored[2] if stored else None
            if not due:
                if stored:
                    self.index.clear()
                    self.log.clear()
                token = None
            elif changed or wanted != stored[1]:
                token = uuid.uuid4().hex
                self.index.update((json.dumps(due), wanted, token, entries))
            if token is not None:
                from spark_jobs.worker_cache import WRITTEN

                WRITTEN[group] = (token, state)

        def handleInputRows(self, key, rows, timerValues):
            yield from self._step(key, rows, timerValues, fired_ms=None)

        def handleExpiredTimer(self, key, timerValues, expiredTimerInfo):
            yield from self._step(key, [], timerValues, expiredTimerInfo.getExpiryTimeInMs())

        def close(self) -> None:
            pass

    return VelocityProcessor


# --- sources --------------------------------------------------------------------------------------


def read_streams(spark, broker: str, streams: list[str], args) -> Any:
    """(stream, id, message, broker_ts) rows from Redis Streams or Kafka, by the broker URL."""
    if broker.startswith(("redis://", "rediss://")):
        from spark_jobs.redis_streams import RedisStreamsSource

        spark.dataSource.register(RedisStreamsSource)
        return (
            spark.readStream.format("redis_streams")
            .option("url", broker)
            .option("streams", ",".join(streams))
            .option("maxEventsPerBatch", str(args.max_events_per_batch))
            .option("startingOffsets", args.starting_offsets)
            .load()
        )
    if broker.startswith("kafka://"):
        from pyspark.sql import functions as F

        # Spark's Kafka source (the image adds org.apache.spark:spark-sql-kafka-0-10).
        raw = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", broker.removeprefix("kafka://"))
            .option("subscribe", ",".join(streams))
            .option("startingOffsets", args.starting_offsets)
            .option("maxOffsetsPerTrigger", str(args.max_events_per_batch))
            .load()
        )
        return raw.select(
            F.col("topic").alias("stream"),
            F.concat_ws("-", "partition", "offset").alias("id"),
            F.col("value").cast("string").alias("message"),
            F.col("timestamp").alias("broker_ts"),
        )
    raise SettingsError(
        f"--broker must be redis://host:port/db or kafka://host:port, got {broker!r}"
    )


def velocity_frame(source, views: list, watermark_seconds: int, erased: Any = None):
    """Events grouped by (view, key bucket), watermarked on event time, through the window
    engine per key; erased subjects' events and windows dropped (`erased`: a MirrorCheck)."""
    prepared = source.mapInPandas(prepare(views, erased), PREPARED_SCHEMA)
    return (
        prepared.withWatermark("watermark_ts", f"{int(watermark_seconds)} seconds")
        .groupBy("view", "bucket")
        .transformWithState(
            _processor_class()({v.name: v for v in views}, erased),
            OUTPUT_SCHEMA,
            outputMode="Update",
            timeMode="EventTime",
        )
    )


# --- the job --------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = job_parser("python -m spark_jobs.stream", __doc__)
    parser.add_argument("--checkpoint", required=True, help="Checkpoint directory (or URI).")
    parser.add_argument(
        "--broker",
        default=os.environ.get("STREAM_BROKER") or os.environ.get("BROKER_URL"),
        help="redis://host:port/db (Redis Streams) or kafka://host:port "
        "(default: $STREAM_BROKER, else $BROKER_URL).",
    )
    parser.add_argument("--views", nargs="*", default=None, help="Stream feature views (all).")
    parser.add_argument("--feature-repo", default=None, help="Feast repo (default: feature_repo/).")
    parser.add_argument("--watermark-seconds", type=int, default=10)
    parser.add_argument("--trigger-seconds", type=float, default=1.0)
    parser.add_argument("--max-events-per-batch", type=int, default=20000)
    parser.add_argument(
        "--landing-trigger-seconds",
        type=float,
        default=5.0,
        help="Micro-batch interval of the raw-event landing (default 5).",
    )
    parser.add_argument("--starting-offsets", choices=["earliest", "latest"], default="earliest")
    parser.add_argument(
        "--stop-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="Stop once every stream is read to its end and nothing arrived for this long "
        "(tests, the demo, replays). Default: run until stopped (SIGTERM stops cleanly).",
    )
    parser.add_argument("--metrics-file", default=None, help="Append per-batch lags (JSON lines).")
    parser.add_argument(
        "--broker-retention-seconds",
        type=float,
        default=86_400.0,
        help="Trim Redis Streams entries both queries committed and older than this "
        "(default a day; 0 trims everything committed).",
    )
    args = finish_args(parser, parser.parse_args(argv))
    if not args.broker:
        parser.error("--broker (or $STREAM_BROKER / $BROKER_URL) is required")
    for name in ("watermark_seconds", "max_events_per_batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if not 0 < args.trigger_seconds <= 3600:
        parser.error("--trigger-seconds must be in (0, 3600]")
    return args


def _check_definitions(checkpoint: str, views: list) -> None:
    """Refuse a checkpoint whose state was built for other definitions: its tiles are read back
    by position, so an added, removed or changed aggregation would read another's partials. The
    same for another layout of the state (another version of this job)."""
    path = Path(checkpoint) / DEFINITIONS_FILE
    current = {v.name: v.definition_hash for v in views}
    layout = Path(checkpoint) / LAYOUT_FILE
    if path.exists() and (not layout.exists() or layout.read_text() != STATE_LAYOUT):
        raise SettingsError(
            f"checkpoint {checkpoint} holds window state of another layout than this job's "
            f"({STATE_LAYOUT}). Start from a new --checkpoint, and run "
            "spark_jobs.velocity_backfill for the history."
        )
    if path.exists():
        recorded = json.loads(path.read_text())
        if recorded != current:
            changed = sorted(
                n for n in set(recorded) | set(current) if recorded.get(n) != current.get(n)
            )
            raise SettingsError(
                f"the stream feature views {changed} changed since checkpoint {checkpoint} was "
                "started (its window state holds the old aggregations). Start from a new "
                "--checkpoint, and run spark_jobs.velocity_backfill for the history."
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    layout.write_text(STATE_LAYOUT)  # first: a definitions file without it is an older layout
    path.write_text(json.dumps(current, sort_keys=True))


def _query_run_id(checkpoint: str) -> str:
    """The velocity query's id from Spark's checkpoint metadata: the same across restarts from
    that checkpoint (so a replayed micro-batch finds its commit), a new one if it was deleted."""
    metadata = Path(checkpoint) / "velocity" / "metadata"
    run_id = json.loads(metadata.read_text().splitlines()[0])["id"]
    (Path(checkpoint) / RUN_FILE).write_text(run_id)  # for people and tests
    return run_id


def _tips(broker: str, streams: list[str]) -> dict[str, str]:
    import redis

    client = redis.Redis.from_url(broker, socket_timeout=5)
    try:
        return {
            s: (last[0][0].decode() if (last := client.xrevrange(s, count=1)) else "0-0")
            for s in streams
        }
    finally:
        client.close()


def _committed(query) -> dict[str, str] | None:
    """The broker offsets (stream -> last entry id) the query's last micro-batch committed."""
    progress = query.lastProgress
    if not progress or not progress.get("sources"):
        return None
    end = progress["sources"][0].get("endOffset")
    if isinstance(end, str):  # JSON, or (Python data sources) the dict's repr
        import ast

        end = ast.literal_eval(end) if end.startswith("{'") else json.loads(end)
    return end if isinstance(end, dict) else None


def _caught_up(query, tips: dict[str, str]) -> bool:
    if query.status.get("isTriggerActive"):
        return False
    end = _committed(query)
    return end is not None and all(end.get(s, "0-0") == tip for s, tip in tips.items())


def _entry(entry_id: str) -> tuple[int, int]:
    millis, _, seq = entry_id.partition("-")
    return int(millis), int(seq or 0)


def _trim(broker: str, streams: list[str], queries: list, retention_seconds: float) -> None:
    """Drop broker entries that both queries have committed and that are older than the
    retention (the broker doubles as a replay buffer). Best effort: a failure waits for the next
    round. Kafka keeps its own retention."""
    if not broker.startswith(("redis://", "rediss://")):
        return
    ends = [_committed(q) for q in queries]
    if any(end is None for end in ends):
        return
    import redis

    floor = (int((time.time() - retention_seconds) * 1000), 0)
    try:
        client = redis.Redis.from_url(broker, socket_timeout=5)
        for stream in streams:
            committed = [end.get(stream) for end in ends]
            if any(c is None or c == "0-0" for c in committed):
                continue
            # XTRIM MINID drops ids below it: the committed entry itself stays. Exact ("=", not
            # "~"): approximate trimming keeps whole nodes of ~100 entries, every 30 s is cheap.
            below = min(min(_entry(c) for c in committed), floor)
            client.xtrim(stream, minid=f"{below[0]}-{below[1]}", approximate=False)
    except redis.RedisError as exc:
        log.warning("could not trim the broker: %s", exc)


def run(args: argparse.Namespace) -> int:
    from feast import FeatureStore
    from tenacity import Retrying, retry_if_exception_type, wait_exponential

    from providers.tidb import connection
    from spark_jobs.schema import ensure_schema
    from spark_jobs.settings import default_feature_repo
    from spark_jobs.velocity import ensure_table, load_views
    from spark_jobs.velocity_sink import Sinks

    db = Database.from_env(jdbc_jar=args.jdbc_jar, jdbc_driver=args.jdbc_driver)
    store = FeatureStore(repo_path=args.feature_repo or default_feature_repo())
    views = load_views(store, args.views)
    ensure_schema(db)
    with connection.connect(db.offline_store_config()) as conn:
        for view in views:
            ensure_table(conn, view)
    streams = sorted({v.kind.stream for v in views})
    _check_definitions(args.checkpoint, views)
    sinks = Sinks(db, store, views, Path(args.metrics_file) if args.metrics_file else None)
    # The workers check erased subjects against the online Redis's mirror of the tombstones and
    # refuse to guess without one: each (re)start makes it hold what TiDB holds (below).
    spark = spark_session(
        "velocity-stream",
        args.master,
        {
            "spark.ui.showConsoleProgress": "false",
            "spark.sql.streaming.stateStore.providerClass": (
                "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
            ),
            # Each micro-batch writes a changelog of the keys it touched, not a snapshot of
            # the whole store (Spark's recommended setting for RocksDB state).
            "spark.sql.streaming.stateStore.rocksdb.changelogCheckpointing.enabled": "true",
            "spark.sql.shuffle.partitions": "2",
            **args.conf,
        },
        jdbc_jar=None,
    )
    spark.sparkContext.setLogLevel("WARN")
    # It warns on every read of a key that has no state yet: a new user, every few events.
    jvm = spark.sparkContext._jvm
    jvm.org.apache.logging.log4j.core.config.Configurator.setLevel(
        "org.apache.spark.sql.execution.python.streaming.TransformWithStateInPySparkStateServer",
        jvm.org.apache.logging.log4j.Level.ERROR,
    )
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    def start_queries():
        source = read_streams(spark, args.broker, streams, args)
        trigger = {"processingTime": f"{args.trigger_seconds} seconds"}
        velocity = (
            velocity_frame(source, views, args.watermark_seconds, sinks.erased)
            .writeStream.queryName("velocity")
            .foreachBatch(sinks.velocity)
            .option("checkpointLocation", str(Path(args.checkpoint) / "velocity"))
            .trigger(**trigger)
            .start()
        )
        # Landing feeds the backfill, not serving: larger, less frequent batches leave the
        # cores to the velocity query.
        landing_every = max(args.trigger_seconds, args.landing_trigger_seconds)
        landing = (
            read_streams(spark, args.broker, streams, args)
            .writeStream.queryName("landing")
            .foreachBatch(sinks.landing)
            .option("checkpointLocation", str(Path(args.checkpoint) / "landing"))
            .trigger(processingTime=f"{landing_every} seconds")
            .start()
        )
        sinks.run_id = _query_run_id(args.checkpoint)
        return [velocity, landing]

    def supervise() -> None:
        queries = start_queries()
        idle_since = None
        next_trim = time.monotonic() + TRIM_EVERY_S
        try:
            while not stopping.is_set():
                for q in queries:
                    if q.exception() is not None or not q.isActive:
                        raise RuntimeError(f"query {q.name} stopped: {q.exception()}")
                sinks.count_late(queries[0])
                sinks.record_progress(queries[0])
                if time.monotonic() >= next_trim:
                    _trim(args.broker, streams, queries, args.broker_retention_seconds)
                    next_trim = time.monotonic() + TRIM_EVERY_S
                if args.stop_when_idle is not None and args.broker.startswith("redis"):
                    tips = _tips(args.broker, streams)
                    if all(_caught_up(q, tips) for q in queries):
                        idle_since = idle_since or time.monotonic()
                        if time.monotonic() - idle_since >= args.stop_when_idle:
                            return
                    else:
                        idle_since = None
                time.sleep(0.25)
        finally:
            sinks.count_late(queries[0])
            _trim(args.broker, streams, queries, args.broker_retention_seconds)
            for q in queries:
                q.stop()

    log.info("stream: views %s from %s", [v.name for v in views], streams)
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(RuntimeError),
            wait=wait_exponential(multiplier=1, max=30),
            before_sleep=lambda s: log.warning(
                "restarting from the checkpoint after: %s", s.outcome.exception()
            ),
        ):
            with attempt:
                if not stopping.is_set():
                    try:  # a restart may follow Redis losing its data: the mirror first
                        sinks.sync_erased()
                    except Exception as exc:  # the workers fail closed without it: they retry
                        log.warning("could not rewrite the erased subjects' mirror: %s", exc)
                    supervise()
    finally:
        spark.stop()
    print(json.dumps({"run_id": sinks.run_id, **sinks.totals}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    level = os.environ.get("STREAM_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # one INFO line per callback otherwise
    return job_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
