"""Measure 3, point-in-time retrieval: `get_historical_features` on the same data in three stores.

    python -m benchmarks.historical [--entity-rows 100000] [--rows-per-view 1250000]
                                    [--users 100000] [--days 90] [--seed 7]

Data (benchmarks/data.py): 4 views of --rows-per-view rows each (5M in all by default, plus 0.1%
re-stated rows that the created time must break ties on), one row per user and day, loaded
(untimed, but printed) into MariaDB (the TiDB stand-in), PostgreSQL (Debian's server, started
here, bench settings) and parquet. Entity rows: --entity-rows (user, time) pairs uniform over the
window, 1% unknown users, 2% at exactly midnight (equal to a feature row's event time), written
once to parquet.

For each store (ours on TiDB, Feast's postgres store, Feast's DuckDB store over the parquet files;
benchmarks/repos.py, identical definitions, no TTL) `feast apply` runs untimed, then a fresh
process (`--worker`) reads the entity parquet, builds FeatureStore(repo), calls
get_historical_features(entity_df, all 20 features).to_df() and writes the result to parquet.
That process is timed by common.run_measured: wall and peak RSS of the whole process, Python and
Feast start-up included; the worker also records the retrieval call alone (`retrieval_s`).

Checked, not assumed: each store's result must equal every other's and a pandas as-of join
(merge_asof by user on time, latest created time winning ties) after sorting by (user_id,
event_timestamp): same rows, same columns, values equal (1e-9, nulls equal, nullable ints as
floats). Any difference prints a sample of the rows and exits 1 without saving.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks import data, postgres, repos
from benchmarks.common import ROOT, header, python, run_measured, stack

MEASURE = "historical"
FEAST = str(Path(sys.executable).parent / "feast")
SYSTEMS = {"tidb": "ours (TiDB)", "postgres": "feast postgres", "duckdb": "feast duckdb (file)"}
TS = data.ENTITY_TS


def worker(argv: list[str]) -> int:
    """`--worker REPO ENTITY_PARQUET OUT_PARQUET`: one retrieval in this process."""
    repo, entity_path, out = argv
    from feast import FeatureStore

    entity = pd.read_parquet(entity_path)
    store = FeatureStore(repo_path=repo)
    started = time.perf_counter()
    df = store.get_historical_features(entity_df=entity, features=data.feature_refs()).to_df()
    retrieval = time.perf_counter() - started
    df.to_parquet(out, index=False)
    Path(out + ".json").write_text(json.dumps({"retrieval_s": retrieval, "rows": len(df)}))
    return 0


def feature_columns() -> list[str]:
    return [f for i in range(data.N_VIEWS) for f in data.features(i)]


def oracle(frames: dict[str, pd.DataFrame], entity: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Plain pandas: per view, the row with the latest event time <= the entity time (by user),
    ties on event time going to the latest created time. Also counts, over all views, the answers
    decided by a created-time tie and by an event time equal to the entity time."""
    out = entity.copy()
    out[TS] = out[TS].astype("datetime64[ns, UTC]")
    out = out.sort_values(TS, kind="mergesort")
    cases = {"decided_by_created_tie": 0, "feature_time_equals_entity_time": 0}
    for i, df in enumerate(frames.values()):
        right = df.sort_values(["event_ts", "created_ts"], kind="mergesort")
        right = right.assign(event_ts=right["event_ts"].astype("datetime64[ns, UTC]"))
        right["tied"] = right.duplicated(["user_id", "event_ts"], keep=False)
        out = pd.merge_asof(
            out,
            right[["user_id", "event_ts", "tied", *data.features(i)]],
            left_on=TS,
            right_on="event_ts",
            by="user_id",
            direction="backward",
        )
        cases["decided_by_created_tie"] += int(out["tied"].eq(True).sum())
        cases["feature_time_equals_entity_time"] += int((out["event_ts"] == out[TS]).sum())
        out = out.drop(columns=["event_ts", "tied"])
    return out, cases


def normalised(df: pd.DataFrame, who: str) -> pd.DataFrame:
    expected = {"user_id", TS, *feature_columns()}
    if set(df.columns) != expected:
        raise SystemExit(f"{who}: columns {sorted(df.columns)}; expected {sorted(expected)}")
    out = pd.DataFrame(
        {
            "user_id": df["user_id"].astype("int64"),
            TS: pd.to_datetime(df[TS], utc=True).astype("datetime64[us, UTC]"),
        }
    )
    for col in feature_columns():  # nullable ints and floats alike: float64 with NaN for null
        out[col] = pd.to_numeric(df[col]).astype("float64")
    return out.sort_values(["user_id", TS], kind="mergesort").reset_index(drop=True)


