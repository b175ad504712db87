"""POST /v1/models/{model}/predict: features through Feast for the model's feature service,
score, log. One route per served model, its body schema derived from the feature service
(serving/schemas.py), so the API description names every model's fields.

The feature read has a deadline (SERVING_READ_DEADLINE_MS): an online store that is down or
slow is a 503 within it, never a hang. A store that lost its data is a 503 too (NotLoaded).
"""

# No `from __future__ import annotations`: FastAPI reads the body's type from the endpoint's
# annotation, which is a model built at start.
import asyncio
import logging
import math
import time
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from serving.feature_log import served_records
from serving.features import NotLoaded, OnlineReader
from serving.routes import add_not_served, add_operation
from serving.schemas import PredictResponse, predict_request

log = logging.getLogger(__name__)


def _json_value(value: Any) -> Any:
    """JSON has no NaN or infinity: such a value (e.g. a ratio with no history) is served as null.
    NumPy scalars become Python ones."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _online_store_down(exc: Exception) -> bool:
    import redis

    return isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError)


async def _read(state, model: str, rows: list[dict[str, Any]]):
    """The service's features: one Redis round trip when the reader can, else Feast's own read."""
    reader: OnlineReader = state.reader
    if not reader.supported(model):
        # Feast's own read: the load markers are checked first, in their own round trip
        await reader.check_loaded(state.model_views[model])
        served, _ = await run_in_threadpool(state.features.fetch, model, rows)
        return served
    if reader.due(model):  # the registry may have changed: re-resolve off the request path
        asyncio.get_running_loop().run_in_executor(None, reader.refresh_if_due, model)
    return await reader.fetch(model, rows)


async def predict(model: str, entities: list[BaseModel], request: Request) -> JSONResponse:
    started = time.perf_counter()
    state = request.app.state
    metrics = state.metrics
    rows = [e.model_dump() for e in entities]
    echoed = [e.model_dump(mode="json") for e in entities]  # a timestamp field, as sent
    try:
        async with asyncio.timeout(state.settings.read_deadline_ms / 1000):
            served = await _read(state, model, rows)
    except TimeoutError as exc:
        metrics.errors.labels("predict", "online_store_deadline").inc()
        raise HTTPException(
            503, f"The online store did not answer in {state.settings.read_deadline_ms:g} ms."
        ) from exc
    except NotLoaded as exc:
        metrics.errors.labels("predict", "online_store_not_loaded").inc()
        raise HTTPException(503, str(exc)) from exc
    except Exception as exc:
        if _online_store_down(exc):
            metrics.errors.labels("predict", "online_store_unavailable").inc()
            raise HTTPException(503, "The online store is unavailable; retry shortly.") from exc
        raise
    artefact = state.models[model]
    request_ids = [str(uuid.uuid4()) for _ in rows]
    predictions = []
    scores = artefact.score_many([{n: f.value for n, f in features.items()} for features in served])
    for row, features, request_id, score in zip(echoed, served, request_ids, scores, strict=True):
        for name, f in features.items():
            if f.stale:
                metrics.stale.labels(model, name).inc()
        predictions.append(
            {
                "request_id": request_id,
                "entity": row,
                "score": score,
                "decision": score >= artefact.threshold,
                "missing_features": sorted(n for n, f in features.items() if f.status != "PRESENT"),
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


def router(entity_models: dict[str, type[BaseModel]]) -> APIRouter:
    """A route per model (its request schema), then one answering 404 for any other name."""
    routes = APIRouter(tags=["predict"])
    for name, entity in entity_models.items():
        endpoint = _endpoint(name, predict_request(name, entity))
        path = f"/v1/models/{name}/predict"
        add_operation(
            routes,
            path,
            endpoint,
            "predict",
            PredictResponse,
            f"predict_{name}",
            f"Score with {name}",
        )
    add_not_served(
        routes, "/v1/models/{model}/predict", "predict", "model", lambda r: r.app.state.models
    )
    return routes


def _endpoint(name: str, body_model: type[BaseModel]):
    async def endpoint(body, request: Request) -> JSONResponse:
        return await predict(name, body.entities, request)

    endpoint.__annotations__ = {"body": body_model, "request": Request, "return": JSONResponse}
    return endpoint
