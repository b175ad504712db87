"""Daily: yesterday's batch features -> materialize-incremental -> skew report per model.

Runs at 00:30 UTC for the interval [yesterday 00:30, today 00:30); the Spark job computes as-of day
= the interval's start date. Connection: `feature_platform_default` (pipelines/airflow/hooks.py).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param
from airflow.timetables.interval import CronDataIntervalTimetable

from pipelines.airflow.operators import (
    FeastMaterializeIncrementalOperator,
    SkewReportOperator,
    SparkFeatureJobOperator,
)

MODELS = ("account_takeover", "withdrawal_fraud")

with DAG(
    dag_id="feature_platform_daily",
    description=__doc__.splitlines()[0],
    schedule=CronDataIntervalTimetable("30 0 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 2,
        "retry_delay": dt.timedelta(minutes=5),
        "execution_timeout": dt.timedelta(hours=3),
    },
    params={
        "max_batch_mismatch_rate": Param(
            0.0, type="number", minimum=0, maximum=1, description="Skew gate for batch features."
        ),
    },
    tags=["feature-platform"],
) as dag:
    batch = SparkFeatureJobOperator(task_id="batch_features")
    materialize = FeastMaterializeIncrementalOperator(task_id="materialize_incremental")
    skew = [
        SkewReportOperator(
            task_id=f"skew_report_{model}",
            model=model,
            max_batch_mismatch_rate="{{ params.max_batch_mismatch_rate }}",
        )
        for model in MODELS
    ]
    batch >> materialize >> skew
