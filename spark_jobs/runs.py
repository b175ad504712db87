"""Run bookkeeping: `feature_runs` (one row per run) and `feature_run_partitions` (one per
feature set and day written whole). A run interrupted before it finished is resumed by the next
invocation with the same parameters and code; a run that finished is never touched again, so
running the same range again writes a new version. Feast reads feature rows only once their
partition is recorded here, with `finished_at` as the time they became known.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from providers.tidb import connection, sql

ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """$CODE_VERSION (set by images and CI), else the git commit, else 'unknown'."""
    if os.environ.get("CODE_VERSION"):
        return os.environ["CODE_VERSION"][:64]
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        if out.returncode == 0:
            return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Run:
    run_id: str
    resumed: bool
    done: set[tuple[str, dt.date]]  # (feature set, day) partitions already written whole


class RunBusy(RuntimeError):
    """Another process holds the run these parameters would resume."""


def start(
    db,
    job: str,
    feature_sets: list[str],
    definition_hash: str,
    parameters: dict,
    range_start: dt.date,
    range_end: dt.date,
    new_run: bool = False,
    take_over: bool = False,
) -> Run:
    """Resume the latest failed run with these exact parameters and code, or start a new one.

    A run still marked `running` belongs to a live process, or to one that was killed before it
    could mark the run failed: it is resumed only with `take_over`. The claim is one conditional
    UPDATE, so two processes never resume the same run.
    """
    params = json.dumps(parameters, sort_keys=True, default=str)
    version = code_version()
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        if not new_run:
            cur.execute(
                "SELECT run_id, status, started_at FROM feature_runs WHERE job = %s AND definition_hash = %s "
                "AND code_version = %s AND feature_sets = %s AND range_start = %s AND range_end = %s "
                "AND status <> 'succeeded' ORDER BY started_at DESC LIMIT 1",
                (job, definition_hash, version, ",".join(feature_sets), range_start, range_end),
            )
            row = cur.fetchone()
            if row and row[1] == "running" and not take_over:
                raise RunBusy(
                    f"Run {row[0]} with these parameters is marked running (started {row[2]} UTC). "
                    "If its process is gone, run again with --take-over to resume it; "
                    "--new-run starts a separate run."
                )
            if row:
                run_id, seen = row[0], row[1]
                cur.execute(
                    "UPDATE feature_runs SET status = 'running', error = NULL, finished_at = NULL "
                    "WHERE run_id = %s AND status = %s",
                    (run_id, seen),
                )
                if cur.rowcount != 1:
                    raise RunBusy(f"Run {run_id} was claimed by another process just now.")
                cur.execute(
                    "SELECT feature_set, partition_day FROM feature_run_partitions WHERE run_id = %s",
                    (run_id,),
                )
                return Run(run_id, True, {(fs, day) for fs, day in cur.fetchall()})
        run_id = str(uuid.uuid4())
        cur.execute(
            "INSERT INTO feature_runs (run_id, job, feature_sets, code_version, definition_hash, parameters, "
            "range_start, range_end, status, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 'running', %s)",
            (
                run_id,
                job,
                ",".join(feature_sets),
                version,
                definition_hash,
                params,
                range_start,
                range_end,
                sql.naive_utc(utc_now()),
            ),
        )
    return Run(run_id, False, set())


def clear_partition(db, table: str, run_id: str, event_ts: dt.datetime) -> None:
    """Remove what an interrupted attempt of this run wrote for one partition (never other runs' rows)."""
    with connection.connect(db.offline_store_config()) as conn:
        connection.execute(
            conn, sql.delete_where(table, {"run_id": run_id, "event_ts": sql.naive_utc(event_ts)})
        )


def record_partition(
    db, run_id: str, feature_set: str, day: dt.date, rows: int, created: dt.datetime
) -> None:
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO feature_run_partitions (run_id, feature_set, partition_day, status, rows_written, "
            "created_ts, finished_at) VALUES (%s, %s, %s, 'succeeded', %s, %s, %s)",
            (run_id, feature_set, day, rows, sql.naive_utc(created), sql.naive_utc(utc_now())),
        )
        cur.execute(
            "UPDATE feature_runs SET rows_written = rows_written + %s WHERE run_id = %s",
            (rows, run_id),
        )


def recorded_rows(table: str, feature_set: str, columns: list[str]) -> str:
    """SELECT of `table`'s rows whose partition is recorded, with `created_ts` the time it was
    recorded: the rows Feast reads (feature_repo/batch_features.py) and the ones a run compares
    with (spark_jobs/backfill.py). A half-written or failed partition is never among them."""
    if not feature_set.isidentifier():  # embedded as a literal: the views' definitions are text
        raise ValueError(f"feature set name {feature_set!r} is not an identifier")
    selected = ", ".join(
        f"f.{sql.quote_identifier(c)}" for c in ["user_id", *columns, "event_ts", "run_id"]
    )
    return (
        f"SELECT {selected}, p.finished_at AS created_ts FROM {sql.quote_table(table)} AS f "  # noqa: S608
        "JOIN feature_run_partitions AS p ON p.run_id = f.run_id "
        f"AND p.feature_set = '{feature_set}' "
        "AND f.event_ts = CAST(DATE_ADD(p.partition_day, INTERVAL 1 DAY) AS DATETIME(6))"
    )


def recorded_before(db, feature_set: str, day: dt.date) -> bool:
    """Whether any run recorded a partition of `feature_set` before `day`."""
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM feature_run_partitions WHERE feature_set = %s AND partition_day < %s "
            "LIMIT 1",
            (feature_set, day),
        )
        return cur.fetchone() is not None


def runs_with_partitions(
    db, feature_set: str, first: dt.date, last: dt.date, exclude: str
) -> list[str]:
    """Runs other than `exclude` with a recorded partition of `feature_set` in [first, last]."""
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT run_id FROM feature_run_partitions WHERE feature_set = %s "
            "AND partition_day >= %s AND partition_day <= %s AND run_id <> %s",
            (feature_set, first, last, exclude),
        )
        return sorted(r[0] for r in cur.fetchall())


def finish(db, run_id: str, status: str, error: str | None = None) -> None:
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE feature_runs SET status = %s, finished_at = %s, error = %s WHERE run_id = %s",
            (status, sql.naive_utc(utc_now()), (error or "")[:4000] or None, run_id),
        )


def definition_hash(hashes: list[str]) -> str:
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()[:16]
