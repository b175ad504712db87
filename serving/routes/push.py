"""POST /v1/push/{source}: features pushed to a Feast push source, acknowledged only after Feast
wrote them online and offline. One route per push source in the registry, its event schema
derived from the views that read the source (serving/schemas.py)."""

# No `from __future__ import annotations`: the body's type is a model built at start.
import asyncio
import datetime as dt

import pandas as pd
from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from serving.routes import add_not_served, add_operation
from serving.routes.predict import _online_store_down
from serving.schemas import PushResponse, events_request


async def push(source: str, events: list[BaseModel], request: Request) -> PushResponse:
    import time

    from feast.data_source import PushMode

    from providers.erasure import SUBJECT_KEY, MirrorMissing, erased_among_async

    started = time.perf_counter()
    state = request.app.state
    frame = pd.DataFrame([e.model_dump() for e in events])
    deadline = state.settings.push_deadline_ms
    erased = 0
    try:
        # Feast's push is synchronous: the thread may outlive the deadline, the answer does not
        # (and a push is idempotent per key and event time: the client retries it).
        async with asyncio.timeout(deadline / 1000):
            if SUBJECT_KEY in frame.columns:  # erased subjects are never written again
                client = await state.reader._redis()
                gone = await erased_among_async(
                    client, state.store.project, frame[SUBJECT_KEY].tolist()
                )
                if gone:
                    frame = frame[~frame[SUBJECT_KEY].isin(gone)].reset_index(drop=True)
                    erased = len(events) - len(frame)
                    state.metrics.erased_dropped.labels(f"push_{source}").inc(erased)
            if len(frame):
                await run_in_threadpool(
                    state.store.push, source, frame, to=PushMode.ONLINE_AND_OFFLINE
                )
    except MirrorMissing as exc:  # cannot tell who is erased: write nothing (retry)
        state.metrics.errors.labels("push", "erased_list_unavailable").inc()
        raise HTTPException(
            503, "The list of erased subjects is not loaded yet; retry shortly."
        ) from exc
    except TimeoutError as exc:
        state.metrics.errors.labels("push", "deadline").inc()
        raise HTTPException(503, f"The push did not complete in {deadline:g} ms; retry.") from exc
    except Exception as exc:
        if _online_store_down(exc):
            state.metrics.errors.labels("push", "online_store_unavailable").inc()
            raise HTTPException(503, "The online store is unavailable; retry shortly.") from exc
        raise
    state.metrics.latency.labels("push", source).observe(time.perf_counter() - started)
    return PushResponse(written=len(frame), erased=erased, at=dt.datetime.now(dt.UTC).isoformat())


def _endpoint(source: str, body_model: type[BaseModel]):
    async def endpoint(body, request: Request) -> PushResponse:
        return await push(source, body.events, request)

    endpoint.__annotations__ = {"body": body_model, "request": Request, "return": PushResponse}
    return endpoint


def router(event_models: dict[str, type[BaseModel]]) -> APIRouter:
    routes = APIRouter(tags=["push"])
    for source, event in event_models.items():
        endpoint = _endpoint(source, events_request(f"{source}_push", event))
        summary = f"Push features to {source}"
        add_operation(
            routes,
            f"/v1/push/{source}",
            endpoint,
            "ingest",
            PushResponse,
            f"push_{source}",
            summary,
        )
    add_not_served(routes, "/v1/push/{source}", "ingest", "push source", lambda _: event_models)
    return routes
