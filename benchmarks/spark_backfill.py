"""Measure 4, Spark backfill: raw events per second when one year is backfilled on local[2], then the
same work on local[1] to show how it scales with cores.

    python -m benchmarks.spark_backfill [--users 750] [--days 365] [--end 2026-01-01] [--seed 7]
                                        [--chunk-days N] [--only-local2] [--spark-conf KEY=VALUE ...]

Steps, each its own process through the project's CLIs, against a fresh MariaDB (the TiDB
stand-in) and Redis from `common.stack()`:

1. `python -m spark_jobs.schema`, then `python -m spark_jobs.generate` writes `--days` days of
   events for `--users` users, ending the day before `--end` (not timed as part of the figure).
2. `python -m spark_jobs.backfill --master local[2]` over every day of that history, all feature
   sets, timed by `common.run_measured` (wall includes the JVM start).
3. The feature tables and the run bookkeeping (`feature_runs`, `feature_run_partitions`) are
   emptied, so the second run starts a new run from nothing and recomputes every partition.
4. The same command with `--master local[1]`.

Events counted: the raw rows of the tables the backfill reads (logins, transactions, withdrawals;
each once, though logins feed two feature sets) inside the backfilled range, which is the whole
history. Cross-checks: each run started a new run, skipped nothing, recorded every partition;
both wrote the same feature rows per table and the same checksum of every stored value.
Output of every subprocess goes to log files in a temp directory (printed), never the terminal.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sys
import tempfile
from pathlib import Path

import pymysql

from benchmarks.common import ROOT, header, python, run_measured, stack

MEASURE = "spark_backfill"
SOURCES = ("logins", "transactions", "withdrawals")  # the raw tables the feature sets read
# Feature table -> columns summed for a readable checksum (DOUBLE columns as DECIMAL(20,2): exact).
FEATURE_TABLES = {
    "user_transaction_features": {
        "ints": [f"txn_{m}_{w}d" for w in (1, 7, 30) for m in ("count", "merchants")],
        "doubles": [f"txn_sum_{w}d" for w in (1, 7, 30)],
        "json": [],
    },
    "user_withdrawal_features": {
        "ints": ["withdrawal_count_1d", "withdrawal_count_7d"],
        "doubles": ["withdrawal_sum_1d", "withdrawal_sum_7d"],
        "json": [],
    },
    "user_login_features": {
        "ints": ["failed_logins_1d", "logins_1d"],
        "doubles": [],
        "json": [],
    },
    "user_profile_features": {
        "ints": [],
        "doubles": [],
        "json": ["common_ips_365d", "common_devices_365d"],
    },
}
RUN_TABLES = ("feature_runs", "feature_run_partitions")
MASTERS = ("local[2]", "local[1]")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.spark_backfill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--users", type=int, default=750, help="Users generated (default 750).")
    parser.add_argument(
        "--days", type=int, default=365, help="Days of history, all backfilled (default 365)."
    )
    parser.add_argument(
        "--end",
        type=dt.date.fromisoformat,
        default=dt.date(2026, 1, 1),
        help="History ends before this day, UTC (default 2026-01-01: the year 2025).",
    )
    parser.add_argument("--seed", type=int, default=7, help="Generator seed (default 7).")
    parser.add_argument(
        "--chunk-days",
        type=int,
        default=None,
        help="Backfill --chunk-days (default: the job's own, per feature set).",
    )
    parser.add_argument(
        "--only-local2",
        action="store_true",
        help="Run local[2] only (no scaling ratio): for the full-scale run, which takes long.",
    )
    parser.add_argument(
        "--local1-first",
        action="store_true",
        help="Run local[1] before local[2] (to see whether run order, e.g. warm caches, matters).",
    )
    parser.add_argument(
        "--generate-master",
        default="local[2]",
        help="Spark master of the (untimed) event generation (default local[2]).",
    )
    parser.add_argument(
        "--spark-conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Passed to both backfills as --conf; repeatable (e.g. spark.driver.memory=4g).",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        default=None,
        help="Where the subprocess logs go (default: a new temp directory, kept).",
    )
    args = parser.parse_args(argv)
    if args.users < 1 or args.days < 1 or (args.chunk_days is not None and args.chunk_days < 1):
        parser.error("--users, --days and --chunk-days must be positive")
    return args


def _connect(env: dict[str, str]) -> pymysql.connections.Connection:
    from providers.tidb import connection
    from providers.tidb.settings import TiDBSettings

    return connection.connect_raw(TiDBSettings.from_env(env))


def _scalar(conn, query: str, params: list | tuple = ()):
    with conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchone()[0]


def count_events(conn, start: dt.date, end: dt.date) -> dict[str, int]:
    """Raw rows per table with start 00:00 <= event_ts < end 00:00 (UTC)."""
    from providers.tidb import sql

    lo, hi = (dt.datetime.combine(d, dt.time(), tzinfo=dt.UTC) for d in (start, end))
    return {
        table: int(_scalar(conn, *sql.count_between(table, "event_ts", lo, hi)))
        for table in (*SOURCES, "labels")
    }


def feature_checksums(conn) -> dict[str, dict]:
    """Per feature table: rows, runs, an order-free checksum of every stored value, readable sums."""
    out = {}
    for table, cols in FEATURE_TABLES.items():
        values = (
            ["user_id", "event_ts"]
            + cols["ints"]
            + [f"CAST({c} AS DECIMAL(20,2))" for c in cols["doubles"]]
            + cols["json"]
        )
        sums = (
            [f"SUM({c})" for c in cols["ints"]]
            + [f"SUM(CAST({c} AS DECIMAL(20,2)))" for c in cols["doubles"]]
            + [f"SUM(JSON_LENGTH({c}))" for c in cols["json"]]
        )
        names = cols["ints"] + cols["doubles"] + [f"len({c})" for c in cols["json"]]
        selected = [
            "COUNT(*)",
            "COUNT(DISTINCT run_id)",
            f"SUM(CRC32(CONCAT_WS('|', {', '.join(values)})))",
            *sums,
        ]
        query = f"SELECT {', '.join(selected)} FROM `{table}`"  # noqa: S608 (constants only)
        with conn.cursor() as cur:
            cur.execute(query)
            row = cur.fetchone()
        out[table] = {
            "rows": int(row[0]),
            "runs": int(row[1]),
            "crc_sum": int(row[2] or 0),
            "sums": {n: str(v) for n, v in zip(names, row[3:], strict=True)},
        }
    return out


def bookkeeping(conn) -> dict:
    with conn.cursor() as cur:
        cur.execute("SELECT run_id, status, rows_written FROM feature_runs")
        runs = cur.fetchall()
        cur.execute(
            "SELECT feature_set, COUNT(*), SUM(rows_written) FROM feature_run_partitions "
            "GROUP BY feature_set ORDER BY feature_set"
        )
        partitions = {fs: (int(n), int(rows)) for fs, n, rows in cur.fetchall()}
        cur.execute("SELECT MIN(started_at) FROM feature_runs")
        previous = cur.fetchone()[0]
        cur.execute(
            "SELECT feature_set, MAX(finished_at) AS done FROM feature_run_partitions "
            "GROUP BY feature_set ORDER BY done"
        )
        # The job runs the sets one after the other: each set's share of the run, in seconds.
        seconds_by_set = {}
        for fs, done in cur.fetchall():
            seconds_by_set[fs] = round((done - previous).total_seconds(), 1)
            previous = done
    return {"runs": runs, "partitions": partitions, "seconds_by_set": seconds_by_set}


def _mariadbd_pid(port: str) -> int | None:
    """The mariadbd serving `port` (started by common.stack), to read its CPU time."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"mariadbd") and f"--port={port}".encode() in argv:
            return int(proc.name)
    return None


