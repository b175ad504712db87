"""Model artefacts load only as validated JSON, and score like scikit-learn."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from serving.model import LinearModel, ModelArtefactError


def artefact(**overrides) -> dict:
    base = dict(
        model="account_takeover",
        version="v1",
        feature_service="account_takeover",
        features=["failed_logins_1d", "ip_is_common"],
        mean=[1.0, 0.5],
        scale=[2.0, 0.5],
        coef=[0.8, -1.5],
        intercept=-2.0,
        threshold=0.7,
        as_of="2026-11-01T00:00:00+00:00",
        feature_runs=["r1"],
        saved_dataset=None,
        code_version="abc",
        trained_at="2026-11-01T01:00:00+00:00",
        metrics=dict(
            roc_auc=0.9,
            pr_auc=0.4,
            validation_rows=10,
            validation_positives=2,
            training_rows=30,
            training_positives=3,
        ),
    )
    return base | overrides


def test_round_trip_and_score_matches_sklearn(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] - x[:, 1] + rng.normal(scale=0.5, size=200) > 0).astype(int)
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression().fit(scaler.transform(x), y)
    model = LinearModel(
        **artefact(
            mean=scaler.mean_.tolist(),
            scale=scaler.scale_.tolist(),
            coef=clf.coef_[0].tolist(),
            intercept=float(clf.intercept_[0]),
        )
    )
    loaded = LinearModel.load(model.save(tmp_path / "m.json"))
    ours = loaded.score_matrix(x)
    assert ours == pytest.approx(clf.predict_proba(scaler.transform(x))[:, 1])
    assert loaded.score({"failed_logins_1d": x[0, 0], "ip_is_common": x[0, 1]}) == pytest.approx(
        ours[0]
    )


def test_missing_and_boolean_inputs():
    model = LinearModel(**artefact())
    assert model.vector({"failed_logins_1d": None, "ip_is_common": True}).tolist() == [0.0, 1.0]
    assert model.vector({"failed_logins_1d": float("nan")}).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not a JSON model artefact"),
        (pickle.dumps({"a": 1}), "not a JSON model artefact"),  # a pickle is never unpickled
        (json.dumps(artefact(coef=[1.0])).encode(), "same length"),
        (json.dumps(artefact(scale=[0.0, 1.0])).encode(), "positive"),
        (json.dumps(artefact(format="pickle-v1")).encode(), "unknown artefact format"),
        (json.dumps(artefact(extra_field=1)).encode(), "extra"),
        (json.dumps(artefact(threshold=1.5)).encode(), "threshold"),
    ],
)
def test_bad_artefacts_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(ModelArtefactError, match=message):
        LinearModel.load(path)


def test_missing_artefact_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelArtefactError, match="pipelines.train"):
        LinearModel.load(tmp_path / "nope.json")
