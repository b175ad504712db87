"""`fraud-gbdt-v1`: gradient-boosted trees in LightGBM's own text model file.

The JSON holds the metadata every format has and names the model file next to it with its
sha256; loading hashes the bytes it parses, so a swapped or truncated file is refused, not
scored. LightGBM parses its text format itself (no pickle, nothing executed). Missing values
follow scoring.inputs: with `fill_value` null they reach LightGBM as NaN, which takes each
split's missing branch learned in training.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
from pydantic import Field, ValidationError, field_validator

from scoring import inputs
from scoring.artefact import ArtefactMeta, invalid, read_json, write_atomically
from scoring.errors import ModelArtefactError

GBDT_FORMAT = "fraud-gbdt-v1"
# One thread: serving scores a request's rows on its own thread, and OpenMP's start-up for a
# handful of rows costs more than the trees (measured in docs/models.md).
PREDICT_PARAMS: dict[str, Any] = {"num_threads": 1}


class GBDTModel(ArtefactMeta):
    format: str = GBDT_FORMAT
    # None: a missing feature reaches LightGBM as NaN (its learned missing branch).
    fill_value: float | None = None
    model_file: str  # LightGBM text model, in the JSON's directory
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("format", mode="before")
    @classmethod
    def _known_format(cls, value: Any) -> Any:
        if value != GBDT_FORMAT:
            raise ValueError(f"unknown artefact format {value!r}; this class reads {GBDT_FORMAT!r}")
        return value

    @field_validator("model_file")
    @classmethod
    def _bare_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value):
            raise ValueError(
                f"model_file must be a file name in the artefact's directory, got {value!r}"
            )
        return value

    @field_validator("fill_value")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and not math.isfinite(value):
            raise ValueError("fill_value must be a finite number or null (NaN to LightGBM)")
        return value

    @classmethod
    def from_booster(cls, booster: lightgbm.Booster, **meta: Any) -> GBDTModel:
        """The artefact of a trained booster; `meta` are the metadata fields. It scores from
        the text it will save, so what training measures is what serving loads."""
        text = booster.model_to_string()
        sha = _sha256(text)
        model = cls(model_file=f"lightgbm-{sha[:16]}.txt", model_sha256=sha, **meta)
        model._attach(text, source="the trained booster")
        return model

    @classmethod
    def load(cls, path: str | Path) -> GBDTModel:
        path = Path(path)
        try:
            model = cls.model_validate(read_json(path))
        except ValidationError as exc:
            raise invalid(path, exc) from exc
        file = path.parent / model.model_file
        try:
            data = file.read_bytes()
        except FileNotFoundError as exc:
            raise ModelArtefactError(
                f"{path} scores with the LightGBM model file {model.model_file}, which is not at "
                f"{file}. Copy it next to {path.name} (training writes both), or retrain."
            ) from exc
        actual = hashlib.sha256(data).hexdigest()
        if actual != model.model_sha256:
            raise ModelArtefactError(
                f"{file} has sha256 {actual}, but {path} records {model.model_sha256}: the model "
                "file is not the one trained with this artefact. Restore that file, or retrain."
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ModelArtefactError(f"{file} is not a LightGBM text model: {exc}") from exc
        model._attach(text, source=str(file))
        return model

    def _attach(self, text: str, source: str) -> None:
        try:
            booster = lightgbm.Booster(model_str=text)
        except lightgbm.basic.LightGBMError as exc:
            raise ModelArtefactError(f"{source} is not a LightGBM text model: {exc}") from exc
        objective = str(booster.dump_model(num_iteration=1).get("objective", ""))
        if not objective.startswith("binary"):
            raise ModelArtefactError(
                f"{source} has objective {objective!r}; a fraud score needs a binary classifier "
                "(objective='binary'). Retrain with `pipelines.train --algorithm gbdt`."
            )
        if booster.feature_name() != self.features:
            raise ModelArtefactError(
                f"{source} was trained on features {booster.feature_name()}, but the artefact "
                f"lists {self.features}. Retrain: the two were not written together."
            )
        # Not fields: equality and the JSON come from the fields (the file's sha256 among them).
        self.__dict__["_booster"] = booster
        self.__dict__["_text"] = text

    @property
    def booster(self) -> lightgbm.Booster:
        booster = self.__dict__.get("_booster")
        if booster is None:
            raise ModelArtefactError(
                "This GBDT artefact has no model attached; build it with GBDTModel.load(path) "
                "or GBDTModel.from_booster(booster, ...)."
            )
        return booster

    @property
    def missing(self) -> float:
        return math.nan if self.fill_value is None else self.fill_value

    def save(self, path: str | Path) -> Path:
        """The model file next to `path` first, then the JSON: a reader of `path` never sees
        a JSON whose model file is not there yet."""
        path = Path(path)
        self.booster  # noqa: B018 (refuses to save an artefact without its model)
        write_atomically(path.parent / self.model_file, self.__dict__["_text"].encode())
        return write_atomically(path, self.model_dump_json(indent=2).encode())

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.empty(0)
        return np.asarray(self.booster.predict(x, **PREDICT_PARAMS), dtype=np.float64)

    def score(self, values: Mapping[str, Any]) -> float:
        x = np.array([inputs.row(self.features, values, self.missing)], dtype=np.float64)
        return float(self.score_matrix(x)[0])

    def score_many(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        return self.score_matrix(inputs.matrix(self.features, rows, self.missing)).tolist()


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
