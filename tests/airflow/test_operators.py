"""Each operator's execute with the hook's command runner patched: the exact command it runs, its
templated dates rendered by Airflow's own template engine, and its validation."""

from __future__ import annotations

import datetime as dt
import json
from unittest import mock

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowException

from pipelines.airflow import operators
from pipelines.airflow.hooks import CommandResult, FeaturePlatformHook

START = dt.datetime(2026, 3, 1, 0, 30, tzinfo=dt.UTC)
END = dt.datetime(2026, 3, 2, 0, 30, tzinfo=dt.UTC)
CONTEXT = {
    "data_interval_start": START,
    "data_interval_end": END,
    "ds": "2026-03-02",
    "ts": END.isoformat(),
    "params": {"start": "2026-01-01", "end": "2026-01-31", "chunk_days": 14, "rate": "0.05"},
}


class Calls(list):
    """(kind, argv, ok_codes) of each command, and the output each module/command returns."""

    def __init__(self):
        super().__init__()
        self.outputs: dict[str, CommandResult] = {}


@pytest.fixture
def calls(monkeypatch):
    """Record what the hook would run instead of running it; outputs set per test."""
    recorded = Calls()
    outputs = recorded.outputs

    def fake(kind):
        def run(self, name, *args, ok_codes=(0,), capture=True):
            recorded.append((kind, (name, *args), tuple(ok_codes)))
            return outputs.get(name, CommandResult([name, *args], 0, ""))

        return run

    monkeypatch.setattr(FeaturePlatformHook, "feast", fake("feast"))
    monkeypatch.setattr(FeaturePlatformHook, "module", fake("module"))
    monkeypatch.setattr(
        FeaturePlatformHook, "feature_repo", property(lambda self: "/repo/feature_repo")
    )
    return recorded


def render(op):
    """Render op's templated fields the way a task run does (its DAG's template environment)."""
    op.render_template_fields(CONTEXT)
    return op


def test_apply(calls):
    operators.FeastApplyOperator(task_id="t").execute({})
    assert calls == [("feast", ("apply",), (0,))]


def test_materialize_incremental_renders_the_interval_end(calls):
    op = render(operators.FeastMaterializeIncrementalOperator(task_id="t", views=["user_logins"]))
    op.execute({})
    assert calls == [
        (
            "feast",
            ("materialize-incremental", "2026-03-02T00:30:00+00:00", "--views", "user_logins"),
            (0,),
        )
    ]


def test_spark_job_defaults_to_the_intervals_day(calls):
    render(operators.SparkFeatureJobOperator(task_id="t")).execute({})
    assert calls == [
        (
            "module",
            (
                "spark_jobs.backfill",
                "--start",
                "2026-03-01",
                "--end",
                "2026-03-01",
                "--no-progress",
            ),
            (0,),
        )
    ]


def test_velocity_backfill_runs_the_same_days_and_resumes(calls):
    with DAG("d", schedule=None, render_template_as_native_obj=True):
        op = operators.VelocityBackfillOperator(
            task_id="t",
            start="{{ params.start }}",
            end="{{ params.end }}",
            views=["user_login_velocity"],
            master="local[2]",
        )
    render(op).execute({})
    ((_, argv, _),) = calls
    assert argv == (
        "spark_jobs.velocity_backfill",
        "--start", "2026-01-01", "--end", "2026-01-31",
        "--feature-repo", "/repo/feature_repo",
        "--views", "user_login_velocity",
        "--master", "local[2]",
        "--take-over",
    )  # fmt: skip
    with pytest.raises(ValueError, match="list of names"):
        operators.VelocityBackfillOperator(task_id="t", views="user_login_velocity")


def test_spark_job_with_every_option(calls):
    with DAG("d", schedule=None, render_template_as_native_obj=True):  # as the backfill DAG
        op = operators.SparkFeatureJobOperator(
            task_id="t",
            start="{{ params.start }}",
            end="{{ params.end }}",
            features=["user_logins", "user_profile"],
            chunk_days="{{ params.chunk_days }}",
            materialize=True,
            master="local[2]",
            spark_conf={"spark.driver.memory": "4g"},
        )
    render(op).execute({})
    ((_, argv, _),) = calls
    assert argv == (
        "spark_jobs.backfill",
        "--start", "2026-01-01", "--end", "2026-01-31", "--no-progress",
        "--features", "user_logins,user_profile",
        "--chunk-days", "14",
        "--materialize", "--feature-repo", "/repo/feature_repo",
        "--master", "local[2]",
        "--conf", "spark.driver.memory=4g",
    )  # fmt: skip


