"""One loader for every artefact format: read the JSON, dispatch on its `format`."""

from __future__ import annotations

from pathlib import Path

from scoring.artefact import Model, read_json
from scoring.errors import ModelArtefactError
from scoring.gbdt import GBDT_FORMAT, GBDTModel
from scoring.linear import LINEAR_FORMAT, LinearModel

FORMATS: dict[str, type[LinearModel] | type[GBDTModel]] = {
    LINEAR_FORMAT: LinearModel,
    GBDT_FORMAT: GBDTModel,
}


def load(path: str | Path) -> Model:
    """The model of an artefact JSON (serving reads `<models_dir>/<model>/current.json`).

    Raises ModelArtefactError, saying what to fix, when the file is missing or not JSON, its
    format is unknown, its fields are invalid, or (GBDT) its model file is missing or not the
    one the JSON records.
    """
    path = Path(path)
    document = read_json(path)
    # The linear format's first reader defaulted a missing `format` to it: so does this one.
    kind = document.get("format", LINEAR_FORMAT)
    cls = FORMATS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ModelArtefactError(
            f"{path} has unknown artefact format {kind!r}; this version reads "
            f"{', '.join(repr(f) for f in FORMATS)}. Retrain with `python -m pipelines.train`, "
            "or upgrade the reader."
        )
    return cls.load(path)
