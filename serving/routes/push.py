"""POST /v1/push/{source}: features pushed to a Feast push source, acknowledged only after Feast
wrote them online and offline. One route per push source in the registry, its event schema
derived from the views that read the source (serving/schemas.py)."""

# No `from __future__ import annotations`: the body's type is a model built at start.
import asyncio
import datetime as dt

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from serving.deps import require
from serving.routes.predict import _online_store_down
from serving.schemas import Problem, PushResponse, events_request, responses


async def push(source: str, events: list[BaseModel], request: Request) -> PushResponse:
    import time

    from feast.data_source import PushMode

    started = time.perf_counter()
    state = request.app.state
    frame = pd.DataFrame([e.model_dump() for e in events])
    deadline = state.settings.push_deadline_ms
    try:
        # Feast's push is synchronous: the thread may outlive the deadline, the answer does not
        # (and a push is idempotent per key and event time: the client retries it).
        async with asyncio.timeout(deadline / 1000):
            await run_in_threadpool(state.store.push, source, frame, to=PushMode.ONLINE_AND_OFFLINE)
    except TimeoutError as exc:
        state.metrics.errors.labels("push", "deadline").inc()
        raise HTTPException(503, f"The push did not complete in {deadline:g} ms; retry.") from exc
    except Exception as exc:
        if _online_store_down(exc):
            state.metrics.errors.labels("push", "online_store_unavailable").inc()
            raise HTTPException(503, "The online store is unavailable; retry shortly.") from exc
        raise
    state.metrics.latency.labels("push", source).observe(time.perf_counter() - started)
    return PushResponse(written=len(events), at=dt.datetime.now(dt.UTC).isoformat())


def _endpoint(source: str, body_model: type[BaseModel]):
    async def endpoint(body, request: Request) -> PushResponse:
        return await push(source, body.events, request)

    endpoint.__annotations__ = {"body": body_model, "request": Request, "return": PushResponse}
    return endpoint


def router(event_models: dict[str, type[BaseModel]]) -> APIRouter:
    routes = APIRouter(tags=["push"])
    for source, event in event_models.items():
        routes.add_api_route(
            f"/v1/push/{source}",
            _endpoint(source, events_request(f"{source}_push", event)),
            methods=["POST"],
            name=f"push_{source}",
            summary=f"Push features to {source}",
            response_model=PushResponse,
            responses=responses(400, 401, 403, 503),
            dependencies=[Depends(require("ingest"))],
        )

    async def unknown(source: str) -> None:
        raise HTTPException(404, f"Unknown push source {source!r}; sources {sorted(event_models)}.")

    routes.add_api_route(
        "/v1/push/{source}",
        unknown,
        methods=["POST"],
        summary="Any other push source",
        responses={404: {"model": Problem, "description": "No such source"}, **responses(401, 403)},
        dependencies=[Depends(require("ingest"))],
        include_in_schema=False,  # not an operation: the 404 of a name that is not served
    )
    return routes
