"""Where velocity rows and raw events go: TiDB (versioned, exactly once) and Redis (Feast's format).

`write_commit` writes one micro-batch (stream) or chunk (backfill) of rows to the views' tables
and records it in `velocity_commits` in the same transaction, keyed by (run, commit): a commit
replayed after a crash (Spark re-runs a batch whose offsets it had not committed) finds its record
and writes nothing twice. Every row of a commit carries the commit's `created_ts`, the instant it
became readable.

`write_online` puts each key's latest row into Redis exactly as Feast's Redis store lays it out,
compare-and-write inside Redis: a later change point replaces the stored one, and so does a
corrected value at the same change point (a late event inside the watermark).

`land_raw` writes broker messages to the raw event tables (INSERT IGNORE on the event id, so a
redelivered event lands once); a message that is not a valid event goes to `dead_letter_events`
with the reason, never silently away.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from providers.events import BY_STREAM, KINDS, decode, to_row
from providers.tidb import sql
from spark_jobs.velocity import VERSION_COLUMNS, VelocityView

log = logging.getLogger(__name__)


def _insert(
    cur, table: str, columns: Sequence[str], rows: list[tuple], batch: int, ignore: bool = False
) -> None:
    statement = sql.insert(table, columns, ignore=ignore)
    for start in range(0, len(rows), batch):
        cur.executemany(statement, rows[start : start + batch])


def write_commit(
    conn,
    run_id: str,
    commit_id: int,
    rows_by_view: dict[VelocityView, list[dict[str, Any]]],
    batch_rows: int = 5000,
) -> tuple[bool, dt.datetime]:
    """Write one commit's rows in one transaction; False when it was written before."""
    with conn.cursor() as cur:
        conn.begin()
        try:
            cur.execute(
                "SELECT committed_at FROM velocity_commits WHERE run_id = %s AND commit_id = %s "
                "FOR UPDATE",
                (run_id, commit_id),
            )
            found = cur.fetchone()
            if found:
                conn.rollback()
                return False, found[0]
            created = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            total = 0
            for view, rows in rows_by_view.items():
                columns = view.columns
                values = [
                    (*(r[c] for c in columns[: -len(VERSION_COLUMNS)]), r["event_ts"])
                    + (created, run_id, commit_id)
                    for r in rows
                ]
                _insert(cur, view.table, columns, values, batch_rows)
                total += len(rows)
            cur.execute(
                "INSERT INTO velocity_commits (run_id, commit_id, rows_written, committed_at) "
                "VALUES (%s, %s, %s, %s)",
                (run_id, commit_id, total, created),
            )
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    return True, created


