"""Features through Feast for a model's feature service, with each feature's age and freshness."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from feast import FeatureStore
from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

from providers.feast_redis import VOUCHED_TAG


class NotLoaded(RuntimeError):
    """The online store has no load marker for these views (feast_redis.loaded_key): it lost its
    data, or was never materialized. Serving refuses to score rather than score empty values."""

    def __init__(self, views: list[str]):
        super().__init__(
            f"the online store is not loaded for views {views}: it was restarted or flushed, "
            "or never materialized; the next `feast materialize-incremental` reloads them whole"
        )
        self.views = views


@dataclass(frozen=True)
class ServedFeature:
    value: Any
    status: str  # PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE
    age_seconds: float | None  # None for on-demand features (computed now) and missing values
    stale: bool  # older than the view's freshness budget
    event_timestamp: int  # seconds; 0 when unknown
    # When the pipeline last vouched for the value (epoch seconds; 0 when unknown): its row's time,
    # or the pipeline's progress past it. `age_seconds` counts from it; the log records it.
    vouched_timestamp: float = 0.0


class FeatureClient:
    """Reads a feature service online and annotates every value with its age."""

    def __init__(self, store: FeatureStore):
        self.store = store
        self._budgets: dict[str, dict[str, float]] = {}

    def budgets(self, service: str) -> dict[str, float]:
        """Feature name -> freshness budget (seconds), cached per service."""
        if service not in self._budgets:
            self._budgets[service] = freshness_budgets(self.store, service)
        return self._budgets[service]

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
                    # Feast's own read knows no pipeline progress: vouched by the row's time
                    vouched_timestamp=float(ts) if present else 0.0,
                )
        return rows, response


def freshness_budgets(store: FeatureStore, service: str) -> dict[str, float]:
    """Feature name -> freshness budget (seconds) from its view's `freshness_budget_seconds` tag."""
    svc = store.get_feature_service(service)
    budgets: dict[str, float] = {}
    for projection in svc.feature_view_projections:
        view = any_view(store, projection.name)
        budget = float((view.tags or {}).get("freshness_budget_seconds", "inf")) if view else INF
        budgets.update({f.name: budget for f in projection.features})
    return budgets


INF = float("inf")


def served_views(store: FeatureStore, services: list[str]) -> set[str]:
    """The feature views the services read from the online store, their on-demand views'
    inputs included: the views whose load markers readiness requires."""
    from feast.on_demand_feature_view import OnDemandFeatureView

    names: set[str] = set()
    for service in services:
        for projection in store.get_feature_service(service).feature_view_projections:
            view = any_view(store, projection.name)
            if isinstance(view, OnDemandFeatureView):  # its inputs are read too
                names.update(p.name for p in view.source_feature_view_projections.values())
            elif view is not None:
                names.add(view.name)
    return names


def _arrow_types() -> dict[Any, Any]:
    import pyarrow as pa
    from feast.value_type import ValueType

    return {ValueType.INT64: pa.int64(), ValueType.INT32: pa.int32(), ValueType.STRING: pa.string()}


_ARROW = _arrow_types()


def any_view(store: FeatureStore, name: str):
    getters = (
        store.get_feature_view,
        store.get_stream_feature_view,
        store.get_on_demand_feature_view,
    )
    for getter in getters:
        try:
            return getter(name)
        except Exception:  # not that kind of view
            continue
    return None


@dataclass(frozen=True)
class _ViewRead:
    """One feature view of a service: where its values live in Redis and how to decode them."""

    name: str  # the projection's name: Feast's key prefix for the hash fields
    join_keys: tuple[tuple[str, str, Any], ...]  # (view join key, request column, ValueType)
    features: tuple[str, ...]
    fields: tuple[bytes | str, ...]  # the features' hash fields, then the timestamp field
    budget: float
    # Fresh up to the pipeline's progress (feast_redis.progress_key): a stream view's watermark,
    # a batch view's last materialized run coverage (VOUCHED_TAG)
    vouched: bool = False
    marker: str = ""  # the view's name in the load markers (feast_redis.loaded_key)
    hidden: bool = False  # read as an on-demand view's input only, not served


@dataclass(frozen=True)
class _Plan:
    views: tuple[_ViewRead, ...]
    on_demand: tuple[tuple[Any, tuple[str, ...]], ...]  # (OnDemandFeatureView, its output names)
    built: float


