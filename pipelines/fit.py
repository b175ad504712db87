"""Fit, validate and calibrate a model on a point-in-time training set: the artefact.

The training set is split in time: the earlier 75% of events train, the latest 25% validate
(what the model will meet next is later than what it learned from). On the validation events:
ROC AUC, PR AUC (average precision), and the decision threshold calibrated to a false-positive
budget: the lowest score at which at most `target_fpr` of the legitimate events are flagged,
with the recall (the share of fraud caught) at that threshold.

Two algorithms, one artefact interface (scoring.Model):
- `logistic`: scikit-learn's logistic regression on standardised inputs with balanced class
  weights; missing values as 0. Artefact `fraud-linear-v1` (scoring/linear.py).
- `gbdt`: LightGBM gradient-boosted trees; missing values stay NaN (each split learns where they
  go). The number of trees is chosen by early stopping on the latest 20% of the training events,
  then the model is refit on all of them. Artefact `fraud-gbdt-v1` (scoring/gbdt.py).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring import GBDTModel, LinearModel, Metrics, Model
from scoring.inputs import frame_matrix

if TYPE_CHECKING:
    import lightgbm

    from pipelines.train import TrainingSet

ALGORITHMS = ("logistic", "gbdt")
TRAINING_SHARE = 0.75  # of the events, in time order; the rest validates
EARLY_STOPPING_SHARE = 0.2  # of the training events (the latest), to choose the number of trees
DEFAULT_TARGET_FPR = 0.01
# Missing inputs as training sees them, the same rule serving applies (scoring.inputs).
FILL = {"logistic": 0.0, "gbdt": math.nan}
GBDT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "metric": "binary_logloss",
    "deterministic": True,  # with a fixed seed: the same trees on a rerun
    "force_col_wise": True,
    "verbose": -1,
}
GBDT_MAX_TREES = 1000
GBDT_TREES_WITHOUT_EARLY_STOPPING = 200  # when the early-stopping slice has a single class


class TrainingError(RuntimeError):
    """Training cannot produce a meaningful model from the data given (the message says why)."""


def fit_logistic(x: np.ndarray, y: np.ndarray, seed: int):
    """(mean, scale, coef, intercept) of a standardised, class-balanced logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)  # constant columns: leave as is
    classifier = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    classifier.fit((x - scaler.mean_) / scale, y)
    return scaler.mean_, scale, classifier.coef_[0], float(classifier.intercept_[0])


def fit_gbdt(x: np.ndarray, y: np.ndarray, features: list[str], seed: int) -> lightgbm.Booster:
    """LightGBM trees on rows in time order: the tree count by early stopping on the latest
    rows, then a refit on all of them with that count."""
    import lightgbm

    params = {**GBDT_PARAMS, "seed": seed}
    cut = int(len(y) * (1 - EARLY_STOPPING_SHARE))
    rounds = GBDT_TREES_WITHOUT_EARLY_STOPPING
    if len(set(y[:cut].tolist())) == 2 and len(set(y[cut:].tolist())) == 2:
        early = lightgbm.Dataset(x[:cut], y[:cut], feature_name=features, free_raw_data=False)
        probe = lightgbm.train(
            params,
            early,
            num_boost_round=GBDT_MAX_TREES,
            valid_sets=[early.create_valid(x[cut:], y[cut:])],
            callbacks=[lightgbm.early_stopping(50, verbose=False)],
        )
        rounds = max(probe.best_iteration, 1)
    data = lightgbm.Dataset(x, y, feature_name=features, free_raw_data=False)
    return lightgbm.train(params, data, num_boost_round=rounds)


