"""The DAG files load in a real Airflow 3 DagBag with zero import errors, wired as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

DAGS = Path(__file__).resolve().parents[2] / "pipelines" / "airflow" / "dags"


@pytest.fixture(scope="module")
def dagbag():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(DAGS))


def test_dag_files_import_with_zero_errors(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == {"feature_platform_daily", "feature_platform_backfill"}


def test_dags_serialize_as_the_scheduler_stores_them(dagbag):
    """The scheduler serializes every DAG; a templated field that shadows a BaseOperator field
    (e.g. `end_date`) imports fine but fails here."""
    from airflow.serialization.serialized_objects import DagSerialization

    for dag in dagbag.dags.values():
        restored = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        assert set(restored.task_ids) == set(dag.task_ids)


def test_daily_flow(dagbag):
    dag = dagbag.dags.get("feature_platform_daily")
    batch = dag.get_task("batch_features")
    assert batch.downstream_task_ids == {"materialize_incremental"}
    assert dag.get_task("materialize_incremental").downstream_task_ids == {
        "skew_report_account_takeover",
        "skew_report_withdrawal_fraud",
    }
    assert dag.catchup is False and dag.max_active_runs == 1
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.get_task("skew_report_account_takeover").max_batch_mismatch_rate == (
        "{{ params.max_batch_mismatch_rate }}"
    )


def test_daily_interval_covers_the_previous_day(dagbag):
    import datetime as dt

    from airflow.timetables.base import DataInterval

    dag = dagbag.dags.get("feature_platform_daily")
    interval = dag.timetable.infer_manual_data_interval(
        run_after=dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.UTC)
    )
    assert isinstance(interval, DataInterval)
    assert interval.start == dt.datetime(2026, 3, 1, 0, 30, tzinfo=dt.UTC)
    assert interval.end == dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.UTC)


def test_backfill_dag_takes_params_and_is_never_scheduled(dagbag):
    dag = dagbag.dags.get("feature_platform_backfill")
    assert type(dag.timetable).__name__ == "NullTimetable"
    assert {"start", "end", "chunk_days", "train"} <= set(dag.params)
    assert dag.get_task("feast_apply").downstream_task_ids == {"backfill"}
    assert dag.get_task("backfill").downstream_task_ids == {"velocity_backfill"}
    assert dag.get_task("velocity_backfill").downstream_task_ids == {"train_requested"}
    assert dag.get_task("train_requested").downstream_task_ids == {
        "train_account_takeover",
        "train_withdrawal_fraud",
    }
    backfill = dag.get_task("backfill")
    assert backfill.materialize is True and backfill.start == "{{ params.start }}"
