"""Model artefacts shared by training (pipelines/) and serving (serving/).

    model = scoring.load(models_dir / "account_takeover" / "current.json")
    model.score({"failed_logins_1d": 3, "ip_is_common": False})  # -> float in [0, 1]
    model.score_many(rows)                                        # -> list[float], one call
    decision = score >= model.threshold

Formats: `fraud-linear-v1` (scoring.linear, parameters in the JSON) and `fraud-gbdt-v1`
(scoring.gbdt, LightGBM's text model file next to the JSON, checked by sha256). docs/models.md
describes both.
"""

from scoring.artefact import ArtefactMeta, Metrics, Model
from scoring.errors import ModelArtefactError
from scoring.gbdt import GBDT_FORMAT, GBDTModel
from scoring.linear import LINEAR_FORMAT, LinearModel
from scoring.loader import FORMATS, load

__all__ = [
    "FORMATS",
    "GBDT_FORMAT",
    "LINEAR_FORMAT",
    "ArtefactMeta",
    "GBDTModel",
    "LinearModel",
    "Metrics",
    "Model",
    "ModelArtefactError",
    "load",
]
