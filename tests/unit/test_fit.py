"""Training's fitting step (pipelines/fit.py) on synthetic data: both algorithms learn, the
threshold keeps the false-positive rate within its budget, and the saved artefact scores the
validation events exactly as training measured them."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

import scoring
from pipelines.fit import ALGORITHMS, TRAINING_SHARE, TrainingError, calibrate, fit_model
from pipelines.train import TrainingSet, save_artefact

FEATURES = ["failed_logins_1h", "ip_is_common", "amount_vs_30d_mean", "account_age_days"]


def training_set(n: int = 4000, seed: int = 0) -> TrainingSet:
    """Events in time order; fraud is a burst of failures from an uncommon IP, or a withdrawal
    far above the user's mean; features of unknown users are missing (None)."""
    rng = np.random.default_rng(seed)
    failures = rng.poisson(1.0, n).astype(float)
    common = rng.random(n) < 0.8
    ratio = rng.lognormal(0, 0.5, n)
    age = rng.integers(1, 2000, n).astype(float)
    risk = 1.2 * failures - 2.5 * common + 2.0 * np.log(ratio) - 4.0
    label = (rng.random(n) < 1 / (1 + np.exp(-risk))).astype(int)
    frame = pd.DataFrame(
        {
            "event_timestamp": pd.date_range("2026-01-01", periods=n, freq="min", tz="UTC"),
            "label": label,
            "failed_logins_1h": failures,
            "ip_is_common": pd.Series(common, dtype=object),
            "amount_vs_30d_mean": ratio,
            "account_age_days": age,
        }
    )
    unknown = rng.random(n) < 0.1
    frame.loc[unknown, ["failed_logins_1h", "ip_is_common"]] = None
    return TrainingSet(
        model="account_takeover",
        frame=frame,
        features=FEATURES,
        as_of=dt.datetime(2026, 3, 1, tzinfo=dt.UTC),
        feature_runs=["r1", "r2"],
        saved_dataset=None,
    )


@pytest.fixture(scope="module")
def data() -> TrainingSet:
    return training_set()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_both_algorithms_learn_and_their_artefacts_score_as_measured(tmp_path, data, algorithm):
    model = fit_model(data, algorithm=algorithm, target_fpr=0.05)
    assert model.format == {"logistic": "fraud-linear-v1", "gbdt": "fraud-gbdt-v1"}[algorithm]
    assert model.features == FEATURES and model.feature_runs == ["r1", "r2"]
    assert model.as_of == "2026-03-01T00:00:00+00:00"
    m = model.metrics
    cut = int(len(data.frame) * TRAINING_SHARE)
    labels = data.frame["label"].to_numpy()
    assert (m.training_rows, m.validation_rows) == (cut, len(labels) - cut)
    assert (m.training_positives, m.validation_positives) == (
        labels[:cut].sum(),
        labels[cut:].sum(),
    )
    assert m.roc_auc is not None and m.roc_auc > 0.8
    assert m.target_fpr == 0.05 and m.fpr_at_threshold <= 0.05

    # Serving's path: the saved artefact, loaded by the one loader, scoring Feast-like dicts.
    path = save_artefact(model, tmp_path)
    loaded = scoring.load(tmp_path / "account_takeover" / "current.json")
    assert loaded == scoring.load(path) == model
    validation = data.frame.iloc[cut:]
    rows = validation[FEATURES].astype(object).where(validation[FEATURES].notna(), None)
    scores = np.array(loaded.score_many(rows.to_dict("records")))
    y = validation["label"].to_numpy()
    assert roc_auc_score(y, scores) == pytest.approx(m.roc_auc, abs=1e-12)
    flagged = scores >= loaded.threshold
    assert flagged[y == 0].mean() == pytest.approx(m.fpr_at_threshold, abs=1e-12)
    assert flagged[y == 1].mean() == pytest.approx(m.recall_at_target_fpr, abs=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_rerun_gives_the_same_model(data, algorithm):
    first, again = (fit_model(data, algorithm=algorithm) for _ in range(2))
    assert again.model_dump(exclude={"version", "trained_at"}) == first.model_dump(
        exclude={"version", "trained_at"}
    )


def test_a_single_class_training_part_is_refused(data):
    frame = data.frame.assign(label=0)
    one_class = TrainingSet(data.model, frame, data.features, data.as_of, [], None)
    with pytest.raises(TrainingError, match="single class"):
        fit_model(one_class, algorithm="gbdt")


def test_threshold_is_the_lowest_score_within_the_fpr_budget():
    rng = np.random.default_rng(3)
    y = (rng.random(5000) < 0.05).astype(int)
    scores = np.round(np.clip(rng.normal(0.3 + 0.3 * y, 0.15), 0, 1), 3)  # many ties
    for target in (0.001, 0.01, 0.1, 0.5):
        threshold, recall, fpr = calibrate(scores, y, target)
        negatives, positives = scores[y == 0], scores[y == 1]
        assert fpr == np.mean(negatives >= threshold) <= target
        assert recall == np.mean(positives >= threshold)
        lower = scores[scores < threshold]
        if len(lower):  # the next score down would flag more negatives than the budget
            assert np.mean(negatives >= lower.max()) > target


def test_threshold_edges():
    y = np.array([0, 0, 0, 1, 1])
    # The top score is a negative: within a 10% budget nothing may be flagged.
    threshold, recall, fpr = calibrate(np.array([0.9, 0.2, 0.1, 0.5, 0.4]), y, 0.1)
    assert threshold > 0.9 and threshold <= 1.0 and recall == 0.0 and fpr == 0.0
    threshold, recall, fpr = calibrate(np.array([0.3, 0.2, 0.1]), np.zeros(3, int), 0.34)
    assert threshold == 0.3 and recall is None and fpr == pytest.approx(1 / 3)
    with pytest.raises(TrainingError, match="no negatives"):
        calibrate(np.array([0.3, 0.2]), np.ones(2, int), 0.01)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="target_fpr"):
            calibrate(np.array([0.3, 0.2]), np.array([0, 1]), bad)
