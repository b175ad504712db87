"""`fraud-linear-v1`: a standardised logistic regression stored in the JSON itself.

Scoring is the function scikit-learn's StandardScaler + LogisticRegression compute,
sigmoid(((x - mean) / scale) . coef + intercept), with the scaling folded into the weights once
(x . coef/scale + intercept - mean . coef/scale), equal to it within float rounding. Artefacts written by `serving/model.py`
(the format's first home) load unchanged.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError, field_validator, model_validator
from scipy.special import expit

from scoring import inputs
from scoring.artefact import ArtefactMeta, invalid, read_json, write_atomically

LINEAR_FORMAT = "fraud-linear-v1"


class LinearModel(ArtefactMeta):
    format: str = LINEAR_FORMAT
    fill_value: float = 0.0  # a missing feature (unknown entity, null) scores as this value
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    @field_validator("format", mode="before")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        if value != LINEAR_FORMAT:
            raise ValueError(
                f"unknown artefact format {value!r}; this class reads {LINEAR_FORMAT!r}"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> LinearModel:
        n = len(self.features)
        if any(len(v) != n for v in (self.mean, self.scale, self.coef)):
            raise ValueError("features, mean, scale and coef must be of the same length")
        if any(s <= 0 or not math.isfinite(s) for s in self.scale):
            raise ValueError("scale values must be positive and finite")
        if not all(math.isfinite(v) for v in [*self.mean, *self.coef, self.intercept]):
            raise ValueError("mean, coef and intercept must be finite numbers")
        if not math.isfinite(self.fill_value):
            raise ValueError("fill_value must be a finite number")
        return self

    @functools.cached_property
    def _margin(self) -> tuple[np.ndarray, float]:
        """(weights, bias) with the scaling folded in: x . weights + bias, computed once."""
        coef, mean, scale = (
            np.asarray(v, dtype=np.float64) for v in (self.coef, self.mean, self.scale)
        )
        return coef / scale, float(self.intercept - (coef * mean / scale).sum())

    @classmethod
    def load(cls, path: str | Path) -> LinearModel:
        path = Path(path)
        try:
            return cls.model_validate(read_json(path))
        except ValidationError as exc:
            raise invalid(path, exc) from exc

    def save(self, path: str | Path) -> Path:
        return write_atomically(Path(path), self.model_dump_json(indent=2).encode())

    def vector(self, values: Mapping[str, Any]) -> np.ndarray:
        """The model's input row from a feature dict (see scoring.inputs)."""
        return np.array(inputs.row(self.features, values, self.fill_value), dtype=float)

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        weights, bias = self._margin
        # A row-wise sum, not a matrix product: BLAS sums a batch's rows in another order than a
        # single row's, and `score` must equal `score_many` to the bit.
        return np.asarray(expit((x * weights).sum(axis=1) + bias))

    def score(self, values: Mapping[str, Any]) -> float:
        x = np.array([inputs.row(self.features, values, self.fill_value)], dtype=np.float64)
        return float(self.score_matrix(x)[0])

    def score_many(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        return self.score_matrix(inputs.matrix(self.features, rows, self.fill_value)).tolist()
