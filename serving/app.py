"""The inference endpoint: features through Feast for a model's feature service, score, log.

Routes:
  POST /v1/models/{model}/predict  {"entities": [{...}, ...]}  -> score, decision, features with age
  POST /v1/push/{source}           {"events": [{...}, ...]}    -> written online and offline first
  POST /v1/events/{kind}           {"events": [{...}, ...]}    -> on the broker (serving/ingest.py)
  GET  /healthz   the process answers
  GET  /readyz    Redis and the registry answer (503 otherwise)
  GET  /metrics   Prometheus
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import math
import time
import uuid
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
)

from serving.feature_log import ServedFeatureLogger, served_records
from serving.features import FeatureClient, OnlineReader
from serving.ingest import Broker, IngestMetrics, KnownUsers
from serving.ingest import register as register_ingest
from serving.model import LinearModel
from serving.settings import Settings

log = logging.getLogger(__name__)
MAX_BATCH = 100


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    login_ip: str
    login_device: str = Field(min_length=1, max_length=64)

    @field_validator("login_ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        ipaddress.ip_address(value)  # ValueError -> 422 naming the field
        return value


class WithdrawalRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: int = Field(ge=1)
    amount: float = Field(gt=0, lt=1e9)


REQUESTS: dict[str, type[BaseModel]] = {
    "account_takeover": LoginRequest,
    "withdrawal_fraud": WithdrawalRequest,
}


class Batch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entities: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class Events(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "serving_request_seconds",
            "Request latency",
            ["route", "model"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.stale = Counter(
            "serving_stale_features_total",
            "Served values older than their freshness budget",
            ["model", "feature"],
            registry=self.registry,
        )
        self.errors = Counter(
            "serving_errors_total", "Errors by type", ["route", "type"], registry=self.registry
        )


def _validate_each(
    model: type[BaseModel], items: list[dict[str, Any]], field: str
) -> list[BaseModel]:
    """Validate every item; a failure is a 422 whose location is (body, field, index, ...)."""
    out = []
    for index, item in enumerate(items):
        try:
            out.append(model.model_validate(item))
        except ValidationError as exc:
            raise _validation_error(exc, ("body", field, index)) from exc
    return out


def _validation_error(exc: ValidationError, prefix: tuple) -> RequestValidationError:
    return RequestValidationError(
        [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors(include_url=False)]
    )


def _online_store_down(exc: Exception) -> bool:
    import redis

    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)


def _push_model(store, source: str) -> type[BaseModel]:
    """A request model for a push source, from the views that read it (Feast types -> Python)."""
    from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String

    types: dict[Any, Any] = {
        String: str,
        Float64: float,
        Float32: float,
        Int64: int,
        Int32: int,
        Bool: bool,
        Array(String): list[str],
    }
    push = store.get_data_source(source)
    fields: dict[str, Any] = {push.batch_source.timestamp_field: (AwareDatetime, ...)}
    for view in store.list_feature_views():
        stream = getattr(view, "stream_source", None)
        if stream is not None and stream.name == source:
            fields.update({c.name: (int, ...) for c in view.entity_columns})
            fields.update({f.name: (types.get(f.dtype, Any) | None, None) for f in view.features})
    return create_model(f"{source}_event", __config__=ConfigDict(extra="forbid"), **fields)


def _json_value(value: Any) -> Any:
    """JSON has no NaN or infinity: such a value (e.g. a ratio with no history) is served as null.
    NumPy scalars become Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


