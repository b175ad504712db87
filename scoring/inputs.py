"""Feature values -> the model's input matrix: one set of rules for every format, and for
training (a data frame) and serving (dicts) alike.

- numbers as floats, booleans as 0/1, numeric strings as their number;
- missing (absent key, None, NaN, anything not a number) as the artefact's `fill` value, which
  is a number (0.0 for the linear format) or NaN (LightGBM sends NaN down each split's learned
  missing branch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd


def number(value: Any, fill: float) -> float:
    """One feature value as the model sees it."""
    if value is None:
        return fill
    if isinstance(value, bool | np.bool_):
        return float(value)
    try:
        result = float(value)
    except (TypeError, ValueError):
        return fill
    return fill if math.isnan(result) else result


def row(features: Sequence[str], values: Mapping[str, Any], fill: float) -> list[float]:
    return [number(values.get(name), fill) for name in features]


def matrix(features: Sequence[str], rows: Sequence[Mapping[str, Any]], fill: float) -> np.ndarray:
    """Rows of feature dicts (serving) -> a float matrix, one row per dict."""
    out = np.empty((len(rows), len(features)), dtype=np.float64)
    for i, values in enumerate(rows):
        out[i] = row(features, values, fill)
    return out


def frame_matrix(frame: pd.DataFrame, features: Sequence[str], fill: float) -> np.ndarray:
    """A training frame's feature columns -> the same matrix `matrix` gives for its rows."""
    columns = [_column(frame[name]) for name in features]
    out = np.column_stack(columns) if columns else np.empty((len(frame), 0))
    return np.where(np.isnan(out), fill, out)


def _column(series: pd.Series) -> np.ndarray:
    if series.dtype == object:  # mixed Python values (None, bools, numbers, strings): as `number`
        return np.array([number(v, math.nan) for v in series], dtype=np.float64)
    values = pd.to_numeric(series, errors="coerce")
    return np.asarray(values.astype("float64").to_numpy(na_value=np.nan), dtype=np.float64)