class OnlineReader:
    """A feature service read in one Redis round trip, with the same answer as Feast's.

    `FeatureStore.get_online_features` spends milliseconds of Python per call (registry lookups,
    protobuf responses, per-view reads) where the data needs one pipelined round trip
    (benchmarks/online.py measures both). This reader resolves the service from the registry once
    per `ttl_seconds` (refreshed in the background, so a registry read never sits in a request)
    and then reads Feast's Redis layout through providers/feast_redis.py (keys, hash fields,
    value decoding), with the views' load markers and the stream's progress in the same round
    trip, and `OnDemandFeatureView.transform_dict` for python-mode on-demand views.
    tests/integration/test_serving.py (test_online_reader_...) holds it equal to
    `FeatureClient` (Feast's own path) for present, absent and pushed values. A service it cannot read this way (another online
    store, pandas-mode on-demand views) is served by `FeatureClient`.
    """

    def __init__(self, store: FeatureStore, ttl_seconds: float | None = None):
        self.store = store
        self.fallback = FeatureClient(store)
        self.ttl_seconds = (
            ttl_seconds
            if ttl_seconds is not None
            else float(getattr(store.config.registry, "cache_ttl_seconds", 60) or 60)
        )
        self._plans: dict[str, _Plan | None] = {}  # None: read through FeatureClient
        self._refreshing: set[str] = set()
        self._client: Any = None
        self._client_loop: Any = None

    def supported(self, service: str) -> bool:
        return self._plan(service) is not None

    def _plan(self, service: str) -> _Plan | None:
        if service not in self._plans:
            self._plans[service] = self._build(service)
        return self._plans[service]

    def _build(self, service: str) -> _Plan | None:
        from feast.infra.online_stores.redis import RedisOnlineStoreConfig
        from feast.on_demand_feature_view import OnDemandFeatureView

        from providers.feast_redis import view_fields

        if not isinstance(self.store.config.online_store, RedisOnlineStoreConfig):
            return None
        svc = self.store.get_feature_service(service, allow_cache=True)
        budgets = freshness_budgets(self.store, service)
        views: list[_ViewRead] = []
        on_demand = []

        def read(projection, view, features: tuple[str, ...], hidden: bool) -> None:
            name = projection.name_to_use()
            join_map = projection.join_key_map or {}
            join_keys = tuple(
                (c.name, join_map.get(c.name, c.name), c.dtype.to_value_type())
                for c in view.entity_columns
            )
            ts_field, hashed = view_fields(name, features)
            fields: tuple[bytes | str, ...] = (*hashed, ts_field)
            budget = min((budgets.get(f, INF) for f in features), default=INF)
            vouched = bool(getattr(view, "aggregations", None)) or VOUCHED_TAG in (view.tags or {})
            views.append(
                _ViewRead(name, join_keys, features, fields, budget, vouched, view.name, hidden)
            )

        for projection in svc.feature_view_projections:
            view = any_view(self.store, projection.name)
            if view is None:
                return None
            # A join key is not a feature (a stream view read back from the registry lists its
            # join key among its features): it is not read, served or logged as one.
            keys = {c.name for c in getattr(view, "entity_columns", [])}
            features = tuple(f.name for f in projection.features if f.name not in keys)
            if isinstance(view, OnDemandFeatureView):
                if view.mode != "python" or view.singleton:
                    return None
                on_demand.append((view, features))
                continue
            if getattr(view, "current_version_number", 0):  # versioned keys: Feast's own read
                return None
            read(projection, view, features, hidden=False)
        # An on-demand view's inputs from views the service does not serve are read too (as
        # Feast's own read does), in the same round trip, but not served.
        for odfv, _ in on_demand:
            for source in odfv.source_feature_view_projections.values():
                view = any_view(self.store, source.name)
                if view is None or getattr(view, "current_version_number", None):
                    return None
                have = {f for v in views if v.name == source.name_to_use() for f in v.features}
                keys = {c.name for c in getattr(view, "entity_columns", [])}
                missing = tuple(f.name for f in source.features if f.name not in have | keys)
                if missing:
                    read(source, view, missing, hidden=True)
        return _Plan(tuple(views), tuple(on_demand), time.monotonic())

    def refresh_if_due(self, service: str) -> bool:
        """Rebuild an expired plan; True if this call rebuilt it. Meant for a background thread."""
        plan = self._plans.get(service)
        if plan is None or time.monotonic() - plan.built < self.ttl_seconds:
            return False
        if service in self._refreshing:
            return False
        self._refreshing.add(service)
        try:
            self.store.refresh_registry()
            self._plans[service] = self._build(service)
            return True
        finally:
            self._refreshing.discard(service)

    def due(self, service: str) -> bool:
        plan = self._plans.get(service)
        return (
            plan is not None
            and service not in self._refreshing
            and time.monotonic() - plan.built >= self.ttl_seconds
        )

    async def check_loaded(self, views: list[str]) -> None:
        """Raise NotLoaded unless every one of `views` has its load marker."""
        from providers.feast_redis import loaded_key

        if not views:
            return
        client = await self._redis()
        marks = await client.hmget(loaded_key(self.store.project), views)
        missing = [v for v, mark in zip(views, marks, strict=True) if not mark]
        if missing:
            raise NotLoaded(missing)

    async def _redis(self):
        """An asyncio client of our own (Feast's cached one may belong to another event loop)."""
        import asyncio

        from feast.infra.online_stores.redis import RedisOnlineStore

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client_loop = loop
            self._client = await RedisOnlineStore()._get_client_async(
                self.store.config.online_store
            )
        return self._client

    async def fetch(
        self, service: str, entity_rows: list[dict[str, Any]]
    ) -> list[dict[str, ServedFeature]]:
        """Per row: feature name -> served value with status, age and staleness."""
        import pyarrow as pa

        from providers.feast_redis import (
            decode_seconds,
            decode_value,
            entity_keys,
            loaded_key,
            progress_key,
        )

        plan = self._plan(service)
        assert plan is not None, f"{service} is read through FeatureClient"
        project = self.store.project
        version = self.store.config.entity_key_serialization_version
        client = await self._redis()
        async with client.pipeline(transaction=False) as pipe:
            for view in plan.views:
                columns = [
                    pa.array([row[column] for row in entity_rows], _ARROW.get(value_type))
                    for _, column, value_type in view.join_keys
                ]
                names = [(key, value_type) for key, _, value_type in view.join_keys]
                for key in entity_keys(columns, names, project, version):
                    pipe.hmget(key, view.fields)
            tracked = sorted({v.marker for v in plan.views if v.vouched})
            if tracked:  # the pipelines' progress, in the same round trip
                pipe.hmget(progress_key(project), tracked)
            if plan.views:  # and the views' load markers
                pipe.hmget(loaded_key(project), [v.marker for v in plan.views])
            replies = await pipe.execute()
        if plan.views:
            marks = replies.pop()
            missing = [v.marker for v, mark in zip(plan.views, marks, strict=True) if not mark]
            if missing:
                raise NotLoaded(missing)
        progress = dict(zip(tracked, replies.pop(), strict=True)) if tracked else {}

        now = time.time()
        rows: list[dict[str, ServedFeature]] = [{} for _ in entity_rows]
        values: dict[str, list[Any]] = {}
        replies_iter = iter(replies)
        for view in plan.views:
            for i, _ in enumerate(entity_rows):
                *raw, raw_ts = next(replies_iter)
                ts = decode_seconds(raw_ts)
                # The age is the time since the pipeline last vouched for the value: its row's
                # time, or the pipeline's progress past it (an idle user's value is current).
                vouched: float = ts
                if ts and progress.get(view.marker):
                    vouched = max(ts, int(progress[view.marker]) / 1e6)
                for name, blob in zip(view.features, raw, strict=True):
                    value, present = decode_value(blob)
                    # never negative: a producer's clock may run up to 5 minutes ahead
                    age = max(0.0, now - vouched) if (present and ts > 0) else None
                    values.setdefault(name, []).append(value)
                    if view.hidden:
                        continue
                    rows[i][name] = ServedFeature(
                        value=value,
                        status="PRESENT" if present else "NOT_FOUND",
                        age_seconds=age,
                        stale=age is not None and age > view.budget,
                        event_timestamp=ts,
                        vouched_timestamp=vouched if present else 0.0,
                    )
        for odfv, outputs in plan.on_demand:
            inputs = dict(values)
            for source in odfv.source_request_sources.values():
                for field in source.schema:
                    inputs[field.name] = [row.get(field.name) for row in entity_rows]
            result = odfv.transform_dict(inputs)
            for name in outputs:
                for i, value in enumerate(result[name]):
                    # As Feast's own read: a None or NaN result is stored as a null ValueProto.
                    if isinstance(value, float) and math.isnan(value):
                        value = None
                    rows[i][name] = ServedFeature(
                        value=value,
                        status="PRESENT" if value is not None else "NOT_FOUND",
                        age_seconds=None,
                        stale=False,
                        event_timestamp=0,
                    )
        return rows
