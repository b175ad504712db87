"""Request dependencies: who is calling (API keys with scopes) and the app's shared state.

A client sends `Authorization: Bearer <key>`. The key's SHA-256 is looked up among the
configured ones (serving/settings.py); no key or an unknown one is a 401, a key without the
route's scope a 403. Every route but /healthz, /readyz and the API description requires a key.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from serving.settings import Scope

bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `python -m serving.keys new`, as `Authorization: Bearer <key>`.",
)


class Principal:
    __slots__ = ("name", "scopes")

    def __init__(self, name: str, scopes: frozenset[str]):
        self.name = name
        self.scopes = scopes


def key_index(api_keys: dict[str, Any]) -> dict[str, Principal]:
    """SHA-256 -> the principal, built once at start."""
    return {key.sha256: Principal(name, key.scopes) for name, key in api_keys.items()}


def require(scope: Scope):
    """A dependency that admits a request whose key carries `scope`."""

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        state = request.app.state
        if credentials is None or not credentials.credentials:
            state.metrics.denied.labels("401").inc()
            raise HTTPException(
                401, "An API key is required: Authorization: Bearer <key>.", _CHALLENGE
            )
        digest = hashlib.sha256(credentials.credentials.encode("utf-8")).hexdigest()
        principal = state.keys.get(digest)
        if principal is None:
            state.metrics.denied.labels("401").inc()
            raise HTTPException(401, "Unknown API key.", _CHALLENGE)
        if scope not in principal.scopes:
            state.metrics.denied.labels("403").inc()
            raise HTTPException(403, f"The key {principal.name!r} lacks the {scope!r} scope.")
        return principal

    return check


_CHALLENGE = {"WWW-Authenticate": "Bearer"}