def _cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of a process so far, or None."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_outputs(conn) -> None:
    """Empty the feature tables and the run bookkeeping: the next backfill starts from nothing."""
    with conn.cursor() as cur:
        for table in (*FEATURE_TABLES, *RUN_TABLES):
            cur.execute(f"TRUNCATE TABLE `{table}`")


def parse_job_log(text: str) -> dict:
    """What the backfill itself printed: start/resume, its own elapsed time, per-set summary."""
    started = re.search(
        r"^(Starting|Resuming) run (\S+): .*?(\d+) partition\(s\) already", text, re.M
    )
    done = re.search(r"succeeded in ([\d.]+)s \((\d+) raw events in range", text)
    table = {
        m.group(1): {
            "partitions": int(m.group(2)),
            "skipped": int(m.group(3)),
            "rows": int(m.group(4)),
        }
        for m in re.finditer(r"^(\w+)\s+(\d+)\s+(\d+)\s+(\d+)\s*$", text, re.M)
    }
    return {
        "verb": started.group(1) if started else None,
        "run_id": started.group(2).rstrip(":") if started else None,
        "already_done": int(started.group(3)) if started else None,
        "job_elapsed_s": float(done.group(1)) if done else None,
        "job_events": int(done.group(2)) if done else None,
        "sets": table,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    first = args.end - dt.timedelta(days=args.days)
    last = args.end - dt.timedelta(days=1)  # the last as-of day: events before `end`
    masters = MASTERS[::-1] if args.local1_first else MASTERS
    if args.only_local2:
        masters = ("local[2]",)
    params = {
        "users": args.users,
        "days": args.days,
        "seed": args.seed,
        "history": f"{first} .. {last}",
        "backfill_range": f"--start {first} --end {last}",
        "feature_sets": "all (transactions, withdrawals, logins, profile)",
        "chunk_days": args.chunk_days or "the job's default",
        "masters_in_order": list(masters),
        "spark_conf": args.spark_conf,
        "generate_master": args.generate_master,
    }
    params["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    result = header(MEASURE, params)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="bench-spark-backfill-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"   logs: {log_dir}", flush=True)
    ok = True

    with stack() as env:
        env = {**env, "SPARK_MASTER": "local[2]"}  # overridden by --master below
        run_measured(
            [python(), "-m", "spark_jobs.schema"], env=env, cwd=ROOT, log=log_dir / "schema.log"
        )
        gen = run_measured(
            [
                python(), "-m", "spark_jobs.generate",
                "--users", str(args.users), "--days", str(args.days), "--end", str(args.end),
                "--seed", str(args.seed), "--master", args.generate_master,
            ],
            env=env,
            cwd=ROOT,
            log=log_dir / "generate.log",
        )  # fmt: skip
        with _connect(env) as conn:
            events_by_table = count_events(conn, first, args.end)
        events = sum(events_by_table[t] for t in SOURCES)
        params["events_by_table"] = events_by_table
        params["events"] = events
        params["generate_wall_s"] = round(gen["wall_s"], 1)
        print(
            f"   generated in {gen['wall_s']:.1f}s: "
            + ", ".join(f"{t}={n:,}" for t, n in events_by_table.items())
            + f"; events read by the backfill (labels excluded): {events:,}",
            flush=True,
        )

        runs: dict[str, dict] = {}
        db_pid = _mariadbd_pid(env["TIDB_PORT"])
        for i, master in enumerate(masters):
            if i:
                with _connect(env) as conn:
                    reset_outputs(conn)
            log = log_dir / f"backfill-{master.replace('[', '').replace(']', '')}.log"
            cmd = [
                python(), "-m", "spark_jobs.backfill",
                "--start", str(first), "--end", str(last),
                "--no-progress", "--master", master,
            ]  # fmt: skip
            if args.chunk_days:
                cmd += ["--chunk-days", str(args.chunk_days)]
            for pair in args.spark_conf:
                cmd += ["--conf", pair]
            print(f"   $ {' '.join(cmd[1:])}  > {log}", flush=True)
            load_before = round(os.getloadavg()[0], 2)
            db_cpu = _cpu_seconds(db_pid)
            measured = run_measured(cmd, env=env, cwd=ROOT, log=log)
            db_cpu = None if db_cpu is None else _cpu_seconds(db_pid) - db_cpu
            job = parse_job_log(log.read_text())
            with _connect(env) as conn:
                sums = feature_checksums(conn)
                books = bookkeeping(conn)
            feature_rows = sum(s["rows"] for s in sums.values())
            runs[master] = {"measured": measured, "job": job, "sums": sums, "books": books}
            runs[master]["row"] = result.add(
                f"backfill {master}",
                events=events,
                feature_rows=feature_rows,
                rows_per_event=round(feature_rows / max(events, 1), 4),
                wall_s=round(measured["wall_s"], 2),
                events_per_s=events / measured["wall_s"],
                feature_rows_per_s=feature_rows / measured["wall_s"],
                job_elapsed_s=job["job_elapsed_s"],
                job_events_per_s=(events / job["job_elapsed_s"] if job["job_elapsed_s"] else None),
                peak_rss_mib=round(measured["peak_rss_mib"], 1),
                mariadb_cpu_s=None if db_cpu is None else round(db_cpu, 1),
                load_1m_before=load_before,
                load_1m_after=round(os.getloadavg()[0], 2),
                seconds_by_feature_set=books["seconds_by_set"],
                rows_by_table={t: s["rows"] for t, s in sums.items()},
            )

            # This run recomputed everything: a new run, nothing skipped, every partition recorded.
            problems = []
            if job["verb"] != "Starting" or job["already_done"] != 0:
                problems.append(f"did not start a fresh run ({job['verb']}, {job['already_done']})")
            if any(s["skipped"] for s in job["sets"].values()):
                problems.append(f"skipped partitions: {job['sets']}")
            if len(books["runs"]) != 1 or books["runs"][0][1] != "succeeded":
                problems.append(f"feature_runs is not one succeeded run: {books['runs']}")
            if any(n != args.days for n, _ in books["partitions"].values()) or len(
                books["partitions"]
            ) != len(FEATURE_TABLES):
                problems.append(f"partitions recorded: {books['partitions']}")
            if books["runs"] and int(books["runs"][0][2]) != feature_rows:
                problems.append(
                    f"feature_runs.rows_written {books['runs'][0][2]} != rows in tables {feature_rows}"
                )
            if job["job_events"] is not None and job["job_events"] != events:
                problems.append(f"the job counted {job['job_events']} events, we count {events}")
            if any(s["runs"] != 1 for s in sums.values()):
                problems.append("a feature table holds rows of more than one run")
            for p in problems:
                ok = False
                result.note(f"CHECK FAILED ({master}): {p}")

        if len(masters) == 2:
            a, b = (runs[m]["sums"] for m in MASTERS)
            params["checksums"] = a
            differ = [t for t in FEATURE_TABLES if a[t] != b[t]]
            if not differ:
                result.note(
                    "cross-check passed: both runs wrote the same rows per feature table and the "
                    "same checksum of every value (CRC32 per row summed; sums of the feature columns)"
                )
            for t in differ:
                ok = False
                result.note(f"CHECK FAILED: {t}: {MASTERS[0]} {a[t]} vs {MASTERS[1]} {b[t]}")

    if len(masters) == 2:
        r2, r1 = (runs[m]["row"] for m in MASTERS)
        result.ratio(
            f"events/s {MASTERS[0]} / {MASTERS[1]} (wall, incl. JVM start)",
            r2["events_per_s"] / r1["events_per_s"],
        )
        if r2["job_events_per_s"] and r1["job_events_per_s"]:
            result.note(
                f"speed-up on the job's own clock (excl. JVM start): "
                f"{r2['job_events_per_s'] / r1['job_events_per_s']:.2f}"
            )
    result.note(
        "rows are stored per change (spark_jobs/features.py): rows_per_event is feature rows "
        "written per raw event read"
    )
    result.note(
        "peak_rss_mib sums the high-water marks of the backfill's process and every child it "
        "starts (the Spark JVM, its Python workers): an upper bound. MariaDB shares the same "
        "cores: mariadb_cpu_s is its CPU time during each run"
    )
    result.note(f"subprocess logs in {log_dir}")
    result.save()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
