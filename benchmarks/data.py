"""Seeded synthetic feature data in the shape of the project's batch views, and its loaders.

Four views `bench_view_0..3`, each a table of (user_id BIGINT, event_ts, created_ts, `v{i}_count`
BIGINT, `v{i}_f1..f4` DOUBLE), like the tables the Spark jobs write (spark_jobs/schema.py): one row
per user and day, stamped at midnight (the instant the day's values hold from), `created_ts` a few
minutes later with microseconds, features NOT NULL, an index on (user_id, event_ts, created_ts).

Every user has `rows_per_view // users` or one more rows per view, on distinct days spread over
the `days` before END. On top of those, `tie_fraction` of the rows get a sibling with the same
(user, event_ts), a `created_ts` up to 500 s earlier or later and other values (a re-run), so the
created-time tie-break decides some answers. Rows are shuffled: insertion order says nothing.

The same frames go to MariaDB (DATETIME(6), UTC), PostgreSQL (timestamptz) and parquet files.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

END = pd.Timestamp("2026-01-01", tz="UTC")
N_VIEWS = 4
VIEWS = [f"bench_view_{i}" for i in range(N_VIEWS)]
FIRST_USER_ID = 10_000_000
UNKNOWN_USER_BASE = 9_000_000_000  # ids no view has (beyond 32 bits)
ENTITY_TS = "event_timestamp"


def features(view: int) -> list[str]:
    return [f"v{view}_count", *(f"v{view}_f{k}" for k in range(1, 5))]


def columns(view: int) -> list[str]:
    return ["user_id", "event_ts", "created_ts", *features(view)]


def feature_refs() -> list[str]:
    """All 20 features, as `view:feature` references."""
    return [f"{VIEWS[i]}:{f}" for i in range(N_VIEWS) for f in features(i)]


def user_ids(users: int) -> np.ndarray:
    return FIRST_USER_ID + np.arange(users, dtype="int64") * 7


def window(days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First and last possible event_ts of the data."""
    return END - pd.Timedelta(days=days), END - pd.Timedelta(days=1)


def generate_view(
    view: int, users: int, rows_per_view: int, days: int, seed: int, tie_fraction: float = 0.001
) -> pd.DataFrame:
    per_user = math.ceil(rows_per_view / users)
    if users < 1 or rows_per_view < 1 or per_user > days:
        raise ValueError(f"{rows_per_view} rows over {users} users need more than {days} days")
    rng = np.random.default_rng([seed, view])
    n = rows_per_view
    idx = np.arange(n)
    user = rng.permutation(users)[idx % users]
    kth = idx // users  # the k-th row of that user: days first + k * step (mod days), distinct
    step = max(1, days // per_user)
    day = (rng.integers(0, days, users)[user] + kth * step) % days
    event = (window(days)[0] + pd.to_timedelta(day, unit="D")).as_unit("us")
    created = event + pd.to_timedelta(rng.integers(600_000_000, 3_600_000_000, n), unit="us")
    created = created.as_unit("us")
    df = pd.DataFrame({"user_id": user_ids(users)[user], "event_ts": event, "created_ts": created})
    names = features(view)
    df[names[0]] = rng.integers(0, 10_000, n, dtype="int64")
    for k, name in enumerate(names[1:], start=1):
        df[name] = rng.normal(0, 10.0**k, n)
    ties = df.iloc[rng.choice(n, int(n * tie_fraction), replace=False)].copy()
    shift = rng.integers(1, 500_000_000, len(ties)) * rng.choice([-1, 1], len(ties))
    ties["created_ts"] = (ties["created_ts"] + pd.to_timedelta(shift, unit="us")).dt.as_unit("us")
    ties[names[0]] = rng.integers(0, 10_000, len(ties), dtype="int64")
    for name in names[1:]:
        ties[name] = rng.normal(0, 1.0, len(ties))
    out = pd.concat([df, ties], ignore_index=True)
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)


def generate(
    users: int, rows_per_view: int, days: int, seed: int, tie_fraction: float = 0.001
) -> dict[str, pd.DataFrame]:
    return {
        VIEWS[i]: generate_view(i, users, rows_per_view, days, seed, tie_fraction)
        for i in range(N_VIEWS)
    }


def entity_df(
    n: int,
    users: int,
    days: int,
    seed: int,
    unknown_fraction: float = 0.01,
    midnight_fraction: float = 0.02,
) -> pd.DataFrame:
    """`n` rows (user_id, event_timestamp tz-aware UTC), times uniform over the data's window.

    `unknown_fraction` of the ids belong to no view (all features null). `midnight_fraction` of
    the times are truncated to midnight, the instant feature rows are stamped at, so "feature time
    <= entity time" is decided on equality for some rows.
    """
    rng = np.random.default_rng([seed, 1_000])
    ids = user_ids(users)[rng.integers(0, users, n)]
    unknown = rng.random(n) < unknown_fraction
    ids[unknown] = UNKNOWN_USER_BASE + rng.integers(0, 1_000_000, int(unknown.sum()))
    start = window(days)[0]
    span_us = (END - start) // pd.Timedelta(microseconds=1)
    ts = start + pd.to_timedelta(rng.integers(0, span_us, n), unit="us")
    ts = ts.where(rng.random(n) >= midnight_fraction, ts.floor("D"))
    return pd.DataFrame(
        {"user_id": ids.astype("int64"), ENTITY_TS: pd.DatetimeIndex(ts).as_unit("ns")}
    )


