"""Features through Feast for a model's feature service, with each feature's age and freshness."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus


@dataclass(frozen=True)
class ServedFeature:
    value: Any
    status: str  # PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE
    age_seconds: float | None  # None for on-demand features (computed now) and missing values
    stale: bool  # older than the view's freshness budget
    event_timestamp: int  # seconds; 0 when unknown


class FeatureClient:
    """Reads a feature service online and annotates every value with its age."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self._budgets: dict[str, dict[str, float]] = {}

    def budgets(self, service: str) -> dict[str, float]:
        """Feature name -> freshness budget (seconds) from its view's `freshness_budget_seconds` tag."""
        if service not in self._budgets:
            svc = self.store.get_feature_service(service)
            budgets = {}
            for projection in svc.feature_view_projections:
                view = self._view(projection.name)
                budget = (
                    float((view.tags or {}).get("freshness_budget_seconds", "inf"))
                    if view
                    else float("inf")
                )
                budgets.update({f.name: budget for f in projection.features})
            self._budgets[service] = budgets
        return self._budgets[service]

    def _view(self, name: str):
        for getter in (self.store.get_feature_view, self.store.get_on_demand_feature_view):
            try:
                return getter(name)
            except Exception:  # not that kind of view
                continue
        return None

    def fetch(
        self, service: str, entity_rows: list[dict[str, Any]]
    ) -> tuple[list[dict[str, ServedFeature]], Any]:
        """One online read for all rows; returns per-row features and Feast's response (for logging)."""
        svc = self.store.get_feature_service(service)
        response = self.store.get_online_features(features=svc, entity_rows=entity_rows)
        budgets = self.budgets(service)
        now = time.time()
        rows: list[dict[str, ServedFeature]] = [{} for _ in entity_rows]
        values = response.to_dict()
        names = list(response.proto.metadata.feature_names.val)
        for name, result in zip(names, response.proto.results, strict=True):
            if name not in budgets:  # join keys and request data come back too
                continue
            for i, status in enumerate(result.statuses):
                ts = result.event_timestamps[i].seconds if i < len(result.event_timestamps) else 0
                # Feast 0.67's Redis path says PRESENT for an absent key too; an unset value is the truth.
                if status == FieldStatus.PRESENT and result.values[i].WhichOneof("val") is None:
                    status = FieldStatus.NOT_FOUND
                present = status == FieldStatus.PRESENT
                age = (now - ts) if (present and ts > 0) else None
                rows[i][name] = ServedFeature(
                    value=values[name][i],
                    status=FieldStatus.Name(status),
                    age_seconds=age,
                    stale=age is not None and age > budgets[name],
                    event_timestamp=ts,
                )
        return rows, response
