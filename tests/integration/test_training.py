"""Training on point-in-time features: a real model from generated history, pinned as_of."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.utils.jobs import ROOT, feast, jobs_environment
from tests.utils.tables import rows

END = dt.date(2026, 3, 1)


@pytest.fixture
def trained_history(mariadb, database, redis_connection_string, monkeypatch):
    from spark_jobs import backfill, generate, velocity_backfill

    env = jobs_environment(mariadb, database, redis_connection_string, monkeypatch)
    assert generate.main(["--users", "1500", "--days", "40", "--end", END.isoformat()]) == 0
    assert backfill.main(["--start", "2026-02-10", "--end", "2026-02-27", "--no-progress"]) == 0
    feast(env, "apply")
    assert velocity_backfill.main(["--start", "2026-02-10", "--end", "2026-02-27"]) == 0
    return env


def test_train_withdrawal_fraud(trained_history, db, tmp_path, redis_server):
    from pipelines.train import TrainingError, model_features, train
    from serving.model import LinearModel

    # The backfill ran just now: its rows became known now, so that is the earliest useful knowledge time.
    knowledge = dt.datetime.now(dt.UTC)
    window = dict(
        since=dt.datetime(2026, 2, 11, tzinfo=dt.UTC), until=dt.datetime(2026, 2, 28, tzinfo=dt.UTC)
    )
    model, path = train("withdrawal_fraud", knowledge, out=tmp_path, **window)
    loaded = LinearModel.load(path)
    assert loaded == model == LinearModel.load(tmp_path / "withdrawal_fraud" / "current.json")

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    assert model.features == [
        ref.split(":")[1] for ref in model_features(store, "withdrawal_fraud")
    ]
    assert "amount_vs_30d_mean" in model.features and "common_ips_365d" not in model.features
    assert model.as_of == knowledge.isoformat()
    runs = rows(db, "SELECT run_id FROM feature_runs ORDER BY run_id")  # batch and velocity runs
    assert model.feature_runs == [r[0] for r in runs]
    m = model.metrics
    assert (
        m.training_positives >= 2
        and m.validation_rows > 0
        and m.roc_auc is not None
        and m.roc_auc > 0.6
    )
    table = store.get_saved_dataset(model.saved_dataset).storage.table_ref
    assert table.startswith("training_withdrawal_fraud_")
    assert rows(db, f"SELECT COUNT(*) FROM `{table}`")[0][0] == m.training_rows + m.validation_rows

    again, _ = train("withdrawal_fraud", knowledge, out=tmp_path, save_dataset=False, **window)
    assert (
        again.coef == pytest.approx(model.coef) and again.threshold == model.threshold
    )  # reproducible

    # The Kubeflow steps (a training set as a directory, then training from it) give the same model.
    from pipelines.kubeflow import steps

    as_of = knowledge.isoformat()
    built = tmp_path / "dataset"
    assert steps.main(["build-training-set", "--model", "withdrawal_fraud", "--as-of", as_of,
                       "--since", "2026-02-11T00:00:00Z", "--until", "2026-02-28T00:00:00Z",
                       "--out", str(built)]) == 0  # fmt: skip
    assert steps.main(["train", "--training-set", str(built), "--out", str(tmp_path / "kfp")]) == 0
    from_steps = LinearModel.load(tmp_path / "kfp" / "withdrawal_fraud" / "current.json")
    assert from_steps.coef == pytest.approx(model.coef) and from_steps.features == model.features
    assert from_steps.as_of == model.as_of and from_steps.feature_runs == model.feature_runs
    assert from_steps.saved_dataset and from_steps.saved_dataset != model.saved_dataset
    import redis

    assert redis.Redis.from_url(redis_server.url).dbsize() == 0
    assert steps.main(["materialize", "--until", "2026-03-01T00:00:00Z"]) == 0
    assert redis.Redis.from_url(redis_server.url).dbsize() > 0

    with pytest.raises(TrainingError, match="positive withdrawal_fraud labels"):
        train("withdrawal_fraud", dt.datetime(2026, 2, 1, tzinfo=dt.UTC), out=tmp_path, **window)
