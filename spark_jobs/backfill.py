"""Backfill (cold start) and daily batch: compute feature sets for each day of a range.

    python -m spark_jobs.backfill --start 2026-01-01 --end 2026-03-31 [--features transactions,profile]
                                  [--materialize] [--new-run] [--chunk-days N] [--compare-stored]
                                  [--master URL] [--conf k=v]

Each (feature set, day) is a partition: written whole with the run's id and its own `created_ts`,
then recorded in `feature_run_partitions`. Rows are change-only (spark_jobs/features.py): a user
gets a row on a day when a value changes, on the first day of each chunk when it has a value (with
--compare-stored, on the range's first day only when it differs from what the stored rows answer
the day before), and wherever an older version has a row for a day this run computes. If the job dies, the next invocation with the same
parameters resumes that run and skips the partitions already written; running a finished range
again writes a new version (nothing is overwritten). `--materialize` then runs
`feast materialize` for the range. The daily batch job is this with --start = --end = yesterday.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from spark_jobs import runs
from spark_jobs.features import (
    FEATURE_SETS,
    FeatureSet,
    against_stored,
    as_of_timestamp,
    versioned,
)
from spark_jobs.settings import (
    Database,
    default_feature_repo,
    finish_args,
    iso_date,
    job_main,
    job_parser,
    job_session,
    positive_int,
)

JOB = "backfill"
MAX_DAYS = 3660
MIN_CHUNK_DAYS = 91


def _feature_list(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FEATURE_SETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown feature set(s) {unknown or text!r}; choose from {', '.join(FEATURE_SETS)}"
        )
    return list(dict.fromkeys(names))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = job_parser("python -m spark_jobs.backfill", __doc__)
    parser.add_argument(
        "--start", type=iso_date, required=True, help="First as-of day (UTC), e.g. 2026-01-01."
    )
    parser.add_argument(
        "--end", type=iso_date, required=True, help="Last as-of day (UTC), inclusive."
    )
    parser.add_argument(
        "--features",
        type=_feature_list,
        default=list(FEATURE_SETS),
        help=f"Comma-separated feature sets (default: all: {','.join(FEATURE_SETS)}).",
    )
    parser.add_argument(
        "--chunk-days",
        type=positive_int,
        default=None,
        help="Days computed from one read of the raw events: the unit of resume. Default: per "
        f"feature set, the longer of {MIN_CHUNK_DAYS} days and its longest window (every chunk "
        "also reads one window of events before it). Lower it if memory is short.",
    )
    parser.add_argument(
        "--new-run",
        action="store_true",
        help="Start a new run even if an unfinished one with these parameters exists.",
    )
    parser.add_argument(
        "--take-over",
        action="store_true",
        help="Resume a run of these parameters that is marked running but whose process is gone.",
    )
    parser.add_argument(
        "--materialize",
        action="store_true",
        help="Run `feast materialize` for the range afterwards.",
    )
    parser.add_argument(
        "--feature-repo",
        default=default_feature_repo(),
        help="Feast repo for --materialize (default: $FEATURE_REPO or ./feature_repo).",
    )
    parser.add_argument(
        "--compare-stored",
        action="store_true",
        help="Compare the range's first day with what the stored rows answer the day before and "
        "write only the differences (a daily run then writes changes, not every user's value). "
        "The comparison ranks every stored row of each feature set in the database: on MariaDB "
        "it took over 10 minutes for 29 M rows (docs/spark_jobs.md), so it is off by default.",
    )
    parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs only).")
    args = parser.parse_args(argv)
    if args.end < args.start:
        parser.error(f"--end {args.end} is before --start {args.start}")
    if (args.end - args.start).days + 1 > MAX_DAYS:
        parser.error(f"the range has more than {MAX_DAYS} days; split it")
    return finish_args(parser, args)


@dataclass
class Summary:
    written: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    events: int = 0  # raw events computed from in the range, each source table once
    counted_sources: set[str] = field(default_factory=set)


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def chunks(days: list[dt.date], size: int) -> list[list[dt.date]]:
    return [days[i : i + size] for i in range(0, len(days), size)]


def chunk_days_of(fs: FeatureSet, chunk_days: int | None) -> int:
    return chunk_days or max(MIN_CHUNK_DAYS, fs.lookback_days)


def older_versions(spark, db: Database, fs: FeatureSet, run_id: str, days: list[dt.date]):
    """(user_id, day) of the rows other runs recorded for `days`, or None when there are none.

    A re-run writes a row wherever an older version has one (see spark_jobs/features.py). Only
    runs with recorded partitions count: other rows are never read. The read goes through the
    (run_id, event_ts) index.
    """
    from pyspark.sql import functions as F

    from spark_jobs.jdbc import read_events

    others = runs.runs_with_partitions(db, fs.name, days[0], days[-1], exclude=run_id)
    if not others:
        return None
    end = as_of_timestamp(days[-1]) + dt.timedelta(days=1)
    rows = read_events(spark, db, fs.table, as_of_timestamp(days[0]), end)
    return rows.where(F.col("run_id").isin(others)).select(
        "user_id", F.date_sub(F.to_date("event_ts"), 1).alias("day")
    )


def stored_answers(spark, db: Database, fs: FeatureSet, day: dt.date, schema):
    """(user_id, columns) typed as `schema`: what the recorded rows of `fs` answer the day before
    `day` (the latest per user at or before that day's instant, as Feast reads them), or None
    when no run recorded a day of `fs` before `day`. Deduplicated in the database: one row per
    user comes back."""
    import pyarrow as pa

    from providers.tidb import reader, sql

    if not runs.recorded_before(db, fs.name, day):
        return None
    statement = sql.pull_latest(
        f"({runs.recorded_rows(fs.table, fs.name, list(fs.columns))})",
        ["user_id"],
        list(fs.columns),
        "event_ts",
        "created_ts",
        None,
        as_of_timestamp(day - dt.timedelta(days=1)),
    )
    table = reader.read_table(db.offline_store_config(), statement)
    columns = {
        name: table.column(name).cast(pa.string()) if name in fs.lists else table.column(name)
        for name in ["user_id", *fs.columns]
    }
    return spark.createDataFrame(pa.table(columns), schema)  # Arrow in, not row by row


def backfill_feature_set(
    spark,
    db: Database,
    fs: FeatureSet,
    days: list[dt.date],
    run: runs.Run,
    chunk_days: int | None,
    summary: Summary,
    progress,
    events: dict[dt.date, int],
    compare_stored: bool = False,
) -> None:
    """Compute and write `fs` for `days`, a chunk at a time: one read of the raw events, one write.

    Every day of a chunk is its own partition in the bookkeeping; days are recorded only once the
    chunk's write has finished, so an interrupted write is redone (after removing what it left).
    """
    from spark_jobs.jdbc import read_events, write_rows

    counted = False
    for chunk in chunks(days, chunk_days_of(fs, chunk_days)):
        todo = [d for d in chunk if (fs.name, d) not in run.done]
        summary.skipped[fs.name] = summary.skipped.get(fs.name, 0) + len(chunk) - len(todo)
        in_chunk = sum(events.get(d, 0) for d in chunk)
        if not todo:
            progress.update(in_chunk)
            continue
        # Days are recorded in order once a chunk is written, so what is left of a chunk is one
        # run of consecutive days: `compute` needs no knowledge of rows between its days.
        if todo != chunk[len(chunk) - len(todo) :]:
            raise RuntimeError(
                f"Run {run.run_id} recorded {fs.name} days out of order ({todo[0]} .. "
                f"{todo[-1]} left with gaps): start a new run with --new-run."
            )
        if run.resumed:
            for day in todo:
                runs.clear_partition(db, fs.table, run.run_id, as_of_timestamp(day))
        # Events from the start of the longest window of the chunk's first day to its last day's end.
        start = dt.datetime.combine(
            todo[0] - dt.timedelta(days=fs.lookback_days), dt.time(), tzinfo=dt.UTC
        )
        daily = fs.prepare(
            read_events(spark, db, fs.source, start, as_of_timestamp(todo[-1]))
        ).cache()
        created = runs.utc_now()
        try:
            forced = older_versions(spark, db, fs, run.run_id, todo)
            computed = fs.compute(daily, todo, forced).cache()
            cached = [computed]
            if compare_stored and todo[0] == days[0]:
                # The range's first day is a key frame: keep only what the stored rows do not
                # already answer (a daily run writes the day's changes, not every user's value).
                # Later chunks keep their key frames: the comparison reads every stored row.
                schema = computed.select("user_id", *fs.columns).schema
                stored = stored_answers(spark, db, fs, todo[0], schema)
                if stored is not None:
                    computed = against_stored(
                        computed, stored, todo[0], fs.columns, fs.lists, forced
                    ).cache()
                    cached.append(computed)
            per_day = {
                r["as_of_day"]: r["count"] for r in computed.groupBy("as_of_day").count().collect()
            }
            write_rows(versioned(computed, fs, created, run.run_id), db, fs.table)
            for frame in cached:
                frame.unpersist()
        finally:
            daily.unpersist()
        for day in todo:
            count = per_day.get(day, 0)
            runs.record_partition(db, run.run_id, fs.name, day, count, created)
            summary.written[fs.name] = summary.written.get(fs.name, 0) + count
            summary.partitions[fs.name] = summary.partitions.get(fs.name, 0) + 1
        if fs.source not in summary.counted_sources:
            summary.events += in_chunk
            counted = True
        progress.update(in_chunk)
    if counted:  # each source's events once, by the first set that computed them
        summary.counted_sources.add(fs.source)


def events_per_day(
    db: Database, sources: set[str], start: dt.date, end: dt.date
) -> dict[str, dict[dt.date, int]]:
    """Raw events per source table and day inside the range (for progress and the summary)."""
    from providers.tidb import connection, sql

    lo = dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC)
    out: dict[str, dict[dt.date, int]] = {}
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        for table in sorted(sources):
            statement, params = sql.count_per_day(table, "event_ts", lo, as_of_timestamp(end))
            cur.execute(statement, params)
            out[table] = {day: int(n) for day, n in cur.fetchall()}
    return out


def materialize(feature_repo: str, sets: list[FeatureSet], start: dt.date, end: dt.date) -> None:
    """`feast materialize` of the backfilled views over the range, then `refresh_online`."""
    feast = str(Path(sys.executable).parent / "feast")
    window = [as_of_timestamp(d).strftime("%Y-%m-%dT%H:%M:%S") for d in (start, end)]
    views = [arg for fs in sets for arg in ("--views", fs.feature_view)]
    print(f"$ feast -c {feature_repo} materialize {' '.join(window)} {' '.join(views)}", flush=True)
    subprocess.run([feast, "-c", feature_repo, "materialize", *window, *views], check=True)
    refreshed = refresh_online(
        feature_repo, [fs.feature_view for fs in sets], as_of_timestamp(start), as_of_timestamp(end)
    )
    print(
        f"Refreshed {refreshed} online rows whose newest version came from this range.", flush=True
    )


def refresh_online(
    feature_repo: str, views: list[str], start: dt.datetime, end: dt.datetime
) -> int:
    """Write each key's newest version to Redis when its newest event time lies in [start, end].

    Feast's Redis store keeps a value unless the incoming event time is strictly newer, so a re-run
    (same event time, later version) never replaces what `feast materialize` wrote before. This
    writes, through Feast, each key's latest row of the whole table (latest event time, then latest
    version) with that check off: only rows that are the newest a key has, so nothing regresses.
    """
    from feast import FeatureStore

    from providers import erasure

    store = FeatureStore(repo_path=feature_repo)
    erased = erasure.erased_keys(store.config.offline_store)
    store.config.online_store.skip_dedup = (
        True  # this store object only: overwrite same-time values
    )
    offline = store._get_provider().offline_store
    far = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)
    written = 0
    for name in views:
        fv = store.get_feature_view(name)
        source = fv.batch_source
        job = offline.pull_latest_from_table_or_query(
            store.config,
            source,
            [c.name for c in fv.entity_columns],
            [f.name for f in fv.features],
            source.timestamp_field,
            source.created_timestamp_column,
            start,
            far,
        )
        rows = job.to_df()
        ts = rows[source.timestamp_field]
        rows = rows[(ts >= start) & (ts <= end)]
        if erased and erasure.SUBJECT_KEY in rows.columns:  # never brought back online
            rows = rows[~rows[erasure.SUBJECT_KEY].isin(erased)]
        if len(rows):
            store.write_to_online_store(name, rows)
        written += len(rows)
    return written


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from spark_jobs.schema import ensure_schema

    db = Database.from_env(jdbc_jar=args.jdbc_jar, jdbc_driver=args.jdbc_driver)
    ensure_schema(db)
    args.features = sorted(args.features)  # the run's identity does not depend on flag order
    sets = [FEATURE_SETS[name] for name in args.features]
    days = days_between(args.start, args.end)
    definition_hash = runs.definition_hash([fs.definition_hash() for fs in sets])
    parameters = {
        "start": args.start,
        "end": args.end,
        "features": args.features,
        "chunk_days": args.chunk_days,
        "compare_stored": args.compare_stored,
    }
    run_ = runs.start(
        db,
        JOB,
        args.features,
        definition_hash,
        parameters,
        args.start,
        args.end,
        args.new_run,
        args.take_over,
    )
    verb = "Resuming" if run_.resumed else "Starting"
    print(
        f"{verb} run {run_.run_id}: {len(sets)} feature set(s) x {len(days)} day(s) "
        f"[{args.start} .. {args.end}], {len(run_.done)} partition(s) already written.",
        flush=True,
    )

    after = dt.date.max - dt.timedelta(days=1)
    for fs in sets:
        later = runs.runs_with_partitions(
            db, fs.name, args.end + dt.timedelta(days=1), after, exclude=run_.run_id
        )
        if later:
            print(
                f"warning: older runs recorded {fs.name} days after --end {args.end}; their rows "
                "answer again after this range and do not include what this run recomputes. "
                "Re-run through their last day if events before --end changed.",
                file=sys.stderr,
                flush=True,
            )

    started = time.monotonic()
    spark = job_session("feature-backfill", args, db)
    summary = Summary()
    events = events_per_day(db, {fs.source for fs in sets}, args.start, args.end)
    # Events/s and the ETA count each set's events: logins feed two sets, so twice.
    progress = tqdm(
        total=sum(sum(events[fs.source].values()) for fs in sets),
        unit="event",
        unit_scale=True,
        mininterval=1.0,
        disable=args.no_progress,
        file=sys.stderr,
    )
    try:
        for fs in sets:
            progress.set_description(fs.name)
            backfill_feature_set(
                spark,
                db,
                fs,
                days,
                run_,
                args.chunk_days,
                summary,
                progress,
                events[fs.source],
                args.compare_stored,
            )
    except BaseException as exc:
        progress.close()
        spark.stop()
        runs.finish(db, run_.run_id, "failed", f"{type(exc).__name__}: {exc}")
        print(
            f"Run {run_.run_id} failed: {type(exc).__name__}: {exc}\n"
            "Run the same command again to resume it.",
            file=sys.stderr,
        )
        raise
    progress.close()
    runs.finish(db, run_.run_id, "succeeded")
    elapsed = time.monotonic() - started
    in_range = sum(sum(per_day.values()) for per_day in events.values())
    rows = sum(summary.written.values())
    print(
        f"\nRun {run_.run_id} succeeded in {elapsed:.1f}s ({in_range} raw events in range, "
        f"{summary.events} computed now: {summary.events / max(elapsed, 1e-9):,.0f} events/s; "
        f"{rows} feature rows written, {rows / max(summary.events, 1):.3f} per event)."
    )
    print(f"{'feature set':<14} {'partitions':>10} {'skipped':>8} {'rows':>10}")
    for fs in sets:
        print(
            f"{fs.name:<14} {summary.partitions.get(fs.name, 0):>10} {summary.skipped.get(fs.name, 0):>8} "
            f"{summary.written.get(fs.name, 0):>10}"
        )
    spark.stop()
    if args.materialize:
        materialize(args.feature_repo, sets, args.start, args.end)
    return 0


def main(argv: list[str] | None = None) -> int:
    return job_main(parse_args, run, argv)


if __name__ == "__main__":
    sys.exit(main())