def calibrate(
    scores: np.ndarray, y: np.ndarray, target_fpr: float
) -> tuple[float, float | None, float]:
    """(threshold, recall, fpr): the lowest threshold at which `score >= threshold` flags at
    most `target_fpr` of the negatives, the share of positives it flags, and the share of
    negatives it flags."""
    from sklearn.metrics import roc_curve

    if not 0 < target_fpr < 1:
        raise ValueError(f"target_fpr must be between 0 and 1, got {target_fpr}")
    if not (y == 0).any():
        raise TrainingError("The validation events have no negatives: cannot calibrate an FPR.")
    with warnings.catch_warnings():  # no positives: the recall is undefined, the FPR is not
        warnings.simplefilter("ignore")
        fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
    # fpr grows as the threshold falls; thresholds[0] is +inf (nothing flagged).
    i = int(np.flatnonzero(fpr <= target_fpr)[-1])
    # Scores are probabilities: "nothing flagged" is a threshold just above the top score.
    threshold = float(min(thresholds[i], np.nextafter(scores.max(), np.inf), 1.0))
    recall = float(tpr[i]) if (y == 1).any() else None
    return threshold, recall, float(fpr[i])


def validation_metrics(
    scores: np.ndarray, y: np.ndarray, target_fpr: float, training_y: np.ndarray
) -> tuple[float, Metrics]:
    """(threshold, metrics) on the validation events."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    two_classes = len(set(y.tolist())) == 2
    threshold, recall, fpr = calibrate(scores, y, target_fpr)
    return threshold, Metrics(
        roc_auc=float(roc_auc_score(y, scores)) if two_classes else None,
        pr_auc=float(average_precision_score(y, scores)) if two_classes else None,
        target_fpr=target_fpr,
        recall_at_target_fpr=recall,
        fpr_at_threshold=fpr,
        validation_rows=len(y),
        validation_positives=int(y.sum()),
        training_rows=len(training_y),
        training_positives=int(training_y.sum()),
    )


def fit_model(
    data: TrainingSet,
    seed: int = 7,
    algorithm: str = "logistic",
    target_fpr: float = DEFAULT_TARGET_FPR,
) -> Model:
    """The artefact of `algorithm` trained on the earlier events of `data`, validated and
    calibrated on the latest ones."""
    from spark_jobs.runs import code_version

    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    x = frame_matrix(data.frame, data.features, FILL[algorithm])
    y = data.frame["label"].to_numpy().astype(int)
    cut = int(len(y) * TRAINING_SHARE)
    if y[:cut].sum() < 1 or y[:cut].sum() == cut:
        raise TrainingError(
            f"The earlier {TRAINING_SHARE:.0%} of the {data.model} training set has a single "
            "class; widen the window."
        )
    now = dt.datetime.now(dt.UTC)
    meta: dict[str, Any] = dict(
        model=data.model,
        version=now.strftime("%Y%m%dT%H%M%SZ"),
        feature_service=data.model,
        features=list(data.features),
        as_of=data.as_of.astimezone(dt.UTC).isoformat(),
        feature_runs=data.feature_runs,
        saved_dataset=data.saved_dataset,
        code_version=code_version(),
        trained_at=now.isoformat(),
    )
    build: Callable[[float, Metrics], Model]
    if algorithm == "logistic":
        mean, scale, coef, intercept = fit_logistic(x[:cut], y[:cut], seed)
        params = dict(
            mean=mean.tolist(), scale=scale.tolist(), coef=coef.tolist(), intercept=intercept
        )

        def build(threshold: float, metrics: Metrics) -> Model:
            return LinearModel(
                **params, fill_value=FILL["logistic"], threshold=threshold, metrics=metrics, **meta
            )
    else:
        booster = fit_gbdt(x[:cut], y[:cut], list(data.features), seed)

        def build(threshold: float, metrics: Metrics) -> Model:
            return GBDTModel.from_booster(
                booster, fill_value=None, threshold=threshold, metrics=metrics, **meta
            )

    # The model scores the validation events itself (the arithmetic serving runs); the
    # artefact then gets the threshold and metrics calibrated on those scores.
    draft = build(0.5, Metrics(roc_auc=None, pr_auc=None, **_counts(y, cut)))
    threshold, metrics = validation_metrics(
        draft.score_matrix(x[cut:]), y[cut:], target_fpr, y[:cut]
    )
    return build(threshold, metrics)


def _counts(y: np.ndarray, cut: int) -> dict[str, int]:
    return dict(
        validation_rows=len(y) - cut,
        validation_positives=int(y[cut:].sum()),
        training_rows=cut,
        training_positives=int(y[:cut].sum()),
    )
