"""Train a model on point-in-time features from the TiDB store.

    python -m pipelines.train account_takeover [--as-of 2026-11-01T00:00:00Z] [--since 2026-09-01] [--out artifacts/models]

1. Entity rows are the labelled events: successful logins (account_takeover: label 1 for the
   takeover login itself) or withdrawals (withdrawal_fraud: label 1 for fraudulent ones), with the
   request data the model gets at serving time (login IP and device, or the amount). A label
   counts only if it was reported by the knowledge time.
2. Features are the model's feature service (its numeric and boolean features), retrieved with
   Feast's `get_historical_features` through the TiDB store, pinned `as_of` the knowledge time,
   as they were just before the event (1 us earlier): serving scores an event before the event
   reaches the stream or a push, so an event is never part of its own features (a velocity row
   at the event's instant already counts it).
   The training set is also kept as a Feast saved dataset.
3. A scikit-learn logistic regression (standardised inputs, balanced classes) is trained on the
   earlier 75% of events and validated on the latest 25% (ROC AUC, PR AUC, recall at a 1% false
   positive rate). `--compare-velocity` also fits the same model without the stream feature views'
   features on the same split and prints both.
4. The artefact (serving/model.py) is JSON: coefficients, feature order, threshold, the
   knowledge time, the feature runs it could see, metrics. No pickle.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("account_takeover", "withdrawal_fraud")

# Labelled events per model: (event_id, user_id, event_timestamp, request data..., label).
ENTITY_ROWS_SQL = {
    "account_takeover": (
        "SELECT l.login_id AS event_id, l.user_id, l.event_ts AS event_timestamp, "
        "l.ip AS login_ip, l.device_id AS login_device, "
        "EXISTS (SELECT 1 FROM labels b WHERE b.user_id = l.user_id AND b.event_ts = l.event_ts "
        "AND b.label = 'account_takeover' AND b.reported_ts <= %s) AS label "
        "FROM logins l WHERE l.success AND l.event_ts >= %s AND l.event_ts < %s"
    ),
    "withdrawal_fraud": (
        "SELECT w.withdrawal_id AS event_id, w.user_id, w.event_ts AS event_timestamp, "
        "CAST(w.amount AS DOUBLE) AS amount, "
        "EXISTS (SELECT 1 FROM labels b WHERE b.user_id = w.user_id AND b.event_ts = w.event_ts "
        "AND b.label = 'withdrawal_fraud' AND b.reported_ts <= %s) AS label "
        "FROM withdrawals w WHERE w.event_ts >= %s AND w.event_ts < %s"
    ),
}


class TrainingError(RuntimeError):
    """Training cannot produce a meaningful model from the data given (the message says why)."""


def model_features(store, service_name: str) -> list[str]:
    """Feature refs (view:feature) of the service that a linear model can use: numbers and booleans."""
    from feast.types import Bool, Float32, Float64, Int32, Int64

    usable = {Bool, Float32, Float64, Int32, Int64}
    service = store.get_feature_service(service_name)
    refs = []
    for projection in service.feature_view_projections:
        refs += [
            f"{projection.name_to_use()}:{f.name}" for f in projection.features if f.dtype in usable
        ]
    return refs


def entity_rows(
    db_config,
    model: str,
    since: dt.datetime,
    until: dt.datetime,
    knowledge: dt.datetime,
    max_negatives: int,
    seed: int,
) -> pd.DataFrame:
    from providers.tidb import connection, sql

    with connection.connect(db_config) as conn, conn.cursor() as cur:
        cur.execute(
            ENTITY_ROWS_SQL[model],
            (sql.naive_utc(knowledge), sql.naive_utc(since), sql.naive_utc(until)),
        )
        frame = pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])
    if frame.empty:
        raise TrainingError(
            f"No {model} events between {since} and {until}: generate events first."
        )
    frame["label"] = frame["label"].astype(int)
    negatives = frame[frame["label"] == 0]
    if len(negatives) > max_negatives:  # keep every positive, a seeded sample of the rest
        frame = pd.concat(
            [frame[frame["label"] == 1], negatives.sample(max_negatives, random_state=seed)]
        )
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"]).dt.tz_localize("UTC")
    frame["event_timestamp"] -= pd.Timedelta(microseconds=1)  # features before the event itself
    return frame.sort_values("event_timestamp").reset_index(drop=True)


def fit(x: np.ndarray, y: np.ndarray, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)  # constant columns: leave as is
    classifier = LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    classifier.fit((x - scaler.mean_) / scale, y)
    return scaler.mean_, scale, classifier.coef_[0], float(classifier.intercept_[0])


def evaluate(scores: np.ndarray, y: np.ndarray) -> tuple[float | None, float | None, float]:
    """ROC AUC, PR AUC and the F1-best threshold (0.5 when validation has a single class)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

    if len(set(y.tolist())) < 2:
        return None, None, 0.5
    precision, recall, thresholds = precision_recall_curve(y, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    best = float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5
    return float(roc_auc_score(y, scores)), float(average_precision_score(y, scores)), best


def recall_at_fpr(scores: np.ndarray, y: np.ndarray, fpr: float = 0.01) -> float | None:
    """The recall of the threshold that flags at most `fpr` of the negatives (what a fraud team
    reads: how much fraud is caught at the review budget)."""
    from sklearn.metrics import roc_curve

    if len(set(y.tolist())) < 2:
        return None
    false_positive, true_positive, _ = roc_curve(y, scores, drop_intermediate=False)
    return float(true_positive[false_positive <= fpr].max())


@dataclass
class TrainingSet:
    """Point-in-time features and labels of one model, with where they came from."""

    model: str
    frame: pd.DataFrame  # event_timestamp, label, the features (in `features` order), keys
    features: list[str]
    as_of: dt.datetime
    feature_runs: list[str]
    saved_dataset: str | None

    def save(self, directory: Path) -> Path:
        """Parquet + meta.json (a KFP Dataset artifact's content)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.frame.to_parquet(directory / "training_set.parquet", index=False)
        meta = {
            "model": self.model,
            "features": self.features,
            "as_of": self.as_of.astimezone(dt.UTC).isoformat(),
            "feature_runs": self.feature_runs,
            "saved_dataset": self.saved_dataset,
        }
        (directory / "meta.json").write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: Path) -> TrainingSet:
        meta = json.loads((directory / "meta.json").read_text())
        frame = pd.read_parquet(directory / "training_set.parquet")
        missing = [c for c in ["event_timestamp", "label", *meta["features"]] if c not in frame]
        if missing:
            raise TrainingError(f"{directory}: the training set lacks columns {missing}")
        return cls(
            model=meta["model"],
            frame=frame,
            features=list(meta["features"]),
            as_of=dt.datetime.fromisoformat(meta["as_of"]),
            feature_runs=list(meta["feature_runs"]),
            saved_dataset=meta["saved_dataset"],
        )


def training_set(
    model: str,
    knowledge: dt.datetime,
    since: dt.datetime,
    until: dt.datetime,
    repo: Path | str | None = None,
    max_negatives: int = 50_000,
    seed: int = 7,
    save_dataset: bool = True,
) -> TrainingSet:
    """Labelled events joined point-in-time with the model's features, as of `knowledge`."""
    from feast import FeatureStore

    from providers.tidb import SavedDatasetTiDBStorage, as_of, connection
    from spark_jobs.settings import default_feature_repo

    store = FeatureStore(repo_path=str(repo or default_feature_repo()))
    refs = model_features(store, model)
    rows = entity_rows(
        store.config.offline_store, model, since, until, knowledge, max_negatives, seed
    )
    if rows["label"].sum() < 2:
        raise TrainingError(
            f"Only {int(rows['label'].sum())} positive {model} labels known by {knowledge}; "
            "need at least 2. Generate more history or move --as-of later."
        )
    with as_of(knowledge):
        job = store.get_historical_features(entity_df=rows, features=refs)
    frame = job.to_df().sort_values("event_timestamp").reset_index(drop=True)
    dataset = None
    if save_dataset:
        # Microseconds: two training sets saved within one second (a retrain right after a
        # train, the Kubeflow step after the CLI) must not collide.
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dataset = f"{model}_training_{stamp}"
        store.create_saved_dataset(
            from_=job,
            name=dataset,
            storage=SavedDatasetTiDBStorage(table_ref=f"training_{model}_{stamp}".lower()),
        )
    with connection.connect(store.config.offline_store) as conn, conn.cursor() as cur:
        known = knowledge.astimezone(dt.UTC).replace(tzinfo=None)
        # Batch runs' recorded partitions, and the velocity commits (stream and backfill).
        cur.execute(
            "SELECT run_id FROM feature_run_partitions WHERE finished_at <= %s UNION "
            "SELECT run_id FROM velocity_commits WHERE committed_at <= %s ORDER BY run_id",
            (known, known),
        )
        runs = [r[0] for r in cur.fetchall()]
    return TrainingSet(
        model=model,
        frame=frame,
        features=[ref.split(":", 1)[1] for ref in refs],
        as_of=knowledge,
        feature_runs=runs,
        saved_dataset=dataset,
    )


def fit_model(data: TrainingSet, seed: int = 7):
    """A logistic regression on the earlier 75% of events, validated on the rest: the artefact."""
    from serving.model import LinearModel, Metrics
    from spark_jobs.runs import code_version

    training = data.frame
    x = (
        training[data.features]
        .apply(pd.to_numeric, errors="coerce")
        .astype(float)
        .fillna(0.0)
        .to_numpy()
    )
    y = training["label"].to_numpy().astype(int)
    cut = int(len(training) * 0.75)
    if y[:cut].sum() < 1 or y[:cut].sum() == cut:
        raise TrainingError(
            f"The earlier 75% of the {data.model} training set has a single class; widen the window."
        )
    mean, scale, coef, intercept = fit(x[:cut], y[:cut], seed)
    draft = dict(mean=mean.tolist(), scale=scale.tolist(), coef=coef.tolist(), intercept=intercept)
    val_scores = 1.0 / (1.0 + np.exp(-(((x[cut:] - mean) / scale) @ coef + intercept)))
    roc, pr, threshold = evaluate(val_scores, y[cut:])
    recall = recall_at_fpr(val_scores, y[cut:])
    return LinearModel(
        model=data.model,
        version=dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ"),
        feature_service=data.model,
        features=data.features,
        threshold=threshold,
        as_of=data.as_of.astimezone(dt.UTC).isoformat(),
        feature_runs=data.feature_runs,
        saved_dataset=data.saved_dataset,
        code_version=code_version(),
        trained_at=dt.datetime.now(dt.UTC).isoformat(),
        metrics=Metrics(
            roc_auc=roc,
            pr_auc=pr,
            recall_at_1pct_fpr=recall,
            validation_rows=len(y) - cut,
            validation_positives=int(y[cut:].sum()),
            training_rows=cut,
            training_positives=int(y[:cut].sum()),
        ),
        **draft,
    )


def without(data: TrainingSet, dropped: set[str]) -> TrainingSet:
    """The same rows and split without some features (to measure what they add)."""
    kept = [f for f in data.features if f not in dropped]
    return TrainingSet(
        data.model, data.frame, kept, data.as_of, data.feature_runs, data.saved_dataset
    )


def velocity_features(repo: Path | str | None = None) -> set[str]:
    """Feature names of the registry's stream feature views (windowed aggregations)."""
    from feast import FeatureStore

    from spark_jobs.settings import default_feature_repo

    store = FeatureStore(repo_path=str(repo or default_feature_repo()))
    return {agg.name for view in store.list_stream_feature_views() for agg in view.aggregations}


def save_artefact(artefact, out: Path) -> Path:
    """<out>/<model>/<version>/model.json, and <out>/<model>/current.json (what serving loads)."""
    path = artefact.save(out / artefact.model / artefact.version / "model.json")
    artefact.save(out / artefact.model / "current.json")
    return path


def train(
    model: str,
    knowledge: dt.datetime,
    since: dt.datetime,
    until: dt.datetime,
    out: Path,
    repo: Path | str | None = None,
    max_negatives: int = 50_000,
    seed: int = 7,
    save_dataset: bool = True,
):
    data = training_set(model, knowledge, since, until, repo, max_negatives, seed, save_dataset)
    artefact = fit_model(data, seed)
    return artefact, save_artefact(artefact, out)


def _when(text: str) -> dt.datetime:
    from providers.tidb.as_of import to_utc

    try:
        return to_utc(text)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a timestamp like 2026-11-01T00:00:00Z"
        ) from exc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", choices=MODELS)
    now = dt.datetime.now(dt.UTC)
    parser.add_argument("--as-of", type=_when, default=now, help="Knowledge time (default: now).")
    parser.add_argument(
        "--since",
        type=_when,
        default=None,
        help="First event time (default: 90 days before --until).",
    )
    parser.add_argument(
        "--until", type=_when, default=None, help="Events before this (default: --as-of)."
    )
    parser.add_argument(
        "--out",
        type=Path,
        # Where serving loads from: the same variable, so training and serving agree by default.
        default=Path(os.environ.get("SERVING_MODELS_DIR") or ROOT / "artifacts" / "models"),
        help="Artefact directory (default: $SERVING_MODELS_DIR or ./artifacts/models).",
    )
    parser.add_argument("--max-negatives", type=int, default=50_000)
    parser.add_argument(
        "--compare-velocity",
        action="store_true",
        help="Also fit without the velocity features on the same split and print both.",
    )
    parser.add_argument(
        "--feature-repo",
        default=None,
        help="Feast repo (default: $FEATURE_REPO or ./feature_repo).",
    )
    args = parser.parse_args(argv)
    until = args.until or args.as_of
    since = args.since or until - dt.timedelta(days=90)
    if since >= until:
        parser.error(f"--since {since} is not before --until {until}")
    try:
        data = training_set(
            args.model, args.as_of, since, until, args.feature_repo, args.max_negatives
        )
        artefact = fit_model(data)
        path = save_artefact(artefact, args.out)
        baseline = None
        if args.compare_velocity:
            baseline = fit_model(without(data, velocity_features(args.feature_repo))).metrics
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = artefact.metrics
    if baseline is not None:
        print(f"{'features':<28} {'ROC AUC':>8} {'PR AUC':>8} {'recall@1%FPR':>13}")
        for label, metrics in (("without velocity", baseline), ("with velocity", m)):
            print(
                f"{label:<28} {_fmt(metrics.roc_auc):>8} {_fmt(metrics.pr_auc):>8} "
                f"{_fmt(metrics.recall_at_1pct_fpr):>13}"
            )
    print(
        f"{args.model} {artefact.version}: {m.training_rows} training rows ({m.training_positives} positive), "
        f"validation {m.validation_rows} ({m.validation_positives} positive): ROC AUC {m.roc_auc}, PR AUC {m.pr_auc}, "
        f"recall at 1% FPR {m.recall_at_1pct_fpr}; "
        f"threshold {artefact.threshold:.3f}; as_of {artefact.as_of}; saved dataset {artefact.saved_dataset}\n"
        f"artefact: {path}"
    )
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
