"""Train/serve skew: what serving logged vs what the offline store computes for the same request.

    python -m pipelines.skew withdrawal_fraud [--since 2026-11-01T00:00:00Z] [--until ...]
        [--json] [--max-batch-mismatch-rate 0.0]

Reads the served-feature log of the model's feature service (TiDB, written by serving through
Feast feature logging), rebuilds each logged request as an entity row at its log time (with the
same keys and request data), retrieves the service's features point-in-time through the TiDB
store, and reports per feature: rows compared, mismatches, mean absolute difference (numbers),
and the age of the served values (p50, p95, max): the time from when the pipeline last vouched
for a value (serving logs it per view: a batch view's run coverage, a stream's watermark, else the
value's own time) to the request, as the response's `age_seconds`. Batch features match after a
materialize; pushed features show their lag.

Each feature is tagged with its kind: `batch` (a view over a batch source, materialized),
`push` (a view fed by a push source), `stream` (a velocity view: windowed aggregations written by
the stream job) or `on_demand`. For stream features the report adds the stream's lag at serving
time (p50, p95, max): 0 when serving had the latest change point at or before the request in the
view's table, else the time from that change point to the request (the stream had not applied
it yet). A mismatch with lag is the stream not having caught up; a mismatch without lag is skew. `--max-batch-mismatch-rate R` exits 3 when
any batch feature mismatches in more than R of its rows, so an orchestrator can gate on it; push
features are not gated, their lag is expected and reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from typing import Any

import numpy as np
import pandas as pd


def _same(a: Any, b: Any) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    if isinstance(a, list | tuple | np.ndarray) or isinstance(b, list | tuple | np.ndarray):
        return list(a) == list(b)
    if isinstance(a, int | float | np.number) and isinstance(b, int | float | np.number):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def _view_kinds(store, service) -> dict[str, str]:
    """Logged column prefix (the projection's name) -> batch | push | on_demand."""
    from feast.data_source import PushSource

    kinds = {}
    for projection in service.feature_view_projections:
        try:
            stream = store.get_stream_feature_view(projection.name)
        except Exception:  # not a stream view
            stream = None
        if stream is not None and stream.aggregations:
            kinds[projection.name_to_use()] = "stream"
            continue
        try:
            view = store.get_feature_view(projection.name)
        except Exception:  # not a plain feature view: on-demand
            kinds[projection.name_to_use()] = "on_demand"
            continue
        pushed = isinstance(view.stream_source, PushSource)
        kinds[projection.name_to_use()] = "push" if pushed else "batch"
    return kinds


def gate(report: pd.DataFrame, max_batch_mismatch_rate: float) -> list[str]:
    """Batch features whose mismatch rate is above the limit, as readable lines."""
    batch = report[(report["kind"] == "batch") & (report["rows"] > 0)]
    rate = batch["mismatches"] / batch["rows"]
    return [
        f"{feature}: {m} of {n} rows mismatch ({r:.2%} > {max_batch_mismatch_rate:.2%})"
        for feature, m, n, r in zip(
            batch["feature"], batch["mismatches"], batch["rows"], rate, strict=True
        )
        if r > max_batch_mismatch_rate
    ]


def skew_report(store, service_name: str, since: dt.datetime, until: dt.datetime) -> pd.DataFrame:
    from feast.feature_logging import FeatureServiceLoggingSource

    from providers.tidb import connection, declared, reader, sql

    service = store.get_feature_service(service_name)
    table = service.logging_config.destination.table_name
    schema = FeatureServiceLoggingSource(service, store.project).get_schema(store.registry)
    feature_columns = [
        f.name
        for f in schema
        if not f.name.startswith("__")
        and "__" in f.name
        and not f.name.endswith(("__timestamp", "__status"))
    ]
    key_columns = [f.name for f in schema if "__" not in f.name]
    statement = sql.select_logged(table, since, until)
    cfg = store.config.offline_store
    with connection.connect(cfg) as conn:
        logged_before = connection.table_exists(conn, table)
    if logged_before:  # typed as the log's schema says (lists are logged as JSON)
        logged_types = {f.name: f.type for f in schema}
        logged = declared.conform(reader.read_table(cfg, statement), logged_types).to_pandas()
    else:  # serving has not logged anything for this model yet
        logged = pd.DataFrame()
    if logged.empty:
        return pd.DataFrame(
            columns=[
                "feature",
                "kind",
                "rows",
                "mismatches",
                "mean_abs_diff",
                "age_p50_s",
                "age_p95_s",
                "age_max_s",
                "lag_p50_s",
                "lag_p95_s",
                "lag_max_s",
            ]
        )
    entity_df = logged[key_columns].copy()
    entity_df["event_timestamp"] = logged["__log_timestamp"]
    entity_df["__row"] = np.arange(len(logged))
    refs = [
        f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features
    ]
    offline = store.get_historical_features(
        entity_df=entity_df, features=refs, full_feature_names=True
    ).to_df()
    offline = offline.sort_values("__row").reset_index(drop=True)
    kinds = _view_kinds(store, service)
    lags = {
        name: _stream_lag(store, name, logged, key_columns)
        for name, kind in kinds.items()
        if kind == "stream"
    }
    report = []
    for column in feature_columns:
        served, recomputed = logged[column].tolist(), offline[column].tolist()
        same = [_same(a, b) for a, b in zip(served, recomputed, strict=True)]
        numeric = [
            (float(a), float(b))
            for a, b in zip(served, recomputed, strict=True)
            if isinstance(a, int | float | np.number)
            and isinstance(b, int | float | np.number)
            and not isinstance(a, bool)
            and not (math.isnan(float(a)) or math.isnan(float(b)))
        ]
        ages = _ages(logged, column)
        report.append(
            {
                "feature": column,
                "kind": kinds[column.split("__", 1)[0]],
                "rows": len(same),
                "mismatches": len(same) - sum(same),
                "mean_abs_diff": float(np.mean([abs(a - b) for a, b in numeric]))
                if numeric
                else None,
                "age_p50_s": float(ages.quantile(0.5)) if len(ages) else None,
                "age_p95_s": float(ages.quantile(0.95)) if len(ages) else None,
                "age_max_s": float(ages.max()) if len(ages) else None,
                **_lag_columns(lags.get(column.split("__", 1)[0])),
            }
        )
    return pd.DataFrame(report)


def _ages(logged: pd.DataFrame, column: str) -> pd.Series:
    """Seconds from when the pipeline last vouched for each served value to its request: the
    view's logged vouched time where serving knew it (its progress past the value's own time),
    else the value's own time (Feast's read, or logs written before the column existed)."""
    from providers.tidb.source import vouched_column

    ts = pd.to_datetime(logged[f"{column}__timestamp"], utc=True)
    known = ts > pd.Timestamp(0, tz="UTC")
    vouched = vouched_column(column.split("__", 1)[0])
    if vouched in logged.columns:
        ts = pd.to_datetime(logged[vouched], utc=True).fillna(ts)
    ages = (pd.to_datetime(logged["__log_timestamp"], utc=True) - ts)[known].dt.total_seconds()
    return ages.clip(lower=0.0)  # as the response: a producer's clock may run ahead


def _lag_columns(lag: pd.Series | None) -> dict[str, float | None]:
    if lag is None or not len(lag):
        return {"lag_p50_s": None, "lag_p95_s": None, "lag_max_s": None}
    return {
        "lag_p50_s": float(lag.quantile(0.5)),
        "lag_p95_s": float(lag.quantile(0.95)),
        "lag_max_s": float(lag.max()),
    }


def _stream_lag(store, view_name: str, logged: pd.DataFrame, key_columns: list[str]) -> pd.Series:
    """Per logged row: seconds between the served value's change point and the latest change
    point at or before the request in the view's table (what a complete stream would serve)."""
    from providers.tidb import connection, sql

    view = store.get_stream_feature_view(view_name)
    (key,) = [c.name for c in view.entity_columns]
    served_column = next(
        c for c in logged.columns if c.startswith(f"{view_name}__") and c.endswith("__timestamp")
    )
    users = sorted({int(u) for u in logged[key].dropna()})
    if not users:
        return pd.Series(dtype=float)
    table = view.batch_source.get_table_query_string()
    statement = (
        f"SELECT {sql.quote_identifier(key)} AS k, MAX(event_ts) AS ts FROM {table} "  # noqa: S608
        f"WHERE {sql.quote_identifier(key)} = %s AND event_ts <= %s"
    )
    lag = []
    with connection.connect(store.config.offline_store) as conn, conn.cursor() as cur:
        for user, at, served in zip(
            logged[key],
            pd.to_datetime(logged["__log_timestamp"], utc=True),
            pd.to_datetime(logged[served_column], utc=True),
            strict=True,
        ):
            cur.execute(statement, (int(user), at.tz_convert(None).to_pydatetime()))
            row = cur.fetchone()
            if not row or row[1] is None:
                continue
            truth = pd.Timestamp(row[1], tz="UTC")
            # Served timestamps are logged in whole seconds. Serving missed a change point that
            # had happened by the request: the stream was at least that long behind.
            missed = served.floor("s") < truth.floor("s")
            lag.append(max(0.0, (at - truth).total_seconds()) if missed else 0.0)
    return pd.Series(lag, dtype=float)


def main(argv: list[str] | None = None) -> int:
    from feast import FeatureStore

    from providers.tidb.as_of import to_utc

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.skew",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", choices=["account_takeover", "withdrawal_fraud"])
    parser.add_argument(
        "--since",
        type=to_utc,
        default=None,
        help="Logged after this (default: 1 day before --until).",
    )
    parser.add_argument(
        "--until", type=to_utc, default=None, help="Logged before this (default: now)."
    )
    parser.add_argument(
        "--feature-repo",
        default=None,
        help="Feast repo (default: $FEATURE_REPO or ./feature_repo).",
    )
    parser.add_argument(
        "--json", action="store_true", help="Print the report as JSON records (one per feature)."
    )
    parser.add_argument(
        "--max-batch-mismatch-rate",
        type=_rate,
        default=None,
        help="Exit 3 when a batch feature mismatches in more than this fraction of rows (0..1).",
    )
    args = parser.parse_args(argv)
    until = args.until or dt.datetime.now(dt.UTC)
    since = args.since or until - dt.timedelta(days=1)
    if since >= until:
        parser.error(f"--since {since} is not before --until {until}")
    from spark_jobs.settings import default_feature_repo

    repo = args.feature_repo or default_feature_repo()
    report = skew_report(FeatureStore(repo_path=repo), args.model, since, until)
    if args.json:
        print(report.to_json(orient="records"))
    else:
        with pd.option_context("display.width", 200, "display.max_rows", 200):
            print(
                report.to_string(index=False)
                if len(report)
                else f"No served {args.model} vectors logged in the window."
            )
    if args.max_batch_mismatch_rate is not None:
        failed = gate(report, args.max_batch_mismatch_rate)
        for line in failed:
            print(f"skew: {line}", file=sys.stderr)
        return 3 if failed else 0
    return 0


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


if __name__ == "__main__":
    sys.exit(main())
