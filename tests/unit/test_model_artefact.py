"""Model artefacts (scoring/): validated JSON only, one loader for every format, and the
linear format scores like scikit-learn. The GBDT format: tests/unit/test_gbdt_artefact.py."""

from __future__ import annotations

import json
import math
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import scoring
from scoring import LinearModel, ModelArtefactError
from scoring.inputs import frame_matrix, matrix

DATA = Path(__file__).parent / "data"


def artefact(**overrides) -> dict:
    base = dict(
        format="fraud-linear-v1",
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
            target_fpr=0.01,
            recall_at_target_fpr=0.3,
            fpr_at_threshold=0.008,
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
    loaded = scoring.load(model.save(tmp_path / "m.json"))
    assert isinstance(loaded, LinearModel) and loaded == model
    expected = clf.predict_proba(scaler.transform(x))[:, 1]
    assert loaded.score_matrix(x) == pytest.approx(expected, rel=1e-12)
    rows = [{"failed_logins_1d": a, "ip_is_common": b} for a, b in x]
    assert loaded.score_many(rows) == pytest.approx(expected, rel=1e-12)
    assert [loaded.score(r) for r in rows] == loaded.score_many(rows)  # the same, bit for bit


def test_every_model_offers_the_interface_serving_uses():
    model = LinearModel(**artefact())
    assert isinstance(model, scoring.Model)
    assert (model.model, model.version, model.feature_service) == (
        "account_takeover",
        "v1",
        "account_takeover",
    )
    assert model.features == ["failed_logins_1d", "ip_is_common"] and model.threshold == 0.7
    assert model.metrics.target_fpr == 0.01
    assert model.score_many([]) == []


def test_artefacts_of_the_first_writer_still_load():
    """A file written by serving/model.py (fraud-linear-v1, F1-best threshold, recall at 1% FPR)."""
    path = DATA / "fraud-linear-v1.json"
    raw = json.loads(path.read_text())
    model = scoring.load(path)
    assert isinstance(model, LinearModel) and model.threshold == raw["threshold"]
    assert model.metrics.recall_at_1pct_fpr == raw["metrics"]["recall_at_1pct_fpr"]
    assert model.metrics.target_fpr is None
    values = {"failed_logins_1d": 3, "ip_is_common": False, "distinct_ips_1h": None}
    x = np.array([3.0, 0.0, raw["fill_value"]])
    z = ((x - raw["mean"]) / np.array(raw["scale"])) @ raw["coef"] + raw["intercept"]
    assert model.score(values) == pytest.approx(1 / (1 + math.exp(-z)), rel=1e-12)


def test_missing_and_boolean_inputs_score_as_fill_and_0_1():
    model = LinearModel(**artefact())
    assert model.vector({"failed_logins_1d": None, "ip_is_common": True}).tolist() == [0.0, 1.0]
    assert model.vector({"failed_logins_1d": float("nan")}).tolist() == [0.0, 0.0]
    assert model.vector({"failed_logins_1d": "2", "ip_is_common": "x"}).tolist() == [2.0, 0.0]
    same = [{}, {"failed_logins_1d": None, "ip_is_common": float("nan")}]
    assert (
        model.score(same[0])
        == model.score(same[1])
        == model.score({"failed_logins_1d": 0, "ip_is_common": 0})
    )


def test_a_training_frame_and_serving_dicts_become_the_same_matrix():
    """Training builds its matrix from a data frame, serving from dicts: one set of rules."""
    frame = pd.DataFrame(
        {
            "count": pd.array([3, None, 1], dtype="Int64"),
            "flag": [True, None, False],  # object column: Python values
            "amount": [1.5, float("nan"), -2.0],
            "is_new": np.array([True, False, True]),
            "text": ["4.5", "n/a", None],
        }
    )
    features = ["amount", "count", "flag", "is_new", "text"]
    for fill in (0.0, -1.0, math.nan):
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        expected = matrix(features, rows, fill)
        assert np.array_equal(frame_matrix(frame, features, fill), expected, equal_nan=True)
    assert matrix(features, rows, -1.0)[1].tolist() == [-1.0, -1.0, -1.0, 0.0, -1.0]
    assert matrix(features, rows, -1.0)[0].tolist() == [1.5, 3.0, 1.0, 1.0, 4.5]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not json", "not a JSON model artefact"),
        (pickle.dumps({"a": 1}), "not a JSON model artefact"),  # a pickle is never unpickled
        (b"[1, 2]", "not a JSON object"),
        (json.dumps(artefact(coef=[1.0])).encode(), "same length"),
        (json.dumps(artefact(scale=[0.0, 1.0])).encode(), "positive"),
        (json.dumps(artefact(features=[])).encode(), "features must not be empty"),
        (json.dumps(artefact(features=["a", "a"])).encode(), "named once"),
        (json.dumps(artefact(format="pickle-v1")).encode(), "unknown artefact format 'pickle-v1'"),
        (json.dumps(artefact(format=None)).encode(), "unknown artefact format None"),
        (json.dumps(artefact(extra_field=1)).encode(), "extra"),
        (json.dumps(artefact(threshold=1.5)).encode(), "threshold"),
        (json.dumps(artefact(metrics=artefact()["metrics"] | {"target_fpr": 2})).encode(), "target_fpr"),
    ],
)  # fmt: skip
def test_bad_artefacts_are_refused_with_a_reason(tmp_path, content, message):
    path = tmp_path / "model.json"
    path.write_bytes(content)
    with pytest.raises(ModelArtefactError, match=message):
        scoring.load(path)


def test_unknown_format_names_the_formats_this_version_reads(tmp_path):
    path = tmp_path / "current.json"
    path.write_text(json.dumps(artefact(format="fraud-linear-v2")))
    with pytest.raises(ModelArtefactError) as error:
        scoring.load(path)
    assert all(name in str(error.value) for name in scoring.FORMATS)


def test_missing_artefact_says_how_to_make_one(tmp_path):
    with pytest.raises(ModelArtefactError, match="pipelines.train"):
        scoring.load(tmp_path / "nope.json")
    with pytest.raises(ModelArtefactError, match="directory"):
        scoring.load(tmp_path)


def test_save_replaces_the_file_whole(tmp_path):
    path = tmp_path / "account_takeover" / "current.json"
    LinearModel(**artefact()).save(path)
    LinearModel(**artefact(version="v2")).save(path)
    assert scoring.load(path).version == "v2"
    assert [p.name for p in path.parent.iterdir()] == ["current.json"]  # no temporary left


def test_the_golden_file_is_not_changed_by_a_load(tmp_path):
    copy = tmp_path / "current.json"
    shutil.copy(DATA / "fraud-linear-v1.json", copy)
    scoring.load(copy)
    assert copy.read_bytes() == (DATA / "fraud-linear-v1.json").read_bytes()
