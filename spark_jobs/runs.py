"""Run bookkeeping: `feature_runs` (one row per run) and `feature_run_partitions` (one per
feature set and day written whole). A run interrupted before it finished is resumed by the next
invocation with the same parameters; a run that finished is never touched again, so running the
same range again writes a new version.
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


def start(
    db,
    job: str,
    feature_sets: list[str],
    definition_hash: str,
    parameters: dict,
    range_start: dt.date,
    range_end: dt.date,
    new_run: bool = False,
) -> Run:
    """Resume the latest unfinished run with these exact parameters, or start a new one."""
    params = json.dumps(parameters, sort_keys=True, default=str)
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        if not new_run:
            cur.execute(
                "SELECT run_id FROM feature_runs WHERE job = %s AND definition_hash = %s "
                "AND feature_sets = %s AND range_start = %s AND range_end = %s AND status <> 'succeeded' "
                "ORDER BY started_at DESC LIMIT 1",
                (job, definition_hash, ",".join(feature_sets), range_start, range_end),
            )
            row = cur.fetchone()
            if row:
                run_id = row[0]
                cur.execute(
                    "UPDATE feature_runs SET status = 'running', error = NULL, finished_at = NULL "
                    "WHERE run_id = %s",
                    (run_id,),
                )
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
                code_version(),
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


def finish(db, run_id: str, status: str, error: str | None = None) -> None:
    with connection.connect(db.offline_store_config()) as conn, conn.cursor() as cur:
        cur.execute(
            "UPDATE feature_runs SET status = %s, finished_at = %s, error = %s WHERE run_id = %s",
            (status, sql.naive_utc(utc_now()), (error or "")[:4000] or None, run_id),
        )


def definition_hash(hashes: list[str]) -> str:
    return hashlib.sha256(",".join(hashes).encode()).hexdigest()[:16]
