"""POST /v1/events/{kind}: business events (login, transaction, withdrawal) to the broker,
acknowledged once the broker holds them (serving/broker.py says how). One route per kind."""

# No `from __future__ import annotations`: the body's type is a model built at start.
import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from providers.events import KINDS, encode
from serving.broker import Broker
from serving.routes import add_not_served, add_operation
from serving.schemas import IngestResponse, events_request

log = logging.getLogger(__name__)


async def ingest(kind: str, events: list[Any], request: Request) -> IngestResponse:
    import redis

    state = request.app.state
    metrics = state.metrics
    event_kind = KINDS[kind]
    broker: Broker | None = state.broker
    if broker is None:
        raise HTTPException(503, "No event broker is configured (SERVING_BROKER_URL).")
    started = time.perf_counter()
    gone = await state.known_users.erased([e.user_id for e in events])
    kept = [e for e in events if e.user_id not in gone]
    erased = len(events) - len(kept)
    if erased:
        metrics.erased_dropped.labels(f"ingest_{kind}").inc(erased)
    try:
        appended = (
            await broker.append(event_kind.stream, [(e.event_id, encode(e)) for e in kept])
            if kept
            else []
        )
    except (redis.exceptions.RedisError, OSError) as exc:
        metrics.ingest_refused.labels(kind, "broker_unavailable").inc(len(events))
        log.warning("broker unavailable: %s", exc)
        raise HTTPException(
            503, "The event broker is unavailable; retry with the same event ids."
        ) from exc
    repeated = sum(1 for i in appended if not i)
    metrics.ingest_accepted.labels(kind).inc(len(kept) - repeated)
    unknown = await state.known_users.count_unknown([e.user_id for e in kept]) if kept else 0
    if unknown:
        metrics.ingest_unknown_users.labels(kind).inc(unknown)
    by_event = iter(appended)
    ids = ["" if e.user_id in gone else next(by_event) for e in events]
    return IngestResponse(
        accepted=len(kept) - repeated,
        repeated=repeated,
        erased=erased,
        stream=event_kind.stream,
        ids=ids,
        broker_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def _endpoint(kind: str, body_model: type[BaseModel]):
    async def endpoint(body, request: Request) -> IngestResponse:
        return await ingest(kind, body.events, request)

    endpoint.__annotations__ = {"body": body_model, "request": Request, "return": IngestResponse}
    return endpoint


def router() -> APIRouter:
    routes = APIRouter(tags=["events"])
    for kind, event_kind in KINDS.items():
        endpoint = _endpoint(kind, events_request(f"{kind}_ingest", event_kind.model))
        summary = f"Append {kind} events to the broker"
        add_operation(
            routes,
            f"/v1/events/{kind}",
            endpoint,
            "ingest",
            IngestResponse,
            f"ingest_{kind}",
            summary,
        )
    add_not_served(routes, "/v1/events/{kind}", "ingest", "event kind", lambda _: KINDS)
    return routes
