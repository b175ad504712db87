"""Serving settings, from the environment (prefix SERVING_), validated once at start."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent

Scope = Literal["predict", "ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("predict", "ingest", "admin")


class ApiKey(BaseModel):
    """One client's key, stored as its SHA-256 (the settings never hold a usable secret), and
    what it may do: `predict` (score), `ingest` (push features, append events), `admin`
    (metrics). No scope implies another."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str = Field(description="hex SHA-256 of the key: `python -m serving.keys hash`")
    scopes: frozenset[Scope] = Field(min_length=1)

    @field_validator("sha256")
    @classmethod
    def _hex(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be the 64 lowercase hex digits of a SHA-256")
        return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="forbid")

    feature_repo: Path = Field(
        ROOT / "feature_repo", description="Feast repo (feature_store.yaml)."
    )
    models_dir: Path = Field(
        ROOT / "artifacts" / "models", description="<model>/current.json artefacts."
    )
    models: list[str] = Field(
        ["account_takeover", "withdrawal_fraud"],
        min_length=1,
        description="Models to serve; each is a feature service of that name plus an artefact.",
    )
    api_keys: dict[str, ApiKey] = Field(
        default_factory=dict,
        description='Client name -> {"sha256": ..., "scopes": [...]}, as JSON. '
        "Or SERVING_API_KEYS_FILE: a file holding the same JSON (a mounted Secret).",
    )
    api_keys_file: Path | None = Field(None, description="JSON file of API keys (see api_keys).")
    read_deadline_ms: float = Field(
        100.0,
        gt=0,
        le=10_000,
        description="Longest wait for the online store in a request, then 503.",
    )
    push_deadline_ms: float = Field(
        2000.0,
        gt=0,
        le=60_000,
        description="Longest wait for a push (online and offline write), then 503.",
    )
    log_flush_seconds: float = Field(
        1.0, gt=0, le=60, description="Served-feature log flush interval."
    )
    log_queue_rows: int = Field(
        100_000, gt=0, description="Rows buffered before requests wait for the log."
    )
    broker_url: str | None = Field(
        None,
        validation_alias=AliasChoices("SERVING_BROKER_URL", "BROKER_URL"),
        description="Event broker (Redis Streams) for /v1/events; unset: ingest answers 503.",
    )
    broker_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="Longest wait for the broker before ingest answers 503."
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes.")
    access_log: bool = Field(True, description="uvicorn's per-request access log.")

    @model_validator(mode="after")
    def _keys(self) -> Settings:
        """Closed by default: with no key configured the server does not start."""
        if self.api_keys_file is not None:
            try:
                loaded = json.loads(self.api_keys_file.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"api_keys_file {self.api_keys_file}: {exc}") from exc
            if not isinstance(loaded, dict):
                raise ValueError(f"api_keys_file {self.api_keys_file}: not a JSON object")
            keys = {name: ApiKey.model_validate(key) for name, key in loaded.items()}
            self.api_keys = {**keys, **self.api_keys}
        if not self.api_keys:
            raise ValueError(
                "no API key is configured: set SERVING_API_KEYS (JSON) or SERVING_API_KEYS_FILE; "
                "`python -m serving.keys new --name NAME --scopes predict` makes one"
            )
        hashes = [key.sha256 for key in self.api_keys.values()]
        if len(set(hashes)) != len(hashes):
            raise ValueError("two API key entries have the same key")
        return self
