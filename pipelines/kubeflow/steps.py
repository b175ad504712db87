"""The platform side of the Kubeflow components: each step is a command of the platform image.

    python -m pipelines.kubeflow.steps build-training-set --model M --as-of T --since S --until U --out DIR
    python -m pipelines.kubeflow.steps train --training-set DIR --out DIR [--algorithm gbdt] [--target-fpr 0.01]
    python -m pipelines.kubeflow.steps materialize --until T

A training set is a directory (training_set.parquet + meta.json: features, as_of, feature runs,
saved dataset): the content of a KFP Dataset artifact. `train` writes the model artefact
(scoring/, JSON; a GBDT's LightGBM model file beside it) into the Model artifact's directory,
as `<model>/current.json`.
Settings come from TIDB_* and REDIS_CONNECTION_STRING, as everywhere.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from pipelines.fit import ALGORITHMS, DEFAULT_TARGET_FPR
from pipelines.train import DEFAULT_ALGORITHM, MODELS, TrainingError, TrainingSet, _fraction, _when
from spark_jobs.settings import positive_int


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pipelines.kubeflow.steps", description=__doc__)
    parser.add_argument(
        "--feature-repo", type=Path, default=None, help="default: $FEATURE_REPO or ./feature_repo"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    build = commands.add_parser("build-training-set", help="point-in-time training set, as_of")
    build.add_argument("--model", choices=MODELS, required=True)
    build.add_argument("--as-of", type=_when, required=True)
    build.add_argument("--since", type=_when, required=True)
    build.add_argument("--until", type=_when, required=True)
    build.add_argument("--max-negatives", type=positive_int, default=50_000)
    build.add_argument("--out", type=Path, required=True)

    fit = commands.add_parser("train", help="fit and validate a model on a training set")
    fit.add_argument("--training-set", type=Path, required=True)
    fit.add_argument("--out", type=Path, required=True)
    fit.add_argument("--algorithm", choices=ALGORITHMS, default=DEFAULT_ALGORITHM)
    fit.add_argument("--target-fpr", type=_fraction, default=DEFAULT_TARGET_FPR)

    mat = commands.add_parser("materialize", help="feast materialize-incremental up to --until")
    mat.add_argument("--until", type=_when, required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "build-training-set":
            if args.since >= args.until:
                parser.error(f"--since {args.since} is not before --until {args.until}")
            from pipelines.train import training_set

            data = training_set(
                args.model,
                args.as_of,
                args.since,
                args.until,
                repo=args.feature_repo,
                max_negatives=args.max_negatives,
            )
            data.save(args.out)
            print(f"{len(data.frame)} rows, {len(data.features)} features -> {args.out}")
        elif args.command == "train":
            from pipelines.fit import fit_model
            from pipelines.train import save_artefact

            data = TrainingSet.load(args.training_set)
            artefact = fit_model(data, algorithm=args.algorithm, target_fpr=args.target_fpr)
            path = save_artefact(artefact, args.out)
            m = artefact.metrics
            print(
                f"{artefact.model} {artefact.version} ({artefact.format}): ROC AUC {m.roc_auc}, "
                f"recall {m.recall_at_target_fpr} at FPR {m.fpr_at_threshold} -> {path}"
            )
        else:
            from feast import FeatureStore

            from spark_jobs.settings import default_feature_repo

            until = args.until.astimezone(dt.UTC)
            repo = args.feature_repo or default_feature_repo()
            FeatureStore(repo_path=str(repo)).materialize_incremental(until)
            print(f"materialized up to {args.until.isoformat()}")
    except (TrainingError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
