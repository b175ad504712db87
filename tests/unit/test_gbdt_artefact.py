"""`fraud-gbdt-v1`: LightGBM's text model next to the JSON, checked by sha256, scored exactly as
LightGBM scores it, with missing values and booleans handled as in the linear format."""

from __future__ import annotations

import hashlib
import json
import math

import lightgbm
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

import scoring
from scoring import GBDTModel, ModelArtefactError

FEATURES = ["failed_logins_1d", "ip_is_common", "amount"]


def meta(**overrides) -> dict:
    base = dict(
        model="withdrawal_fraud",
        version="v1",
        feature_service="withdrawal_fraud",
        features=FEATURES,
        threshold=0.6,
        as_of="2026-11-01T00:00:00+00:00",
        feature_runs=["r1"],
        saved_dataset="withdrawal_fraud_training_x",
        code_version="abc",
        trained_at="2026-11-01T01:00:00+00:00",
        metrics=dict(
            roc_auc=0.9,
            pr_auc=0.4,
            target_fpr=0.01,
            recall_at_target_fpr=0.3,
            fpr_at_threshold=0.01,
            validation_rows=10,
            validation_positives=2,
            training_rows=30,
            training_positives=3,
        ),
    )
    return base | overrides


def synthetic(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fraud where failures are many on an uncommon IP; a fifth of the failure counts unknown."""
    rng = np.random.default_rng(seed)
    x = np.column_stack(
        [rng.poisson(2, n).astype(float), rng.integers(0, 2, n).astype(float), rng.gamma(2, 50, n)]
    )
    y = ((x[:, 0] > 3) & (x[:, 1] == 0)).astype(int)
    x[rng.random(n) < 0.2, 0] = np.nan
    return x, y


def booster(objective: str = "binary", features: list[str] = FEATURES, seed: int = 0):
    x, y = synthetic(seed=seed)
    params = {"objective": objective, "verbose": -1, "seed": seed, "min_data_in_leaf": 5}
    return lightgbm.train(params, lightgbm.Dataset(x, y, feature_name=features), 30)


@pytest.fixture(scope="module")
def trained() -> lightgbm.Booster:
    return booster()


def saved(tmp_path, trained, **overrides):
    path = GBDTModel.from_booster(trained, **meta(**overrides)).save(tmp_path / "current.json")
    document = json.loads(path.read_text())
    return path, document, tmp_path / document["model_file"]


def test_round_trip_through_the_one_loader(tmp_path, trained):
    model = GBDTModel.from_booster(trained, **meta())
    path = model.save(tmp_path / "withdrawal_fraud" / "current.json")
    loaded = scoring.load(path)
    assert isinstance(loaded, GBDTModel) and isinstance(loaded, scoring.Model)
    assert loaded == model and loaded.format == "fraud-gbdt-v1"
    document = json.loads(path.read_text())
    file = path.parent / document["model_file"]
    assert document["model_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(["current.json", file.name])
    assert (loaded.model, loaded.version, loaded.feature_service, loaded.features) == (
        "withdrawal_fraud",
        "v1",
        "withdrawal_fraud",
        FEATURES,
    )
    assert loaded.threshold == 0.6 and loaded.metrics.recall_at_target_fpr == 0.3


def test_scores_equal_lightgbm_predict_on_the_same_rows(tmp_path, trained):
    x, _ = synthetic(n=200, seed=1)
    model = scoring.load(saved(tmp_path, trained)[0])
    rows = [
        {name: (None if math.isnan(v) else v) for name, v in zip(FEATURES, r, strict=True)}
        for r in x
    ]
    for r in rows[:50]:  # booleans arrive as bools from Feast
        r["ip_is_common"] = bool(r["ip_is_common"])
    expected = trained.predict(x).tolist()  # the booster as trained, before any file
    assert model.score_many(rows) == expected
    assert [model.score(r) for r in rows] == expected
    assert model.score_matrix(x).tolist() == expected


def test_missing_values_take_lightgbms_missing_branch_and_booleans_are_0_1(tmp_path, trained):
    model = scoring.load(saved(tmp_path, trained)[0])
    nan = [[np.nan, 1.0, 20.0]]
    missing = [{"ip_is_common": True, "amount": 20.0}]
    missing += [dict(missing[0], failed_logins_1d=v) for v in (None, math.nan, "n/a")]
    assert model.score_many(missing) == [trained.predict(np.array(nan))[0]] * 4
    assert model.score({"failed_logins_1d": 5, "ip_is_common": False, "amount": 1}) == (
        model.score({"failed_logins_1d": 5.0, "ip_is_common": 0, "amount": 1.0})
    )
    # A number as fill_value: a missing value scores as that number, as in the linear format.
    filled = GBDTModel.from_booster(trained, fill_value=4.0, **meta())
    assert filled.score(missing[1]) == trained.predict(np.array([[4.0, 1.0, 20.0]]))[0]


def test_a_trained_gbdt_separates_what_it_learned(trained):
    x, y = synthetic(n=400, seed=2)
    model = GBDTModel.from_booster(trained, **meta())
    scores = np.array(model.score_matrix(x))
    known = ~np.isnan(x[:, 0])  # where the count is missing, the label cannot be told
    assert roc_auc_score(y[known], scores[known]) > 0.98
    assert roc_auc_score(y, scores) > 0.9


def test_a_swapped_model_file_is_refused(tmp_path, trained):
    path, document, file = saved(tmp_path, trained)
    file.write_text(booster(seed=5).model_to_string())  # another, valid model
    with pytest.raises(ModelArtefactError, match="sha256") as error:
        scoring.load(path)
    assert document["model_sha256"] in str(error.value) and "retrain" in str(error.value)
    file.write_bytes(file.read_bytes()[:-100])  # truncated
    with pytest.raises(ModelArtefactError, match="sha256"):
        scoring.load(path)


def test_a_missing_model_file_says_where_it_should_be(tmp_path, trained):
    path, _, file = saved(tmp_path, trained)
    file.unlink()
    with pytest.raises(ModelArtefactError, match=f"not at {file}"):
        scoring.load(path)


def rewritten(path, document, text: str, **changes):
    """The JSON pointing at `text` with a matching sha256: only the model's content is wrong."""
    (path.parent / "other.txt").write_text(text)
    sha = hashlib.sha256(text.encode()).hexdigest()
    path.write_text(
        json.dumps(document | {"model_file": "other.txt", "model_sha256": sha} | changes)
    )


@pytest.mark.parametrize(
    ("text", "changes", "message"),
    [
        ("garbage\n", {}, "not a LightGBM text model"),
        (None, {"features": ["a", "b", "c"]}, "trained on features"),
        (None, {"features": FEATURES[:2]}, "trained on features"),
        ("regression", {}, "binary classifier"),
    ],
)
def test_a_model_file_that_does_not_fit_the_json_is_refused(
    tmp_path, trained, text, changes, message
):
    path, document, _ = saved(tmp_path, trained)
    if text is None:
        text = trained.model_to_string()
    elif text == "regression":
        text = booster(objective="regression").model_to_string()
    rewritten(path, document, text, **changes)
    with pytest.raises(ModelArtefactError, match=message):
        scoring.load(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model_file": "../elsewhere/model.txt"}, "file name in the artefact's directory"),
        ({"model_sha256": "abc"}, "model_sha256"),
        ({"fill_value": "NaN"}, "fill_value"),
        ({"threshold": -0.1}, "threshold"),
        ({"extra": 1}, "extra"),
    ],
)
def test_invalid_gbdt_json_is_refused(tmp_path, trained, changes, message):
    path, document, _ = saved(tmp_path, trained)
    path.write_text(json.dumps(document | changes))
    with pytest.raises(ModelArtefactError, match=message):
        scoring.load(path)


def test_versions_keep_their_own_model_files(tmp_path, trained):
    """Each model file is named by its content: a new current.json never points at a file an
    older one still needs, and the file is written before the JSON that names it."""
    first = GBDTModel.from_booster(trained, **meta(version="v1"))
    second = GBDTModel.from_booster(booster(seed=3), **meta(version="v2"))
    first.save(tmp_path / "current.json")
    first.save(tmp_path / "v1" / "model.json")
    second.save(tmp_path / "current.json")
    assert first.model_file != second.model_file
    assert scoring.load(tmp_path / "current.json") == second
    assert scoring.load(tmp_path / "v1" / "model.json") == first


def test_a_model_without_its_booster_cannot_score_or_save(tmp_path, trained):
    document = GBDTModel.from_booster(trained, **meta()).model_dump()
    bare = GBDTModel.model_validate(document)
    with pytest.raises(ModelArtefactError, match="GBDTModel.load"):
        bare.score({})
    with pytest.raises(ModelArtefactError, match="GBDTModel.load"):
        bare.save(tmp_path / "current.json")
    assert not (tmp_path / "current.json").exists()
