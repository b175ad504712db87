"""Model artefacts: a trained linear classifier stored as plain, validated JSON.

No pickle: loading an artefact parses JSON into a validated schema and never executes code, so a
file swapped on disk can at worst fail validation. Scoring is a few lines of numpy, the same
arithmetic scikit-learn's StandardScaler + LogisticRegression perform.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ARTEFACT_FORMAT = "fraud-linear-v1"


class ModelArtefactError(ValueError):
    """The artefact file is missing, not JSON, or not a valid model of this format."""


class Metrics(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roc_auc: float | None
    pr_auc: float | None
    recall_at_1pct_fpr: float | None = None  # recall where 1% of legitimate events are flagged
    validation_rows: int
    validation_positives: int
    training_rows: int
    training_positives: int


class LinearModel(BaseModel):
    """Everything serving needs to score, and everything needed to trace where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = Field(ARTEFACT_FORMAT)
    model: str  # account_takeover | withdrawal_fraud
    version: str
    feature_service: str
    features: list[str]  # the model's inputs, in order (feature names of the service's response)
    fill_value: float = 0.0  # a missing feature (unknown entity, null) scores as this value
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    threshold: float = Field(ge=0.0, le=1.0)
    as_of: str  # the knowledge time of the training set (ISO 8601, UTC)
    feature_runs: list[str]  # run ids of the feature values the training set could see
    saved_dataset: str | None
    code_version: str
    trained_at: str
    metrics: Metrics

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        if value != ARTEFACT_FORMAT:
            raise ValueError(
                f"unknown artefact format {value!r}; this server reads {ARTEFACT_FORMAT!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LinearModel:
        n = len(self.features)
        if not n or any(len(v) != n for v in (self.mean, self.scale, self.coef)):
            raise ValueError(
                "features, mean, scale and coef must be non-empty and of the same length"
            )
        if any(s <= 0 or not math.isfinite(s) for s in self.scale):
            raise ValueError("scale values must be positive and finite")
        if not all(math.isfinite(v) for v in [*self.mean, *self.coef, self.intercept]):
            raise ValueError("mean, coef and intercept must be finite numbers")
        return self

    @classmethod
    def load(cls, path: str | Path) -> LinearModel:
        path = Path(path)
        try:
            return cls.model_validate(json.loads(path.read_text()))
        except FileNotFoundError as exc:
            raise ModelArtefactError(
                f"No model artefact at {path}. Train one with `python -m pipelines.train`."
            ) from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelArtefactError(f"{path} is not a JSON model artefact: {exc}") from exc
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ModelArtefactError(f"{path} is not a valid model artefact: {exc}") from exc

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    def vector(self, values: dict[str, Any]) -> np.ndarray:
        """The model's input row from a feature dict: booleans as 0/1, missing as `fill_value`."""
        return np.array(
            [_number(values.get(name), self.fill_value) for name in self.features], dtype=float
        )

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        z = ((x - np.asarray(self.mean)) / np.asarray(self.scale)) @ np.asarray(
            self.coef
        ) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def score(self, values: dict[str, Any]) -> float:
        return float(self.score_matrix(self.vector(values)[None, :])[0])


def _number(value: Any, fill: float) -> float:
    if value is None:
        return fill
    if isinstance(value, bool | np.bool_):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return fill
    return fill if math.isnan(number) else number
