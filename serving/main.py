"""The inference endpoint, assembled: settings, the feature store, the models, the routes.

Routes (serving/routes/), each but health behind an API key with a scope (serving/deps.py):
  POST /v1/models/{model}/predict  predict  score, decision, features with age
  POST /v1/push/{source}           ingest   written online and offline first
  POST /v1/events/{kind}           ingest   on the broker
  GET  /metrics                    admin    Prometheus
  GET  /healthz   the process answers
  GET  /readyz    Redis and the registry answer, and the served views are loaded (503 otherwise)

The registry is read when the app is built, not per request: each model's route and request
schema come from its feature service, each push route from a push source, so the OpenAPI
description (/openapi.json) names every field a client must send.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

import scoring
from providers.events import KINDS
from serving import schemas
from serving.broker import Broker, KnownUsers
from serving.deps import key_index
from serving.feature_log import ServedFeatureLogger
from serving.features import FeatureClient, OnlineReader, served_views
from serving.metrics import Metrics
from serving.routes import events, health, predict, push
from serving.settings import Settings

log = logging.getLogger(__name__)


def _push_sources(store) -> dict[str, type]:
    from feast.data_source import PushSource

    return {
        source.name: schemas.push_event(store, source.name)
        for source in store.list_data_sources()
        if isinstance(source, PushSource)
    }


class ModelConfigError(ValueError):
    """A model serving cannot serve as configured; the message says what to fix."""


def _check_model(store, name: str, model) -> None:
    """A model is served from the feature service of its name, and every vector it scores is
    logged: the artefact must be trained on that service, its features must be the service's
    (a feature renamed or removed since training would be scored as the fill value, silently),
    and the service must log."""
    try:
        service = store.get_feature_service(name)
    except Exception as exc:
        raise ModelConfigError(
            f"model {name!r}: no feature service {name!r} in the registry (feature_repo/, "
            "`feast apply`)"
        ) from exc
    if model.feature_service != name:
        raise ModelConfigError(
            f"model {name!r}: its artefact was trained on feature service "
            f"{model.feature_service!r}; train it on {name!r}"
        )
    served = {f.name for p in service.feature_view_projections for f in p.features}
    missing = sorted(set(model.features) - served)
    if missing:
        raise ModelConfigError(
            f"model {name!r}: its artefact uses features {missing} that feature service "
            f"{name!r} no longer serves; retrain it, or restore them"
        )
    if service.logging_config is None:
        raise ModelConfigError(
            f"model {name!r}: feature service {name!r} has no logging_config; serving logs "
            "every served vector (LoggingConfig(destination=TiDBLoggingDestination(...)))"
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    from feast import FeatureStore

    settings = settings or Settings()
    store = FeatureStore(repo_path=str(settings.feature_repo))
    models = {
        name: scoring.load(settings.models_dir / name / "current.json") for name in settings.models
    }
    reader = OnlineReader(store)
    for name, model in models.items():
        _check_model(store, name, model)
    entity_models = {name: schemas.entity_model(store, name) for name in settings.models}
    for name in settings.models:
        reader.supported(name)  # resolve the read plan now, not in a request

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.logger = ServedFeatureLogger(
            str(settings.feature_repo), settings.log_flush_seconds, settings.log_queue_rows
        )
        app.state.logger.start()
        app.state.broker = (
            Broker(settings.broker_url, settings.broker_timeout_seconds)
            if settings.broker_url
            else None
        )
        try:
            yield
        finally:
            app.state.logger.stop()
            if app.state.broker is not None:
                await app.state.broker.close()

    app = FastAPI(
        title="Fraud feature platform: inference",
        description="Scores models from their Feast feature services; every served vector is "
        "logged. Every route but /healthz and /readyz needs an API key (Bearer).",
        lifespan=lifespan,
    )
    state = app.state
    state.settings = settings
    state.store = store
    state.features = FeatureClient(store)
    state.reader = reader
    state.models = models
    state.model_views = {name: sorted(served_views(store, [name])) for name in settings.models}
    state.served_views = served_views(store, settings.models)
    state.keys = key_index(settings.api_keys)
    state.metrics = Metrics()
    state.known_users = KnownUsers(reader, settings.read_deadline_ms / 1000)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        parts = request.url.path.split("/")
        route = parts[2] if len(parts) > 2 else ""
        state.metrics.errors.labels(route, "validation").inc()
        if route == "events" and len(parts) > 3 and parts[3] in KINDS:
            body = exc.body if isinstance(exc.body, dict) else {}
            sent = body.get("events")
            count = len(sent) if isinstance(sent, list) else 1
            state.metrics.ingest_refused.labels(parts[3], "invalid").inc(count)
        return JSONResponse(status_code=422, content={"detail": jsonable_encoder(exc.errors())})

    app.include_router(health.router)
    app.include_router(predict.router(entity_models))
    app.include_router(push.router(_push_sources(store)))
    app.include_router(events.router())
    return app