async def _read(state, model: str, rows: list[dict[str, Any]]):
    """The service's features: one Redis round trip when the reader can, else Feast's own read."""
    reader: OnlineReader = state.reader
    if not reader.supported(model):
        served, _ = await run_in_threadpool(state.features.fetch, model, rows)
        return served
    if reader.due(model):  # the registry may have changed: re-resolve off the request path
        asyncio.get_running_loop().run_in_executor(None, reader.refresh_if_due, model)
    return await reader.fetch(model, rows)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from feast import FeatureStore

        store = FeatureStore(repo_path=str(settings.feature_repo))
        app.state.store = store
        app.state.features = FeatureClient(store)
        app.state.reader = OnlineReader(store)
        app.state.models = {
            name: LinearModel.load(settings.models_dir / name / "current.json")
            for name in settings.models
        }
        for name in settings.models:
            app.state.reader.supported(name)  # resolve the read plan now, not in a request
        app.state.push_models = {}
        app.state.logger = ServedFeatureLogger(
            str(settings.feature_repo), settings.log_flush_seconds, settings.log_queue_rows
        )
        app.state.logger.start()
        app.state.broker = (
            Broker(settings.broker_url, settings.broker_timeout_seconds)
            if settings.broker_url
            else None
        )
        app.state.known_users = KnownUsers(app.state.reader)
        try:
            yield
        finally:
            app.state.logger.stop()
            if app.state.broker is not None:
                await app.state.broker.close()

    app = FastAPI(title="Fraud feature platform: inference", lifespan=lifespan)
    metrics = Metrics()
    app.state.metrics = metrics
    app.state.ingest_metrics = IngestMetrics(metrics.registry)
    register_ingest(app, _validation_error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        metrics.errors.labels(
            request.url.path.split("/")[2] if request.url.path.count("/") > 1 else "", "validation"
        ).inc()
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(request: Request):
        store = request.app.state.store
        try:
            await run_in_threadpool(
                lambda: (
                    store._get_provider().online_store._get_client(store.config.online_store).ping()
                )
            )
            await run_in_threadpool(store.get_feature_service, settings.models[0])
        except Exception as exc:
            return JSONResponse(
                status_code=503, content={"status": "unavailable", "reason": type(exc).__name__}
            )
        return {"status": "ready"}

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/models/{model}/predict")
    async def predict(model: str, body: Batch, request: Request):
        started = time.perf_counter()
        state = request.app.state
        if model not in state.models:
            raise HTTPException(404, f"Unknown model {model!r}; serving {sorted(state.models)}.")
        rows = [e.model_dump() for e in _validate_each(REQUESTS[model], body.entities, "entities")]
        try:
            served = await _read(state, model, rows)
        except Exception as exc:
            if _online_store_down(exc):
                metrics.errors.labels("predict", "online_store_unavailable").inc()
                raise HTTPException(503, "The online store is unavailable; retry shortly.") from exc
            raise
        artefact: LinearModel = state.models[model]
        request_ids = [str(uuid.uuid4()) for _ in rows]
        predictions = []
        for row, features, request_id in zip(rows, served, request_ids, strict=True):
            values = {name: f.value for name, f in features.items()}
            score = artefact.score(values)
            for name, f in features.items():
                if f.stale:
                    metrics.stale.labels(model, name).inc()
            predictions.append(
                {
                    "request_id": request_id,
                    "entity": row,
                    "score": score,
                    "decision": score >= artefact.threshold,
                    "missing_features": sorted(
                        n for n, f in features.items() if f.status != "PRESENT"
                    ),
                    "features": {
                        n: {
                            "value": _json_value(f.value),
                            "age_seconds": f.age_seconds,
                            "stale": f.stale,
                            "status": f.status,
                        }
                        for n, f in features.items()
                    },
                }
            )
        state.logger.enqueue(model, served_records(rows, served, request_ids))
        metrics.latency.labels("predict", model).observe(time.perf_counter() - started)
        # Plain JSON types only, so the body is encoded as it is: FastAPI's jsonable_encoder walk
        # of the nested dicts was a quarter of a request's CPU (py-spy, benchmarks/online.py).
        return JSONResponse(
            {
                "model": model,
                "model_version": artefact.version,
                "threshold": artefact.threshold,
                "predictions": predictions,
            }
        )

    @app.post("/v1/push/{source}")
    async def push(source: str, body: Events, request: Request):
        from feast.data_source import PushMode, PushSource

        started = time.perf_counter()
        state = request.app.state
        if source not in state.push_models:
            try:
                data_source = state.store.get_data_source(source)
            except Exception:
                data_source = None
            if not isinstance(data_source, PushSource):
                raise HTTPException(404, f"Unknown push source {source!r}.")
            state.push_models[source] = _push_model(state.store, source)
        events = _validate_each(state.push_models[source], body.events, "events")
        frame = pd.DataFrame([e.model_dump() for e in events])
        try:  # acknowledged only after Feast wrote online and offline
            await run_in_threadpool(state.store.push, source, frame, to=PushMode.ONLINE_AND_OFFLINE)
        except Exception as exc:
            if _online_store_down(exc):
                metrics.errors.labels("push", "online_store_unavailable").inc()
                raise HTTPException(503, "The online store is unavailable; retry shortly.") from exc
            raise
        metrics.latency.labels("push", source).observe(time.perf_counter() - started)
        return {"written": len(events), "at": dt.datetime.now(dt.UTC).isoformat()}

    return app
