"""API keys for tests that start serving: one per scope, and one with every scope."""

from __future__ import annotations

from serving.keys import digest

SCOPED = {
    "all": ("predict", "ingest", "admin"),
    "predict": ("predict",),
    "ingest": ("ingest",),
    "admin": ("admin",),
}
KEYS = {name: f"test-key-{name}-0123456789abcdef" for name in SCOPED}


def api_keys() -> dict[str, dict]:
    """The SERVING_API_KEYS setting holding every test key."""
    return {name: {"sha256": digest(KEYS[name]), "scopes": list(s)} for name, s in SCOPED.items()}


def headers(name: str = "all") -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[name]}"}
