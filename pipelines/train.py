"""Train a model on point-in-time features from the TiDB store.

    python -m pipelines.train account_takeover [--as-of 2026-11-01T00:00:00Z] [--since 2026-09-01] [--out artifacts/models]
        [--algorithm logistic|gbdt] [--target-fpr 0.01] [--compare-algorithms] [--compare-velocity]

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
3. A model is trained on the earlier 75% of events and validated on the latest 25%
   (pipelines/fit.py): `--algorithm logistic` (scikit-learn, standardised inputs, balanced
   classes) or `--algorithm gbdt` (LightGBM gradient-boosted trees). Validation reports ROC AUC,
   PR AUC and the recall at the decision threshold, which is calibrated so that at most
   `--target-fpr` (default 1%) of the validation's legitimate events are flagged.
   `--compare-velocity` also fits the same algorithm without the stream feature views' features
   on the same split, `--compare-algorithms` the other algorithm, and prints them side by side.
   The default stays logistic: on the measured history (docs/models.md, "Which algorithm") the
   trees caught more withdrawal fraud at the 1% budget but ranked account takeovers worse, on
   one seed with a few dozen validation positives, so gbdt is not clearly better for both
   models; the linear model also scores a row in about a fifth of the time and its weights can
   be read. `--algorithm gbdt` trains the trees (withdrawal_fraud gains most).
4. The artefact (scoring/, `scoring.load` reads it) is JSON: feature order, threshold, the
   knowledge time, the feature runs it could see, metrics, and the parameters (logistic: the
   coefficients in the JSON; gbdt: LightGBM's text model file next to it, with its sha256).
   No pickle.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipelines.fit import (
    ALGORITHMS,
    DEFAULT_TARGET_FPR,
    TrainingError,
    fit_model,
)

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("account_takeover", "withdrawal_fraud")
DEFAULT_ALGORITHM = "logistic"  # why: the module's docstring, point 3

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


def model_features(store, service_name: str) -> list[str]:
    """Feature refs (view:feature) of the service that a linear model can use: numbers and booleans."""
    from feast.types import Bool, Float32, Float64, Int32, Int64

    usable = {Bool, Float32, Float64, Int32, Int64}
    # A join key is never a feature (a stream view read back from the registry lists its join
    # key among its features).
    keys = {entity.join_key for entity in store.list_entities()}
    service = store.get_feature_service(service_name)
    refs = []
    for projection in service.feature_view_projections:
        refs += [
            f"{projection.name_to_use()}:{f.name}"
            for f in projection.features
            if f.dtype in usable and f.name not in keys
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
    labels: str | None = None,
) -> TrainingSet:
    """Labelled events joined point-in-time with the model's features, as of `knowledge`.

    `model` names the model and its feature service; `labels` the labelled events it learns
    from (one of MODELS; by default the model's own name). A third model is a feature service
    trained on one of these label sets: no code change (docs/serving.md)."""
    from feast import FeatureStore

    from providers.tidb import SavedDatasetTiDBStorage, as_of, connection
    from spark_jobs.settings import default_feature_repo

    labels = labels or model
    if labels not in MODELS:
        raise TrainingError(
            f"no labelled events named {labels!r}: choose --labels from {', '.join(MODELS)}"
        )
    store = FeatureStore(repo_path=str(repo or default_feature_repo()))
    try:
        store.get_feature_service(model)
    except Exception as exc:
        raise TrainingError(
            f"no feature service {model!r} in the registry: a model is trained on the feature "
            "service of its name (define it in feature_repo/ and `feast apply`)"
        ) from exc
    refs = model_features(store, model)
    rows = entity_rows(
        store.config.offline_store, labels, since, until, knowledge, max_negatives, seed
    )
    if rows["label"].sum() < 2:
        raise TrainingError(
            f"Only {int(rows['label'].sum())} positive {model} labels known by {knowledge}; "
            "need at least 2. Generate more history or move --as-of later."
        )
    with as_of(knowledge):
        job = store.get_historical_features(entity_df=rows, features=refs)
    frame = job.to_df().sort_values("event_timestamp").reset_index(drop=True)
    if getattr(job, "erased_since_as_of", 0):
        print(
            f"note: {job.erased_since_as_of} subject(s) were erased after {knowledge}; this "
            "training set lacks what was known of them then (docs/erasure.md).",
            file=sys.stderr,
        )
    dataset = None
    if save_dataset:
        # Microseconds: two training sets saved within one second (a retrain right after a
        # train, the Kubeflow step after the CLI) must not collide.
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
        dataset = f"{model}_training_{stamp}"
        table = f"training_{model}_{stamp}".lower()
        scratch = store.config.offline_store.scratch_database  # the reader role writes there
        store.create_saved_dataset(
            from_=job,
            name=dataset,
            storage=SavedDatasetTiDBStorage(table_ref=f"{scratch}.{table}" if scratch else table),
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
    """<out>/<model>/<version>/model.json, and <out>/<model>/current.json (what serving loads);
    a GBDT's model file is written next to each, before its JSON."""
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
    algorithm: str = DEFAULT_ALGORITHM,
    target_fpr: float = DEFAULT_TARGET_FPR,
    labels: str | None = None,
):
    data = training_set(
        model, knowledge, since, until, repo, max_negatives, seed, save_dataset, labels
    )
    artefact = fit_model(data, seed, algorithm, target_fpr)
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
    parser.add_argument(
        "model", help=f"The model: a feature service of that name ({', '.join(MODELS)}, or yours)."
    )
    parser.add_argument(
        "--labels",
        choices=MODELS,
        default=None,
        help="The labelled events to learn from (default: the model's name).",
    )
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
        "--algorithm",
        choices=ALGORITHMS,
        default=DEFAULT_ALGORITHM,
        help=f"logistic (fraud-linear-v1) or gbdt (fraud-gbdt-v1, LightGBM); default {DEFAULT_ALGORITHM}.",
    )
    parser.add_argument(
        "--target-fpr",
        type=_fraction,
        default=DEFAULT_TARGET_FPR,
        help="The threshold flags at most this share of the validation's legitimate events "
        f"(default {DEFAULT_TARGET_FPR}).",
    )
    parser.add_argument(
        "--compare-velocity",
        action="store_true",
        help="Also fit without the velocity features on the same split and print both.",
    )
    parser.add_argument(
        "--compare-algorithms",
        action="store_true",
        help="Also fit the other algorithm on the same split and print both (only --algorithm's "
        "artefact is saved).",
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
    fit = dict(algorithm=args.algorithm, target_fpr=args.target_fpr)
    try:
        data = training_set(
            args.model,
            args.as_of,
            since,
            until,
            args.feature_repo,
            args.max_negatives,
            labels=args.labels,
        )
        artefact = fit_model(data, **fit)
        path = save_artefact(artefact, args.out)
        rows = [(f"{args.algorithm}", artefact.metrics)]
        if args.compare_velocity:
            dropped = without(data, velocity_features(args.feature_repo))
            rows.insert(
                0, (f"{args.algorithm} without velocity", fit_model(dropped, **fit).metrics)
            )
        if args.compare_algorithms:
            for other in (a for a in ALGORITHMS if a != args.algorithm):
                other_fit = dict(fit, algorithm=other)
                rows.append((other, fit_model(data, **other_fit).metrics))
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = artefact.metrics
    if len(rows) > 1:
        recall = f"recall@{args.target_fpr:g}FPR"
        print(f"{'model':<34} {'ROC AUC':>8} {'PR AUC':>8} {recall:>15} {'FPR':>7}")
        for label, metrics in rows:
            print(
                f"{label:<34} {_fmt(metrics.roc_auc):>8} {_fmt(metrics.pr_auc):>8} "
                f"{_fmt(metrics.recall_at_target_fpr):>15} {_fmt(metrics.fpr_at_threshold):>7}"
            )
    print(
        f"{args.model} {artefact.version} ({artefact.format}): {m.training_rows} training rows "
        f"({m.training_positives} positive), validation {m.validation_rows} "
        f"({m.validation_positives} positive): ROC AUC {_fmt(m.roc_auc)}, PR AUC {_fmt(m.pr_auc)}, "
        f"recall {_fmt(m.recall_at_target_fpr)} at FPR {_fmt(m.fpr_at_threshold)} "
        f"(target {m.target_fpr:g}); threshold {artefact.threshold:.4f}; as_of {artefact.as_of}; "
        f"saved dataset {artefact.saved_dataset}\n"
        f"artefact: {path}"
    )
    return 0


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction between 0 and 1, like 0.01")
    return value


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
