"""Shared by the exact-answer tests: collations, entities, a store with the engine, helpers."""

from __future__ import annotations

import pandas as pd
import pytest
from feast import Entity, FeatureStore, ValueType
from feast.repo_config import MaterializationConfig, RegistryConfig, RepoConfig

from tests.conftest import COLLATIONS

T0 = pd.Timestamp("2026-01-10 00:00:00")
UTC_T0 = T0.tz_localize("UTC")
ENGINE = {"type": "providers.tidb.materialization.TiDBRedisEngine", "processes": 1}
ACCOUNT = Entity(name="account", join_keys=["acct"], value_type=ValueType.STRING)
USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)


@pytest.fixture(params=list(COLLATIONS), ids=list(COLLATIONS))
def database_charset(request) -> str:
    """A module that imports this runs each test in a database of each collation."""
    return COLLATIONS[request.param]


def ints(values) -> list[int | None]:
    """Integers with None for missing (pandas gives float NaN or NA for a column with nulls)."""
    return [None if pd.isna(v) else int(v) for v in values]


def exact_store(repo_config, *objects, engine: bool = False) -> FeatureStore:
    config = RepoConfig(
        project=repo_config.project,
        provider="local",
        registry=RegistryConfig(path=str(repo_config.repo_path / "r.db"), cache_ttl_seconds=0),
        offline_store=repo_config.offline_store,
        online_store=repo_config.online_store,
        entity_key_serialization_version=3,
        repo_path=repo_config.repo_path,
        materialization=MaterializationConfig(pull_latest_features=True),
        **({"batch_engine": ENGINE} if engine else {}),
    )
    feature_store = FeatureStore(config=config)
    feature_store.apply(list(objects))
    return feature_store


def view(
    name: str,
    table: str,
    entity: Entity = USER,
    schema: list | None = None,
    ttl=None,
    created: str | None = None,
    **source_options,
):
    """A view over `table` keyed by `entity` (default one Int64 feature `n`), no TTL."""
    from feast import FeatureView, Field
    from feast.types import Int64

    from providers.tidb import TiDBSource

    return FeatureView(
        name=name,
        entities=[entity],
        ttl=ttl,
        schema=schema or [Field(name="n", dtype=Int64)],
        source=TiDBSource(
            name=f"{name}_src",
            table=table,
            timestamp_field="event_ts",
            created_timestamp_column=created or "",
            **source_options,
        ),
        online=True,
    )
