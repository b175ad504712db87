"""Training on point-in-time features: real models of both algorithms from generated history,
pinned as_of, loaded by scoring.load as serving loads them."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.utils.jobs import ROOT
from tests.utils.tables import rows


@pytest.fixture
def trained_history(stack, redis_connection_string, monkeypatch):
    """The serving stack's history (1,500 users x 40 days to 2026-03-01, batch and velocity features
    backfilled 2026-02-10..28, the repo applied), with an empty Redis of the test's own for the
    materialize step."""
    monkeypatch.setenv("REDIS_CONNECTION_STRING", redis_connection_string)
    return {**stack["env"], "REDIS_CONNECTION_STRING": redis_connection_string}


def validation_scores(model, data):
    """The artefact's scores of the training set's validation events, from dicts as serving
    gets them from Feast (None where a feature is missing), with their labels."""
    import numpy as np

    from pipelines.fit import TRAINING_SHARE

    validation = data.frame.iloc[int(len(data.frame) * TRAINING_SHARE) :]
    features = validation[model.features]
    rows = features.astype(object).where(features.notna(), None).to_dict("records")
    return np.array(model.score_many(rows)), validation["label"].to_numpy()


def assert_calibrated(model, data):
    """Serving's scores of the validation events reproduce training's metrics, and the threshold
    keeps the false-positive rate within the artefact's budget."""
    from sklearn.metrics import roc_auc_score

    scores, y = validation_scores(model, data)
    m = model.metrics
    assert m.target_fpr == 0.01 and m.validation_rows == len(y) and y.sum() > 0
    assert roc_auc_score(y, scores) == pytest.approx(m.roc_auc, abs=1e-9)
    flagged = scores >= model.threshold
    assert (
        flagged[y == 0].mean() == pytest.approx(m.fpr_at_threshold) and m.fpr_at_threshold <= 0.01
    )
    assert flagged[y == 1].mean() == pytest.approx(m.recall_at_target_fpr)


def test_train_withdrawal_fraud(trained_history, stack_db, tmp_path, redis_server, capsys):
    import scoring
    from pipelines.train import TrainingError, TrainingSet, model_features, train
    from scoring import GBDTModel, LinearModel

    # The stack's backfill ran at the session's start: now is after its rows became known.
    knowledge = dt.datetime.now(dt.UTC)
    window = dict(
        since=dt.datetime(2026, 2, 11, tzinfo=dt.UTC), until=dt.datetime(2026, 2, 28, tzinfo=dt.UTC)
    )
    model, path = train("withdrawal_fraud", knowledge, out=tmp_path, **window)
    loaded = scoring.load(path)
    assert loaded == model == scoring.load(tmp_path / "withdrawal_fraud" / "current.json")
    assert isinstance(model, LinearModel)  # the default algorithm

    from feast import FeatureStore

    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    assert model.features == [
        ref.split(":")[1] for ref in model_features(store, "withdrawal_fraud")
    ]
    assert "amount_vs_30d_mean" in model.features and "common_ips_365d" not in model.features
    assert model.as_of == knowledge.isoformat()
    runs = rows(
        stack_db, "SELECT run_id FROM feature_runs ORDER BY run_id"
    )  # batch and velocity runs
    assert model.feature_runs == [r[0] for r in runs]
    m = model.metrics
    assert (
        m.training_positives >= 2
        and m.validation_rows > 0
        and m.roc_auc is not None
        and m.roc_auc > 0.6
    )
    table = store.get_saved_dataset(model.saved_dataset).storage.table_ref
    scratch, name = table.split(".")  # saved datasets go to the scratch database (roles.py)
    assert scratch == f"{trained_history['TIDB_DATABASE']}_scratch"
    assert name.startswith("training_withdrawal_fraud_")
    assert (
        rows(stack_db, f"SELECT COUNT(*) FROM `{scratch}`.`{name}`")[0][0]
        == m.training_rows + m.validation_rows
    )

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
    from_steps = scoring.load(tmp_path / "kfp" / "withdrawal_fraud" / "current.json")
    assert isinstance(from_steps, LinearModel)
    assert from_steps.coef == pytest.approx(model.coef) and from_steps.features == model.features
    assert from_steps.as_of == model.as_of and from_steps.feature_runs == model.feature_runs
    assert from_steps.saved_dataset and from_steps.saved_dataset != model.saved_dataset
    data = TrainingSet.load(built)
    assert_calibrated(from_steps, data)

    # Gradient-boosted trees on the same events: LightGBM's model file next to the JSON.
    gbdt, gbdt_path = train(
        "withdrawal_fraud", knowledge, out=tmp_path / "gbdt", save_dataset=False,
        algorithm="gbdt", **window,
    )  # fmt: skip
    current = tmp_path / "gbdt" / "withdrawal_fraud" / "current.json"
    assert isinstance(gbdt, GBDTModel) and scoring.load(current) == scoring.load(gbdt_path) == gbdt
    assert (current.parent / gbdt.model_file).is_file()
    assert (gbdt.features, gbdt.as_of, gbdt.feature_runs) == (
        model.features,
        model.as_of,
        model.feature_runs,
    )
    g = gbdt.metrics
    assert (g.training_rows, g.validation_rows) == (m.training_rows, m.validation_rows)
    assert g.roc_auc is not None and g.roc_auc > 0.6
    assert_calibrated(scoring.load(current), data)
    print(f"\nwithdrawal_fraud logistic: {m}\nwithdrawal_fraud gbdt: {g}")
    again, _ = train(
        "withdrawal_fraud", knowledge, out=tmp_path / "gbdt", save_dataset=False,
        algorithm="gbdt", **window,
    )  # fmt: skip
    assert again.model_sha256 == gbdt.model_sha256  # reproducible, tree for tree
    assert steps.main(["train", "--training-set", str(built), "--out", str(tmp_path / "kfp-gbdt"),
                       "--algorithm", "gbdt"]) == 0  # fmt: skip
    gbdt_steps = scoring.load(tmp_path / "kfp-gbdt" / "withdrawal_fraud" / "current.json")
    assert isinstance(gbdt_steps, GBDTModel) and gbdt_steps.model_sha256 == gbdt.model_sha256

    # The command line: the trees saved, the linear model fitted beside them on the same split.
    from pipelines.train import main

    capsys.readouterr()
    assert main(["withdrawal_fraud", "--as-of", as_of, "--since", "2026-02-11T00:00:00Z",
                 "--until", "2026-02-28T00:00:00Z", "--algorithm", "gbdt", "--target-fpr", "0.05",
                 "--compare-algorithms", "--out", str(tmp_path / "cli")]) == 0  # fmt: skip
    out = capsys.readouterr().out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:3]}
    assert table["gbdt"][0] == f"{g.roc_auc:.3f}" and table["logistic"][0] == f"{m.roc_auc:.3f}"
    cli = scoring.load(tmp_path / "cli" / "withdrawal_fraud" / "current.json")
    assert isinstance(cli, GBDTModel) and cli.metrics.target_fpr == 0.05
    assert cli.metrics.fpr_at_threshold <= 0.05 and f"artefact: {tmp_path / 'cli'}" in out
    import redis

    assert redis.Redis.from_url(redis_server.url).dbsize() == 0
    assert steps.main(["materialize", "--until", "2026-03-01T00:00:00Z"]) == 0
    assert redis.Redis.from_url(redis_server.url).dbsize() > 0

    with pytest.raises(TrainingError, match="positive withdrawal_fraud labels"):
        train("withdrawal_fraud", dt.datetime(2026, 2, 1, tzinfo=dt.UTC), out=tmp_path, **window)