def _chunks(df: pd.DataFrame, size: int) -> Iterable[pd.DataFrame]:
    for start in range(0, len(df), size):
        yield df.iloc[start : start + size]


# --------------------------------------------------------------------------- MariaDB (TiDB)


def mariadb_ddl(view: int) -> str:
    feats = features(view)
    cols = [
        "user_id BIGINT NOT NULL",
        "event_ts DATETIME(6) NOT NULL",
        "created_ts DATETIME(6) NOT NULL",
        f"`{feats[0]}` BIGINT NOT NULL",
        *(f"`{f}` DOUBLE NOT NULL" for f in feats[1:]),
    ]
    return ", ".join(cols)


def load_mariadb(conn, frames: dict[str, pd.DataFrame], batch: int = 5_000) -> None:
    """CREATE TABLE + bounded executemany batches (pymysql sends them as multi-row INSERTs); the
    index (user_id, event_ts, created_ts) of the project's feature tables is built afterwards."""
    for i, (table, df) in enumerate(frames.items()):
        cols = columns(i)
        with conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS `{table}`")
            cur.execute(f"CREATE TABLE `{table}` ({mariadb_ddl(i)})")
            insert = (
                f"INSERT INTO `{table}` ({', '.join(f'`{c}`' for c in cols)}) "  # noqa: S608
                f"VALUES ({', '.join(['%s'] * len(cols))})"
            )
            for part in _chunks(df, batch):
                values = [
                    part["user_id"].tolist(),
                    *(_mysql_datetimes(part[c]) for c in ("event_ts", "created_ts")),
                    *(part[c].tolist() for c in cols[3:]),
                ]
                cur.executemany(insert, list(zip(*values, strict=True)))
                conn.commit()
            cur.execute(
                f"ALTER TABLE `{table}` ADD KEY idx_user_ts (user_id, event_ts, created_ts)"
            )
            cur.execute(f"ANALYZE TABLE `{table}`")
        conn.commit()


def _mysql_datetimes(values: pd.Series) -> list[str]:
    """UTC wall-clock text with microseconds (the DATETIME(6) the jobs write)."""
    return values.dt.tz_convert("UTC").dt.strftime("%Y-%m-%d %H:%M:%S.%f").tolist()


# --------------------------------------------------------------------------- PostgreSQL


def postgres_ddl(view: int) -> str:
    feats = features(view)
    cols = [
        "user_id BIGINT NOT NULL",
        "event_ts TIMESTAMPTZ NOT NULL",
        "created_ts TIMESTAMPTZ NOT NULL",
        f'"{feats[0]}" BIGINT NOT NULL',
        *(f'"{f}" DOUBLE PRECISION NOT NULL' for f in feats[1:]),
    ]
    return ", ".join(cols)


def load_postgres(conn, frames: dict[str, pd.DataFrame], batch: int = 100_000) -> None:
    """CREATE TABLE, COPY (CSV), then the same index as the TiDB tables and ANALYZE."""
    for i, (table, df) in enumerate(frames.items()):
        cols = columns(i)
        with conn.cursor() as cur:
            cur.execute(f'DROP TABLE IF EXISTS "{table}"')
            cur.execute(f'CREATE TABLE "{table}" ({postgres_ddl(i)})')
            copy = f'COPY "{table}" ({", ".join(cols)}) FROM STDIN (FORMAT csv)'
            with cur.copy(copy) as out:
                for part in _chunks(df[cols], batch):
                    buffer = io.StringIO()
                    # Floats as Python's shortest round-trip text: the same doubles arrive.
                    part.to_csv(
                        buffer, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S.%f+00"
                    )
                    out.write(buffer.getvalue())
            cur.execute(
                f'CREATE INDEX "{table}_user_ts" ON "{table}" (user_id, event_ts, created_ts)'
            )
            cur.execute(f'ANALYZE "{table}"')
        conn.commit()


# --------------------------------------------------------------------------- parquet (DuckDB)


def write_parquet(frames: dict[str, pd.DataFrame], directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for table, df in frames.items():
        paths[table] = directory / f"{table}.parquet"
        df.to_parquet(paths[table], index=False)
    return paths


def load_all(
    frames: dict[str, pd.DataFrame], env: dict[str, str], postgres, parquet_dir: Path
) -> dict[str, float]:
    """The same frames into MariaDB (from TIDB_* in `env`), `postgres` and parquet; seconds each."""
    import time

    from providers.tidb import connection
    from providers.tidb.settings import TiDBSettings

    timings = {}
    started = time.perf_counter()
    conn = connection.connect_raw(TiDBSettings.from_env(env))
    try:
        load_mariadb(conn, frames)
    finally:
        conn.close()
    timings["tidb"] = time.perf_counter() - started
    started = time.perf_counter()
    with postgres.connect() as conn:
        load_postgres(conn, frames)
    timings["postgres"] = time.perf_counter() - started
    started = time.perf_counter()
    write_parquet(frames, parquet_dir)
    timings["duckdb"] = time.perf_counter() - started
    return timings
