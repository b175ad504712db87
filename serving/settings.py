"""Serving settings, from the environment (prefix SERVING_), validated once at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SERVING_", extra="forbid")

    feature_repo: Path = Field(
        ROOT / "feature_repo", description="Feast repo (feature_store.yaml)."
    )
    models_dir: Path = Field(
        ROOT / "artifacts" / "models", description="<model>/current.json artefacts."
    )
    models: list[str] = Field(
        ["account_takeover", "withdrawal_fraud"], description="Models to load."
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
