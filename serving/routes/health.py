"""/healthz (the process answers), /readyz (it can serve), /metrics (Prometheus, admin scope)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import require
from serving.schemas import Ready, responses

router = APIRouter(tags=["operations"])
READY_DEADLINE_S = 2.0  # under a probe's usual 3 s timeout: a hung dependency is "not ready"


@router.get("/healthz", response_model=Ready)
async def healthz() -> Ready:
    return Ready(status="ready")


@router.get(
    "/readyz",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "Redis, the registry or the data is missing"}},
)
async def readyz(request: Request):
    """Ready when Redis answers, the registry answers, and every served view is loaded (its load
    marker is in the online store: a restarted or flushed Redis is not ready)."""
    from providers.feast_redis import loaded_key

    state = request.app.state
    store = state.store
    views = sorted(state.served_views)
    try:
        async with asyncio.timeout(READY_DEADLINE_S):
            await run_in_threadpool(store.get_feature_service, next(iter(state.models)))
            client = await state.reader._redis()
            marks = await client.hmget(loaded_key(store.project), views) if views else []
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}"[:300]
        return JSONResponse(status_code=503, content={"status": "unavailable", "reason": reason})
    missing = [v for v, mark in zip(views, marks, strict=True) if not mark]
    if missing:
        reason = f"online store not loaded for views {missing}"
        return JSONResponse(status_code=503, content={"status": "unavailable", "reason": reason})
    return Ready(status="ready")


@router.get(
    "/metrics",
    dependencies=[Depends(require("admin"))],
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
        **responses(401, 403),
    },
)
async def prometheus(request: Request) -> Response:
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
