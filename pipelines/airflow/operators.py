"""Operators named for what they do. Each runs one of the platform's own commands through
FeaturePlatformHook, so Airflow, Kubeflow, Kubernetes and a shell all run the same code.

Arguments are keyword-only; dates are templated (defaults use the run's data interval).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from pipelines.airflow.hooks import FeaturePlatformHook

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def _positive_int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive integer, got {value!r}") from None
    if number < 1 or str(number) != str(value).strip():
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    return number


def _rate(value: Any) -> float:
    try:
        rate = float(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"max_batch_mismatch_rate must be a number in [0, 1], got {value!r}"
        ) from None
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"max_batch_mismatch_rate must be in [0, 1], got {value!r}")
    return rate


def _names(value: Sequence[str] | None, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not all(isinstance(v, str) and _NAME.match(v) for v in value):
        raise ValueError(f"{what} must be a list of names like ['user_logins'], got {value!r}")
    return list(value)


class _PlatformOperator(BaseOperator):
    """`role`: whose database account the command runs with (providers/tidb/roles.py): the
    connection `feature_platform_<role>` when it exists, else `feature_platform_default`;
    `platform_conn_id` names one outright."""

    ui_color = "#e8f0fe"
    role = "writer"

    def __init__(self, *, platform_conn_id: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.platform_conn_id = platform_conn_id

    @property
    def hook(self) -> FeaturePlatformHook:
        """One hook per task run, kept so that on_kill can stop its command."""
        if getattr(self, "_hook", None) is None:
            self._hook = FeaturePlatformHook(platform_conn_id=self.platform_conn_id, role=self.role)
        return self._hook

    def on_kill(self) -> None:
        if getattr(self, "_hook", None) is not None:
            self._hook.stop()


class FeastApplyOperator(_PlatformOperator):
    """`feast apply`: register the feature repo's definitions (idempotent)."""

    role = "registry"

    def execute(self, context: Any) -> None:
        self.hook.feast("apply")


