"""Build small Feast repos (entities, views over TiDBSource tables) for tests."""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureStore, FeatureView, Field, ValueType
from feast.types import Array, Float32, Float64, Int64, String

from providers.tidb import TiDBSource

USER = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)


def user_view(
    name: str = "user_stats",
    table: str = "user_stats",
    ttl: timedelta | None = timedelta(days=1),
    created: str | None = "created_ts",
    field_mapping: dict[str, str] | None = None,
    schema: list[Field] | None = None,
) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[USER],
        ttl=ttl,
        schema=schema or [Field(name="spend", dtype=Float64), Field(name="n", dtype=Int64)],
        source=TiDBSource(
            name=f"{name}_src",
            table=table,
            timestamp_field="event_ts",
            created_timestamp_column=created or "",
            field_mapping=field_mapping,
        ),
        online=True,
    )


def store_with(repo_config, *objects) -> FeatureStore:
    store = FeatureStore(config=repo_config)
    store.apply([USER, *objects])
    return store


__all__ = [
    "USER",
    "user_view",
    "store_with",
    "Array",
    "Float32",
    "Float64",
    "Int64",
    "String",
    "Field",
]