def differences(a: pd.DataFrame, b: pd.DataFrame, name_a: str, name_b: str) -> list[str]:
    if len(a) != len(b):
        return [f"{name_a} has {len(a)} rows, {name_b} {len(b)}"]
    keys_differ = (a["user_id"] != b["user_id"]) | (a[TS] != b[TS])
    if keys_differ.any():
        sample = pd.concat(
            [
                a.loc[keys_differ, ["user_id", TS]].add_suffix(f" {name_a}"),
                b.loc[keys_differ, ["user_id", TS]].add_suffix(f" {name_b}"),
            ],
            axis=1,
        )
        return [f"entity rows differ in {int(keys_differ.sum())} places:\n{sample.head(10)}"]
    problems = []
    for col in feature_columns():
        av, bv = a[col].to_numpy(), b[col].to_numpy()
        bad = ~np.isclose(av, bv, rtol=1e-9, atol=1e-9, equal_nan=True)
        if bad.any():
            sample = pd.DataFrame(
                {"user_id": a["user_id"][bad], TS: a[TS][bad], name_a: av[bad], name_b: bv[bad]}
            )
            problems.append(
                f"{col}: {int(bad.sum())} of {len(a)} rows differ\n{sample.head(10).to_string()}"
            )
    return problems


def run(args: argparse.Namespace) -> int:
    params = {
        "entity_rows": args.entity_rows,
        "rows_per_view": args.rows_per_view,
        "feature_rows": args.rows_per_view * data.N_VIEWS,
        "views": data.N_VIEWS,
        "features": len(feature_columns()),
        "users": args.users,
        "days": args.days,
        "seed": args.seed,
        "tie_fraction": 0.001,
        "ttl": "none",
    }
    result = header(MEASURE, params)
    work = Path(tempfile.mkdtemp(prefix="bench-historical-"))
    print(f"  work dir (logs): {work}", flush=True)
    frames = data.generate(args.users, args.rows_per_view, args.days, args.seed)
    entity = data.entity_df(args.entity_rows, args.users, args.days, args.seed)
    entity_path = work / "entity.parquet"
    entity.to_parquet(entity_path, index=False)
    measured = {}
    with stack() as services, postgres.running() as pg:
        env = repos.feast_env({**services, **pg.env()})
        loaded = data.load_all(frames, env, pg, work / "parquet")
        print(
            "  loaded (untimed): " + ", ".join(f"{k} {v:.1f} s" for k, v in loaded.items()),
            flush=True,
        )
        for store in repos.STORES:
            repo = repos.write_repo(store, work / store, work / "parquet")
            log = work / f"{store}.log"
            run_measured([FEAST, "-c", str(repo), "apply"], env=env, log=log)
            out = work / f"{store}.result.parquet"
            measured[store] = run_measured(
                [
                    python(),
                    "-m",
                    "benchmarks.historical",
                    "--worker",
                    str(repo),
                    str(entity_path),
                    str(out),
                ],
                env=env,
                cwd=ROOT,
                log=log,
            )
            measured[store].update(json.loads(Path(f"{out}.json").read_text()))
    results = {
        s: normalised(pd.read_parquet(work / f"{s}.result.parquet"), s) for s in repos.STORES
    }
    expected, cases = oracle(frames, entity)
    results["pandas"] = normalised(expected, "pandas")
    names = list(results)
    problems = [
        f"{a} vs {b}: {p}"
        for k, a in enumerate(names)
        for b in names[k + 1 :]
        for p in differences(results[a], results[b], a, b)
    ]
    if problems:
        print(f"RESULTS DIFFER (nothing saved; work dir kept: {work}):", file=sys.stderr)
        print("\n".join(problems), file=sys.stderr)
        return 1
    filled = results["tidb"][feature_columns()].notna().mean()
    result.note(
        f"results equal across {', '.join(names)}: {len(entity):,} rows x "
        f"{len(feature_columns())} features, {filled.min():.0%}-{filled.max():.0%} "
        "non-null per feature; answers decided by a created-time tie: "
        f"{cases['decided_by_created_tie']:,}, by feature time == entity time: "
        f"{cases['feature_time_equals_entity_time']:,}"
    )
    for store in repos.STORES:
        m = measured[store]
        result.add(
            SYSTEMS[store],
            wall_s=m["wall_s"],
            peak_rss_mib=m["peak_rss_mib"],
            retrieval_s=m["retrieval_s"],
            rows=m["rows"],
        )
    ours, pg_, duck = (measured[s] for s in repos.STORES)
    result.ratio(
        "wall ours/postgres",
        ours["wall_s"] / pg_["wall_s"],
        "<= 0.5",
        ours["wall_s"] / pg_["wall_s"] <= 0.5,
    )
    result.ratio(
        "wall ours/duckdb",
        ours["wall_s"] / duck["wall_s"],
        "<= 2.0",
        ours["wall_s"] / duck["wall_s"] <= 2.0,
    )
    result.ratio("peak memory ours/postgres", ours["peak_rss_mib"] / pg_["peak_rss_mib"])
    result.ratio("peak memory ours/duckdb", ours["peak_rss_mib"] / duck["peak_rss_mib"])
    result.save()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1:])
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.historical", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--entity-rows", type=int, default=100_000)
    parser.add_argument("--rows-per-view", type=int, default=1_250_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90, help="Days the event times spread over.")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="Keep the work dir (repos, logs, results); kept anyway on failure.",
    )
    args = parser.parse_args(argv)
    users = min(args.users, args.rows_per_view)
    if users != args.users:
        print(f"  note: --users lowered to --rows-per-view ({users})", flush=True)
        args.users = users
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