def test_train_returns_the_artefact_path(calls):
    calls.outputs["pipelines.train"] = CommandResult(
        [],
        0,
        "account_takeover v1: 10 training rows\nartefact: /models/account_takeover/v1/model.json",
    )
    op = render(
        operators.TrainModelOperator(
            task_id="t", model="account_takeover", since="2026-01-01T00:00:00Z", max_negatives=5000
        )
    )
    assert op.execute({}) == "/models/account_takeover/v1/model.json"
    assert calls[0][1] == (
        "pipelines.train", "account_takeover", "--as-of", "2026-03-02T00:30:00+00:00",
        "--feature-repo", "/repo/feature_repo",
        "--since", "2026-01-01T00:00:00Z", "--max-negatives", "5000",
    )  # fmt: skip


def test_skew_report_returns_the_records(calls):
    records = [{"feature": "user_logins__failed_logins_1d", "kind": "batch", "rows": 3}]
    calls.outputs["pipelines.skew"] = CommandResult([], 0, "some log line\n" + json.dumps(records))
    op = render(
        operators.SkewReportOperator(
            task_id="t", model="withdrawal_fraud", max_batch_mismatch_rate="{{ params.rate }}"
        )
    )
    assert op.execute({}) == records
    assert calls == [
        (
            "module",
            (
                "pipelines.skew", "withdrawal_fraud",
                "--since", "2026-03-01T00:30:00+00:00", "--until", "2026-03-02T00:30:00+00:00",
                "--json", "--max-batch-mismatch-rate", "0.05", "--feature-repo", "/repo/feature_repo",
            ),
            (0, 3),
        )
    ]  # fmt: skip


def test_skew_report_fails_the_task_above_the_gate(calls):
    calls.outputs["pipelines.skew"] = CommandResult(
        [], 3, "[]\nskew: user_logins__failed_logins_1d: 2 of 100 rows mismatch (2.00% > 0.00%)"
    )
    op = render(operators.SkewReportOperator(task_id="t", model="account_takeover"))
    with pytest.raises(AirflowException, match="2 of 100 rows mismatch"):
        op.execute({})


def test_skew_report_without_a_report_fails_clearly(calls):
    calls.outputs["pipelines.skew"] = CommandResult([], 0, "Traceback ...")
    op = render(operators.SkewReportOperator(task_id="t", model="account_takeover"))
    with pytest.raises(AirflowException, match="no JSON report"):
        op.execute({})


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: operators.TrainModelOperator(task_id="t", model="drop table"), "model"),
        (
            lambda: operators.SkewReportOperator(task_id="t", model="m", max_batch_mismatch_rate=2),
            "[0, 1]",
        ),
        (lambda: operators.SparkFeatureJobOperator(task_id="t", chunk_days=0), "chunk_days"),
        (
            lambda: operators.SparkFeatureJobOperator(task_id="t", features="user_logins"),
            "list of names",
        ),
        (
            lambda: operators.FeastMaterializeIncrementalOperator(task_id="t", views=["a;b"]),
            "names",
        ),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_templated_values_are_validated_when_rendered(calls):
    op = operators.SparkFeatureJobOperator(task_id="t", chunk_days="{{ params.start }}")
    with pytest.raises(ValueError, match="chunk_days"):
        render(op).execute({})
    assert calls == []


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        operators.TrainModelOperator("t", "account_takeover")  # type: ignore[misc]


def test_hook_is_built_from_the_operators_connection(calls):
    op = operators.FeastApplyOperator(task_id="t", platform_conn_id="other")
    assert op.hook.platform_conn_id == "other"
    with mock.patch.object(FeaturePlatformHook, "feast") as feast:
        op.execute({})
    feast.assert_called_once_with("apply")


def test_erase_subject_runs_the_erasure_and_returns_its_audit_id(calls):
    audit = "0f8fad5b-d9cb-469f-a165-70867728950e"
    calls.outputs["pipelines.erase"] = CommandResult(
        [], 0, f"  tidb:logins: 3\nErased user_id 42: 3 rows ... (audit {audit}). It stays erased\n"
    )
    with DAG("d", schedule=None):
        op = operators.EraseSubjectOperator(
            task_id="t",
            user_id="{{ params.user }}",
            requested_by="dpo@example.com",
            reason="ticket 7",
        )
    op.render_template_fields({**CONTEXT, "params": {"user": "42"}})
    assert op.execute({}) == audit
    assert calls == [
        (
            "module",
            (
                "pipelines.erase", "--user-id", "42", "--requested-by", "dpo@example.com",
                "--reason", "ticket 7", "--feature-repo", "/repo/feature_repo",
            ),
            (0,),
        )
    ]  # fmt: skip
    calls.outputs["pipelines.erase"] = CommandResult([], 0, "nothing erased\n")
    with pytest.raises(AirflowException, match="no audit id"):
        op.execute({})
    with pytest.raises(ValueError, match="user_id must be a positive integer"):
        operators.EraseSubjectOperator(task_id="t", user_id="x", requested_by="a", reason="b")
    with pytest.raises(ValueError, match="reason must be a non-empty string"):
        operators.EraseSubjectOperator(task_id="t", user_id=1, requested_by="a", reason=" ")
