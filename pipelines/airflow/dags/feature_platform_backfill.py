"""Backfill (cold start or a recompute): feast apply -> Spark backfill of as-of days start..end
(resumable, versioned) with materialize -> the velocity features' backfill over the same days ->
optionally retrain both models (they read the velocity features too). Triggered by hand with
params; never scheduled.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.standard.operators.python import ShortCircuitOperator
from airflow.sdk import DAG, Param

from pipelines.airflow.operators import (
    FeastApplyOperator,
    SparkFeatureJobOperator,
    TrainModelOperator,
    VelocityBackfillOperator,
)

with DAG(
    dag_id="feature_platform_backfill",
    description=__doc__.splitlines()[0],
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,
    params={
        "start": Param(type="string", format="date", description="First as-of day (UTC)."),
        "end": Param(type="string", format="date", description="Last as-of day (UTC), inclusive."),
        "chunk_days": Param(
            None,
            type=["null", "integer"],
            minimum=1,
            maximum=3660,
            description="Days per chunk (the unit of resume); empty: the job's default.",
        ),
        "train": Param(False, type="boolean", description="Retrain both models afterwards."),
    },
    render_template_as_native_obj=True,
    tags=["feature-platform"],
) as dag:
    apply = FeastApplyOperator(task_id="feast_apply")
    backfill = SparkFeatureJobOperator(
        task_id="backfill",
        start="{{ params.start }}",
        end="{{ params.end }}",
        chunk_days="{{ params.chunk_days }}",
        materialize=True,
        execution_timeout=dt.timedelta(hours=12),
    )
    wants_training = ShortCircuitOperator(
        task_id="train_requested",
        python_callable=lambda params, **_: bool(params["train"]),  # params from the context
    )
    velocity = VelocityBackfillOperator(
        task_id="velocity_backfill",
        start="{{ params.start }}",
        end="{{ params.end }}",
        execution_timeout=dt.timedelta(hours=12),
    )
    apply >> backfill >> velocity >> wants_training
    for model in ("account_takeover", "withdrawal_fraud"):
        train = TrainModelOperator(
            task_id=f"train_{model}",
            model=model,
            # Manual runs may have no logical date; run_after is always set.
            as_of="{{ dag_run.run_after | ts }}",
            until="{{ macros.ds_add(params.end, 1) }}T00:00:00Z",  # exclusive: all of `end`
        )
        wants_training >> train
