"""What every model artefact holds besides its parameters, and what every model offers.

An artefact is a JSON document validated on load (pydantic, unknown keys refused) whose
`format` names how it scores. Parameters live in the JSON itself (`fraud-linear-v1`) or in a
standard model file next to it whose sha256 the JSON records (`fraud-gbdt-v1`: LightGBM's text
model). Nothing is ever unpickled: a file swapped on disk can at worst fail to load.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from scoring.errors import ModelArtefactError

TRAIN_HINT = "Train one with `python -m pipelines.train <model>`."


class Metrics(BaseModel):
    """Validation figures of the time-split hold-out (the latest events)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    roc_auc: float | None
    pr_auc: float | None
    # Artefacts trained before the threshold was calibrated to a false-positive rate (their
    # threshold was the F1-best one) carry this instead of the two below.
    recall_at_1pct_fpr: float | None = None
    target_fpr: float | None = Field(None, gt=0.0, lt=1.0)  # the threshold's FPR budget
    recall_at_target_fpr: float | None = None  # recall at the threshold, on validation
    fpr_at_threshold: float | None = None  # the false-positive rate reached, on validation
    validation_rows: int
    validation_positives: int
    training_rows: int
    training_positives: int


class ArtefactMeta(BaseModel):
    """Everything serving needs besides the parameters, and everything needed to trace where a
    model came from. Each format subclasses it with its parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    model: str  # account_takeover | withdrawal_fraud
    version: str
    feature_service: str
    features: list[str]  # the model's inputs, in order (feature names of the service's response)
    threshold: float = Field(ge=0.0, le=1.0)  # decision: score >= threshold
    as_of: str  # the knowledge time of the training set (ISO 8601, UTC)
    feature_runs: list[str]  # run ids of the feature values the training set could see
    saved_dataset: str | None
    code_version: str
    trained_at: str
    metrics: Metrics

    @field_validator("features")
    @classmethod
    def _named_once(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("features must not be empty")
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"features must be named once each; repeated: {repeated}")
        return value


@runtime_checkable
class Model(Protocol):
    """What serving and training use of any format."""

    @property
    def format(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def feature_service(self) -> str: ...
    @property
    def features(self) -> list[str]: ...
    @property
    def threshold(self) -> float: ...
    @property
    def metrics(self) -> Metrics: ...

    def score(self, values: Mapping[str, Any]) -> float:
        """The probability-like score of one row of feature values (name -> value)."""
        ...

    def score_many(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        """`score` of each row, computed in one call."""
        ...

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """Scores of an input matrix whose columns are `features` (see scoring.inputs)."""
        ...

    def save(self, path: str | Path) -> Path:
        """Writes the JSON to `path` (and any model file next to it); returns `path`."""
        ...


def read_json(path: Path) -> dict[str, Any]:
    """The artefact's JSON object, or a ModelArtefactError saying what is wrong with the file."""
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelArtefactError(f"No model artefact at {path}. {TRAIN_HINT}") from exc
    except IsADirectoryError as exc:
        raise ModelArtefactError(
            f"{path} is a directory; pass the artefact's JSON file (e.g. <model>/current.json)."
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelArtefactError(f"{path} is not a JSON model artefact: {exc}") from exc
    if not isinstance(document, dict):
        raise ModelArtefactError(f"{path} is not a JSON model artefact: not a JSON object")
    return document


def invalid(path: Path, exc: ValidationError) -> ModelArtefactError:
    return ModelArtefactError(
        f"{path} is not a valid model artefact: {exc}\nRetrain it, or restore the file as written."
    )


def write_atomically(path: Path, data: bytes) -> Path:
    """Write to a temporary file in the same directory, then rename it over `path`: a reader
    sees the old file or the new one, never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