def write_online(
    client, config, views: dict[str, Any], rows_by_view: dict[VelocityView, list[dict]]
) -> int:
    """The latest row per key of each view, into Redis in Feast's format; keys written."""
    import pyarrow as pa
    from feast.infra.online_stores.redis import _versioned_fv_name
    from feast.value_type import ValueType

    from providers import feast_redis

    written = 0
    for view, rows in rows_by_view.items():
        latest: dict[int, dict] = {}
        for row in rows:  # rows of a key come in change-point order; later versions last
            key = row[view.join_key]
            if key not in latest or row["event_ts"] >= latest[key]["event_ts"]:
                latest[key] = row
        if not latest:
            continue
        sfv = views[view.name]
        ts_field, fields = feast_redis.view_fields(_versioned_fv_name(sfv, config), view.features)
        chosen = list(latest.values())
        keys = feast_redis.entity_keys(
            [pa.array([r[view.join_key] for r in chosen], pa.int64())],
            [(view.join_key, ValueType.INT64)],
            config.project,
            config.entity_key_serialization_version,
        )
        epoch = dt.datetime(1970, 1, 1)
        micros = pa.array([(r["event_ts"] - epoch) // dt.timedelta(microseconds=1) for r in chosen])
        stamps, _ = feast_redis.timestamp_bytes(micros)
        types = {f.name: f.dtype for f in sfv.features}
        arrow = {"Int64": pa.int64(), "Float64": pa.float64(), "String": pa.string()}
        values = [
            feast_redis.value_bytes(
                pa.array([r[f] for r in chosen], arrow[str(types[f])]),
                types[f].to_value_type(),
            )
            for f in view.features
        ]
        written += feast_redis.write_scripted(
            client, keys, ts_field, fields, stamps, values, replace_equal=True
        )
    return written


def land_raw(
    conn,
    messages: Iterable[tuple[str, str, str | None]],
    batch_rows: int = 5000,
    erased: Any = None,
) -> tuple[int, int, int]:
    """Broker messages (stream, entry id, message) into the raw tables; (landed, dead letters,
    events of erased subjects dropped). `erased`: providers.erasure.MirrorCheck, or None."""
    from pydantic import ValidationError

    by_kind: dict[str, list[tuple]] = {}
    dead: list[tuple] = []
    users: dict[str, list[int]] = {}
    for stream, entry_id, message in messages:
        kind = BY_STREAM.get(stream)
        try:
            if kind is None:
                raise ValueError(f"no event kind reads stream {stream!r}")
            if message is None:
                raise ValueError("the entry has no message field")
            event = decode(kind, message)
        except (ValidationError, ValueError) as exc:
            dead.append((stream, entry_id, (message or "")[:65000], str(exc)[:4000]))
            continue
        row = to_row(kind, event)
        by_kind.setdefault(kind.name, []).append(tuple(row[c] for c in kind.columns))
        users.setdefault(kind.name, []).append(int(event.user_id))
    dropped = 0
    if erased is not None and (users or dead):
        from providers.erasure import subject_of

        # A dead letter keeps the message: one naming an erased subject is not kept either.
        named = [subject_of(d[2]) for d in dead]
        gone = erased.among({u for us in users.values() for u in us} | {n for n in named if n})
        if gone:
            for name, rows in list(by_kind.items()):
                kept = [r for r, u in zip(rows, users[name], strict=True) if u not in gone]
                dropped += len(rows) - len(kept)
                by_kind[name] = kept
            dead_kept = [d for d, n in zip(dead, named, strict=True) if n not in gone]
            dropped += len(dead) - len(dead_kept)
            dead = dead_kept
    with conn.cursor() as cur:
        conn.begin()
        try:
            for name, rows in by_kind.items():
                kind = KINDS[name]
                _insert(cur, kind.table, kind.columns, rows, batch_rows, ignore=True)
            if dead:
                now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
                _insert(
                    cur,
                    "dead_letter_events",
                    ["stream", "entry_id", "message", "error", "received_at"],
                    [(*d, now) for d in dead],
                    batch_rows,
                    ignore=True,
                )
            conn.commit()
        except Exception:
            conn.rollback()
            raise
    return sum(len(r) for r in by_kind.values()), len(dead), dropped


class Sinks:
    """The stream job's foreachBatch sinks (run in the driver, once per micro-batch)."""

    def __init__(self, db, store, views: list, metrics_file: Path | None):
        self.db = db
        self.store = store
        self.views = {v.name: v for v in views}
        self.sfvs = {v.name: store.get_stream_feature_view(v.name) for v in views}
        self.run_id: str | None = None  # the velocity query's id, set once it has started
        self.metrics_file = metrics_file
        self._redis: Any = None
        from providers.erasure import MirrorCheck

        self.erased = MirrorCheck(store.config.online_store, store.config.project)
        self.totals = {
            "rows": 0,
            "events": 0,
            "batches": 0,
            "landed": 0,
            "dead_letters": 0,
            "late_events": 0,
            "erased_events": 0,  # events of erased subjects, dropped (providers/erasure.py)
        }
        self._late_seen: dict[str, int] = {}  # Spark run id -> last batch counted

    def record_progress(self, query) -> None:
        """The velocity query's watermark into Redis (providers.feast_redis.progress_key): every
        key's values are complete up to it. Best effort: a failed write is retried next time."""
        from providers import feast_redis

        progress = query.lastProgress or {}
        watermark = (progress.get("eventTime") or {}).get("watermark")
        if not watermark or watermark == getattr(self, "_progress", None):
            return
        micros = int(pd.Timestamp(watermark).value // 1000)
        if micros <= 0:
            return
        try:
            self.redis().hset(
                feast_redis.progress_key(self.store.config.project),
                mapping={name: str(micros) for name in self.views},
            )
            self._progress = watermark
        except Exception as exc:  # Redis down: the micro-batches fail and retry too
            log.warning("could not record the stream's progress: %s", exc)

    def count_late(self, query) -> None:
        """Events the watermark dropped before the state (Spark's per-batch count): they are not
        in any stream value, and they are in the raw tables for the backfill."""
        last = query.lastProgress
        if not last:
            return
        seen = self._late_seen.get(str(last.get("runId")), -1)
        if int(last.get("batchId", -1)) <= seen:
            return
        # The whole recent history (up to 100 progress reports) only when batches were missed:
        # parsing it four times a second took 14% of the driver's samples (py-spy, 2,000 events/s).
        missed = int(last.get("batchId", -1)) > seen + 1
        for progress in query.recentProgress if missed else [last]:
            batch = (str(progress.get("runId")), int(progress.get("batchId", -1)))
            if batch[1] <= self._late_seen.get(batch[0], -1):
                continue
            self._late_seen[batch[0]] = batch[1]
            log.debug(
                "velocity batch %s: %s rows in, %s, state %s",
                batch[1],
                progress.get("numInputRows"),
                {k: v for k, v in (progress.get("durationMs") or {}).items() if v},
                [
                    {
                        k: v
                        for k, v in {**op, **op.get("customMetrics", {})}.items()
                        if v and k != "customMetrics"
                    }
                    for op in progress.get("stateOperators", [])
                ],
            )
            for operator in progress.get("stateOperators", []):
                dropped = int(operator.get("numRowsDroppedByWatermark", 0))
                if dropped:
                    self.totals["late_events"] += dropped
                    log.warning(
                        "batch %d: %d late events (behind the watermark)", batch[1], dropped
                    )

    def erased_among(self, keys) -> set[int]:
        """The erased among `keys`; a missing mirror (Redis restarted empty) is rewritten from
        TiDB first. Redis errors raise: the batch fails and the job restarts from its checkpoint."""
        from providers import erasure

        try:
            return self.erased.among(keys)
        except erasure.MirrorMissing:
            self.sync_erased()
            return self.erased.among(keys)

    def sync_erased(self) -> None:
        from providers import erasure

        erasure.sync_mirror(self.db.offline_store_config(), self.redis(), self.store.config.project)

    def redis(self):
        if self._redis is None:
            from feast.infra.online_stores.redis import RedisOnlineStore

            self._redis = RedisOnlineStore()._get_client(self.store.config.online_store)
        return self._redis

    def velocity(self, frame, batch_id: int) -> None:
        from providers.tidb import connection

        t0 = time.perf_counter()
        out = frame.toPandas()
        t1 = time.perf_counter()
        rows_by_view: dict[Any, list[dict]] = {}
        broker_ms: list[int] = []
        consumed = 0
        for record in out.itertuples(index=False):
            view = self.views[record.view]
            values = json.loads(record.values)
            row = {view.join_key: int(record.key), "event_ts": _from_us(int(record.event_us))}
            row.update(zip(view.features, values, strict=True))
            rows_by_view.setdefault(view, []).append(row)
            if isinstance(record.broker_ms, str):
                broker_ms.extend(json.loads(record.broker_ms))
            consumed += int(record.consumed)
        # A subject erased while this batch ran: none of its rows are written (fails closed).
        keys = {r[v.join_key] for v, rows in rows_by_view.items() for r in rows}
        gone = self.erased_among(keys)
        if gone:
            rows_by_view = {
                v: [r for r in rows if r[v.join_key] not in gone]
                for v, rows in rows_by_view.items()
            }
        with connection.connect(self.db.offline_store_config()) as conn:
            assert self.run_id is not None
            fresh, _ = write_commit(
                conn, self.run_id, batch_id, rows_by_view, self.db.write_batch_rows
            )
        t2 = time.perf_counter()
        write_online(self.redis(), self.store.config, self.sfvs, rows_by_view)
        online_at = time.time() * 1000
        log.debug(
            "velocity sink %d: compute+collect %.0f ms, TiDB %.0f ms, Redis %.0f ms",
            batch_id,
            (t1 - t0) * 1000,
            (t2 - t1) * 1000,
            (time.perf_counter() - t2) * 1000,
        )
        rows = sum(len(r) for r in rows_by_view.values())
        self.totals["rows"] += rows
        self.totals["events"] += consumed
        self.totals["batches"] += 1
        if self.metrics_file is not None and (rows or consumed):
            lags = [online_at - ms for ms in broker_ms]
            with self.metrics_file.open("a") as fh:
                fh.write(
                    json.dumps(
                        {
                            "batch": batch_id,
                            "rows": rows,
                            "events": consumed,
                            "written_to_tidb": fresh,
                            "online_at_ms": online_at,
                            "lags_ms": lags,
                        }
                    )
                    + "\n"
                )

    def landing(self, frame, batch_id: int) -> None:
        """The micro-batch's messages are landed from the Python workers (INSERT IGNORE, one
        transaction per Arrow batch of a partition), so the decoding and escaping run in
        parallel and outside the driver, whose one interpreter also runs the velocity sink. A
        replayed micro-batch lands nothing twice (the event id is the key), though `landed`
        counts it again."""
        config, batch_rows = self.db.offline_store_config(), self.db.write_batch_rows
        erased = self.erased

        def land(frames):
            from providers.tidb import connection
            from spark_jobs.velocity_sink import land_raw

            for part in frames:
                messages = list(zip(part["stream"], part["id"], part["message"], strict=True))
                if not messages:
                    continue
                with connection.connect(config) as conn:
                    landed, dead, dropped = land_raw(conn, messages, batch_rows, erased)
                yield pd.DataFrame({"landed": [landed], "dead": [dead], "erased": [dropped]})

        counts = (
            frame.select("stream", "id", "message")
            .mapInPandas(land, "landed long, dead long, erased long")
            .collect()
        )
        landed, dead = sum(r.landed for r in counts), sum(r.dead for r in counts)
        dropped = sum(r.erased for r in counts)
        self.totals["landed"] += landed
        self.totals["dead_letters"] += dead
        self.totals["erased_events"] += dropped
        if dropped:
            log.warning("batch %d: %d events of erased subjects dropped", batch_id, dropped)
        if dead:
            log.warning(
                "batch %d: %d messages were not valid events (dead_letter_events)", batch_id, dead
            )


def _from_us(micros: int) -> Any:
    import datetime as dt

    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)  # naive UTC
