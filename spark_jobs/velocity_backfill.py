"""Velocity backfill: the stream feature views' aggregations from the raw events in TiDB.

    python -m spark_jobs.velocity_backfill --start 2026-01-01 --end 2026-03-31
        [--views user_login_velocity ...] [--new-run] [--take-over] [--master URL] [--conf k=v]

For cold start and training sets: every change point (an event, or a tile leaving a window) in
[start 00:00, end + 1 day 00:00) UTC, computed by the same engine the stream job runs
(spark_jobs/windows.py through spark_jobs/velocity.py), exact at the event's instant. Events from
the longest window before `start` are read too, so the first rows are complete.

The rows of a set of keys are written in one transaction with its record in `velocity_commits`
(all the rows of a key in the same one, so a reader never sees part of a key's history). An
interrupted run resumes (the same command again): chunks already recorded are skipped. Running a
finished range again writes a new version, as the batch backfill does.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from spark_jobs import runs
from spark_jobs.settings import (
    Database,
    SettingsError,
    default_feature_repo,
    finish_args,
    iso_date,
    job_main,
    job_parser,
    job_session,
)

JOB = "velocity_backfill"
CHUNK_KEYS = (
    2000  # a range of user ids per transaction (dense ids: a few tens of thousands of rows)
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = job_parser("python -m spark_jobs.velocity_backfill", __doc__)
    parser.add_argument("--start", type=iso_date, required=True, help="First day (UTC).")
    parser.add_argument("--end", type=iso_date, required=True, help="Last day (UTC), inclusive.")
    parser.add_argument("--views", nargs="*", default=None, help="Stream feature views (all).")
    parser.add_argument("--feature-repo", default=None, help="Feast repo (default: feature_repo/).")
    parser.add_argument("--new-run", action="store_true", help="Do not resume a failed run.")
    parser.add_argument(
        "--take-over", action="store_true", help="Resume a run marked running (its process died)."
    )
    args = finish_args(parser, parser.parse_args(argv))
    if args.end < args.start:
        parser.error(f"--end {args.end} is before --start {args.start}")
    return args


def compute(spark, db: Database, view, start: dt.datetime, end: dt.datetime):
    """The view's rows for change points in [start, end): a DataFrame of (key, features, event_ts)."""
    import pandas as pd

    from spark_jobs.jdbc import read_events
    from spark_jobs.velocity import backfill_key, raw_frame
    from spark_jobs.windows import micros

    longest = max(a.window_us for a in view.aggs)
    since = start - dt.timedelta(microseconds=longest)
    raw = read_events(spark, db, view.kind.table, since, end)
    last = micros(end) - 1
    schema = ", ".join(
        [
            "key long",
            *(
                f"`{f}` {'bigint' if t == 'Int64' else 'double' if t == 'Float64' else 'string'}"
                for f, t in zip(view.features, view.types, strict=True)
            ),
            "event_ts timestamp",
        ]
    )

    def rows(frame: pd.DataFrame) -> pd.DataFrame:
        key = int(frame[view.join_key].iloc[0])
        computed = backfill_key(view, key, raw_frame(view, frame), last)
        out = pd.DataFrame(computed, columns=[view.join_key, *view.features, "event_ts"])
        out = out[out["event_ts"] >= start.replace(tzinfo=None)]
        return out.rename(columns={view.join_key: "key"})

    return raw.groupBy(view.join_key).applyInPandas(rows, schema)


VIEW_SPAN = 2**58  # commit ids: view index * VIEW_SPAN + key // CHUNK_KEYS (fits a BIGINT)
MAX_VIEWS = 31


