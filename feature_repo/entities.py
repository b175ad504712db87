"""Entities. Feature views are keyed by entity, not by the event that triggers a model, so any
model can reuse them (DESIGN.md, "Reuse")."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="An account holder. Every feature here describes a user, whatever event is scored.",
    # Serving's request schema for the join key (serving/schemas.py): a positive integer.
    tags={"request.ge": "1"},
)