class FeastMaterializeIncrementalOperator(_PlatformOperator):
    """`feast materialize-incremental <until> [--views ...]`: TiDB -> Redis up to `until`.

    (Not `end_date`: that name is BaseOperator's own field.)
    """

    role = "registry"

    template_fields: Sequence[str] = ("until",)

    def __init__(
        self,
        *,
        until: str = "{{ data_interval_end | ts }}",
        views: Sequence[str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.until = until
        self.views = _names(views, "views")

    def execute(self, context: Any) -> None:
        views = [arg for view in self.views for arg in ("--views", view)]
        self.hook.feast("materialize-incremental", self.until, *views)


class SparkFeatureJobOperator(_PlatformOperator):
    """The Spark batch/backfill job (`python -m spark_jobs.backfill`) for as-of days start..end.

    A daily run is a backfill of one day; re-running a day writes a new version, never overwrites.
    """

    template_fields: Sequence[str] = ("start", "end", "chunk_days")

    def __init__(
        self,
        *,
        start: str = "{{ data_interval_start | ds }}",
        end: str = "{{ data_interval_start | ds }}",
        features: Sequence[str] | None = None,
        materialize: bool = False,
        chunk_days: int | str | None = None,
        master: str | None = None,
        spark_conf: dict[str, str] | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if chunk_days is not None and not _templated(chunk_days):
            _positive_int(chunk_days, "chunk_days")
        self.start, self.end = start, end
        self.features = _names(features, "features")
        self.materialize = materialize
        self.chunk_days = chunk_days
        self.master = master
        self.spark_conf = dict(spark_conf or {})

    def execute(self, context: Any) -> None:
        args = ["--start", self.start, "--end", self.end, "--no-progress"]
        if self.features:
            args += ["--features", ",".join(self.features)]
        if self.chunk_days is not None:
            args += ["--chunk-days", str(_positive_int(self.chunk_days, "chunk_days"))]
        if self.materialize:
            args += ["--materialize", "--feature-repo", self.hook.feature_repo]
        if self.master:
            args += ["--master", self.master]
        for key, value in self.spark_conf.items():
            args += ["--conf", f"{key}={value}"]
        self.hook.module("spark_jobs.backfill", *args, capture=False)  # hours of logs


class VelocityBackfillOperator(_PlatformOperator):
    """`python -m spark_jobs.velocity_backfill`: the stream feature views' windows over days
    start..end from the raw events (cold start, training history), the stream job's engine."""

    template_fields: Sequence[str] = ("start", "end")

    def __init__(
        self,
        *,
        start: str = "{{ data_interval_start | ds }}",
        end: str = "{{ data_interval_start | ds }}",
        views: Sequence[str] | None = None,
        master: str | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.start, self.end = start, end
        self.views = _names(views, "views")
        self.master = master

    def execute(self, context: Any) -> None:
        args = ["--start", self.start, "--end", self.end, "--feature-repo", self.hook.feature_repo]
        if self.views:
            args += ["--views", *self.views]
        if self.master:
            args += ["--master", self.master]
        args.append("--take-over")  # a retry after a killed attempt resumes its run
        self.hook.module("spark_jobs.velocity_backfill", *args, capture=False)


class TrainModelOperator(_PlatformOperator):
    """`python -m pipelines.train <model>`: point-in-time training set `as_of`, model artefact."""

    role = "reader"

    template_fields: Sequence[str] = ("as_of", "since", "until", "out")

    def __init__(
        self,
        *,
        model: str,
        as_of: str = "{{ data_interval_end | ts }}",
        since: str | None = None,
        until: str | None = None,
        out: str | None = None,
        max_negatives: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _NAME.match(model or ""):
            raise ValueError(f"model must be a model name like 'account_takeover', got {model!r}")
        self.model, self.as_of, self.since, self.until, self.out = model, as_of, since, until, out
        self.max_negatives = max_negatives

    def execute(self, context: Any) -> str:
        args = [self.model, "--as-of", self.as_of, "--feature-repo", self.hook.feature_repo]
        for flag, value in (("--since", self.since), ("--until", self.until), ("--out", self.out)):
            if value:
                args += [flag, value]
        if self.max_negatives is not None:
            args += ["--max-negatives", str(self.max_negatives)]
        result = self.hook.module("pipelines.train", *args)
        artefact = [line for line in result.output.splitlines() if line.startswith("artefact: ")]
        return artefact[-1].removeprefix("artefact: ") if artefact else ""


class SkewReportOperator(_PlatformOperator):
    """`python -m pipelines.skew <model>` over a window; returns the report (XCom) and fails when a
    batch feature mismatches in more than `max_batch_mismatch_rate` of the served rows."""

    role = "reader"

    template_fields: Sequence[str] = ("since", "until", "max_batch_mismatch_rate")

    def __init__(
        self,
        *,
        model: str,
        since: str = "{{ data_interval_start | ts }}",
        until: str = "{{ data_interval_end | ts }}",
        max_batch_mismatch_rate: float | str = 0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not _NAME.match(model or ""):
            raise ValueError(f"model must be a model name like 'account_takeover', got {model!r}")
        if not _templated(max_batch_mismatch_rate):
            _rate(max_batch_mismatch_rate)
        self.model, self.since, self.until = model, since, until
        self.max_batch_mismatch_rate = max_batch_mismatch_rate

    def execute(self, context: Any) -> list[dict]:
        rate = _rate(self.max_batch_mismatch_rate)
        result = self.hook.module(
            "pipelines.skew",
            self.model,
            "--since",
            self.since,
            "--until",
            self.until,
            "--json",
            "--max-batch-mismatch-rate",
            str(rate),
            "--feature-repo",
            self.hook.feature_repo,
            ok_codes=(0, 3),
        )
        reports = [line for line in result.output.splitlines() if line.startswith("[")]
        if not reports:
            raise AirflowException(
                f"pipelines.skew printed no JSON report:\n{result.output[-2000:]}"
            )
        records = json.loads(reports[-1])
        if result.returncode == 3:
            offenders = [line for line in result.output.splitlines() if line.startswith("skew: ")]
            raise AirflowException(
                f"Train/serve skew above {rate:.2%} for {self.model}:\n" + "\n".join(offenders)
            )
        return records


class EraseSubjectOperator(_PlatformOperator):
    """`python -m pipelines.erase --user-id ...`: erase a subject everywhere and keep them erased
    (docs/erasure.md); returns the audit request id (XCom). Fails when the erasure fails; running
    the task again completes it. Typically templated from a manually triggered run's conf:
    `user_id="{{ dag_run.conf['user_id'] }}"`."""

    template_fields: Sequence[str] = ("user_id", "requested_by", "reason")

    def __init__(self, *, user_id: int | str, requested_by: str, reason: str, **kwargs):
        super().__init__(**kwargs)
        if not _templated(user_id):
            _positive_int(user_id, "user_id")
        for what, value in (("requested_by", requested_by), ("reason", reason)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{what} must be a non-empty string, got {value!r}")
        self.user_id, self.requested_by, self.reason = user_id, requested_by, reason

    def execute(self, context: Any) -> str:
        user_id = _positive_int(self.user_id, "user_id")
        result = self.hook.module(
            "pipelines.erase",
            "--user-id",
            str(user_id),
            "--requested-by",
            self.requested_by,
            "--reason",
            self.reason,
            "--feature-repo",
            self.hook.feature_repo,
        )
        audit = re.findall(r"\(audit ([0-9a-f-]{36})\)", result.output)
        if not audit:
            raise AirflowException(f"pipelines.erase printed no audit id:\n{result.output[-2000:]}")
        return audit[-1]
