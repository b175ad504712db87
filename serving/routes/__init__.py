"""One module per resource: health and metrics, predictions, pushed features, events.

The three POST resources are registered the same way: one operation per served name (its body
schema built at start), then one route answering 404 for any other name.
"""

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from serving.deps import require
from serving.schemas import responses
from serving.settings import Scope


def add_operation(
    routes: APIRouter,
    path: str,
    endpoint,
    scope: Scope,
    response_model: type[BaseModel],
    name: str,
    summary: str,
) -> None:
    routes.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        name=name,
        summary=summary,
        response_model=response_model,
        responses=responses(400, 401, 403, 503),
        dependencies=[Depends(require(scope))],
    )


def add_not_served(routes: APIRouter, template: str, scope: Scope, what: str, served) -> None:
    """POST `template` (one path parameter) answers 404 listing `served()`, behind the same key
    check as the served names (no key: 401 before 404). Not an operation of the API description."""
    (parameter,) = [part[1:-1] for part in template.split("/") if part.startswith("{")]

    async def not_served(request: Request) -> None:
        asked = request.path_params[parameter]
        raise HTTPException(404, f"Unknown {what} {asked!r}; serving {sorted(served(request))}.")

    routes.add_api_route(
        template,
        not_served,
        methods=["POST"],
        dependencies=[Depends(require(scope))],
        include_in_schema=False,
    )