def write(frame, db: Database, view, view_index: int, run_id: str, done: set[int]) -> dict:
    """Stream the rows to the driver in key order and write each range of CHUNK_KEYS keys
    (user_id // CHUNK_KEYS) in one transaction recorded in velocity_commits: all the rows of a
    key together, and a resumed run finds the same ranges whatever keys were added since."""
    totals = {"rows": 0, "commits": 0, "skipped": 0}
    chunk: list[dict] = []
    current: int | None = None

    def flush() -> None:
        if not chunk or current is None:
            return
        commit_id = view_index * VIEW_SPAN + current
        if commit_id in done:
            totals["skipped"] += 1
            return
        if not _commit(db, view, run_id, commit_id, chunk):
            raise RuntimeError(
                f"commit {commit_id} of run {run_id} was recorded by another process meanwhile"
            )
        totals["rows"] += len(chunk)
        totals["commits"] += 1

    for record in frame.orderBy("key", "event_ts").toLocalIterator(prefetchPartitions=True):
        key_range = int(record["key"]) // CHUNK_KEYS
        if key_range != current:
            flush()
            chunk, current = [], key_range
        chunk.append(record.asDict())
    flush()
    return totals


def _commit(db: Database, view, run_id: str, commit_id: int, records: list[dict]) -> bool:
    from providers.tidb import connection
    from spark_jobs.velocity_sink import write_commit

    rows: list[dict[str, Any]] = []
    for record in records:
        row = {view.join_key: int(record["key"]), "event_ts": _naive(record["event_ts"])}
        row.update((f, record[f]) for f in view.features)
        rows.append(row)
    with connection.connect(db.offline_store_config()) as conn:
        written, _ = write_commit(conn, run_id, commit_id, {view: rows}, db.write_batch_rows)
    return written


def _naive(value: dt.datetime) -> dt.datetime:
    """Spark hands timestamps over in the session zone (UTC) as naive or aware datetimes."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def run(args: argparse.Namespace) -> int:
    from feast import FeatureStore

    from providers.tidb import connection
    from spark_jobs.schema import ensure_schema
    from spark_jobs.velocity import ensure_table, load_views

    db = Database.from_env(jdbc_jar=args.jdbc_jar, jdbc_driver=args.jdbc_driver)
    ensure_schema(db)
    store = FeatureStore(repo_path=args.feature_repo or default_feature_repo())
    views = load_views(store, args.views)
    if len(views) > MAX_VIEWS:
        raise SettingsError(f"at most {MAX_VIEWS} views per run; pass --views in groups")
    with connection.connect(db.offline_store_config()) as conn:
        for view in views:
            ensure_table(conn, view)
    names = sorted(v.name for v in views)
    run_ = runs.start(
        db,
        JOB,
        names,
        runs.definition_hash([v.definition_hash for v in views]),
        {"start": args.start, "end": args.end, "views": names},
        args.start,
        args.end,
        args.new_run,
        args.take_over,
    )
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        cur.execute("SELECT commit_id FROM velocity_commits WHERE run_id = %s", (run_.run_id,))
        done = {int(r[0]) for r in cur.fetchall()}
    start = dt.datetime.combine(args.start, dt.time(), dt.UTC)
    end = dt.datetime.combine(args.end + dt.timedelta(days=1), dt.time(), dt.UTC)
    print(f"{'Resuming' if run_.resumed else 'Starting'} run {run_.run_id}: {names}", flush=True)
    started = time.monotonic()
    spark = job_session("velocity-backfill", args, db)
    summary: dict[str, dict[str, int]] = {}
    try:
        for index, view in enumerate(sorted(views, key=lambda v: v.name)):
            frame = compute(spark, db, view, start, end)
            summary[view.name] = write(frame, db, view, index, run_.run_id, done)
    except BaseException as exc:
        spark.stop()
        runs.finish(db, run_.run_id, "failed", f"{type(exc).__name__}: {exc}")
        print(f"Run {run_.run_id} failed: {exc}\nRun the same command to resume.", file=sys.stderr)
        raise
    spark.stop()
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        total = sum(s["rows"] for s in summary.values())
        cur.execute(
            "UPDATE feature_runs SET rows_written = rows_written + %s WHERE run_id = %s",
            (total, run_.run_id),
        )
    runs.finish(db, run_.run_id, "succeeded")
    print(
        json.dumps(
            {"run_id": run_.run_id, "seconds": round(time.monotonic() - started, 1), **summary}
        ),
        flush=True,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
