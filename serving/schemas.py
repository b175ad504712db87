"""Request and response schemas. A model's request schema is derived from its feature service:
the join keys of its views and the fields of its on-demand views' request sources, typed by
their Feast types, constrained by their `request.*` tags. Adding a model is a feature service
and an artefact; nothing here names one.

Tags read on an entity (for its join key) or on a request source's field:
    request.ge, request.gt, request.le, request.lt   numeric bounds
    request.min_length, request.max_length            string length
    request.pattern                                   a regular expression a string matches
    request.format: ip                                an IPv4 or IPv6 address
    request.description                               the OpenAPI description

Types are strict (a JSON `false` is not a 0, a string is not a number), strings must be valid
UTF-8 (a lone surrogate escape would fail later, in the log writer or TiDB), and timestamps must
lie between 2000 and five minutes from now, so a value TiDB cannot store is a 422, not a 500.
The JSON schema cannot say the last two; they are the only checks it does not describe.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    create_model,
)

MAX_BATCH = 100
MAX_EVENTS = 1000
_BOUNDS = ("ge", "gt", "le", "lt")
_LENGTHS = ("min_length", "max_length")


class SchemaError(ValueError):
    """A feature service (or push source) whose request schema cannot be derived."""


def _ip(value: str) -> str:
    ipaddress.ip_address(value)  # ValueError -> a 422 naming the field
    return value


def _utf8(value: str) -> str:
    value.encode("utf-8")  # UnicodeEncodeError (a ValueError) on a lone surrogate
    return value


def _storable(value: dt.datetime) -> dt.datetime:
    now = dt.datetime.now(dt.UTC)
    if value.year < 2000 or value > now + MAX_CLOCK_SKEW:
        raise ValueError("must be after 2000 and at most 5 minutes in the future")
    return value


def _integral(value: Any) -> Any:
    """JSON Schema counts 1.0 as an integer; so does this (1.5, "1" and true stay refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Text = Annotated[StrictStr, AfterValidator(_utf8)]
JsonInt = Annotated[StrictInt, BeforeValidator(_integral)]
# Python's JSON parser reads Infinity and NaN: refused, they would be scored or stored as numbers
Number = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Timestamp = Annotated[AwareDatetime, AfterValidator(_storable)]
MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
# JSON numbers are doubles for many clients (and for schemathesis): integers are bounded to the
# range a double holds exactly.
MAX_JSON_INT = 2**53 - 1
IP_SCHEMA = {"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]}


def python_type(dtype: Any) -> Any:
    """The Python type of a Feast type, for request validation and the OpenAPI schema."""
    from feast.types import Array, Bool, Float32, Float64, Int32, Int64, String, UnixTimestamp

    types: dict[Any, Any] = {
        String: Text,
        Float64: Number,
        Float32: Number,
        Int64: JsonInt,
        Int32: JsonInt,
        Bool: StrictBool,
        UnixTimestamp: Timestamp,
        Array(String): list[Text],
        Array(Int64): list[JsonInt],
        Array(Float64): list[Number],
    }
    if dtype not in types:
        raise SchemaError(f"no request type for Feast type {dtype}")
    return types[dtype]


def _field(py_type: Any, tags: dict[str, str], where: str, default: Any = ...) -> tuple[Any, Any]:
    """(annotation, FieldInfo) of a request field (required without a default), with its
    `request.*` constraints."""
    options: dict[str, Any] = {}
    for name, raw in (tags or {}).items():
        if not name.startswith("request."):
            continue
        key = name.removeprefix("request.")
        try:
            if key in _BOUNDS:
                options[key] = float(raw) if py_type is Number else int(raw)
            elif key in _LENGTHS:
                options[key] = int(raw)
            elif key == "pattern":
                options["pattern"] = raw
            elif key == "description":
                options["description"] = raw
            elif key == "format" and raw == "ip":
                py_type = Annotated[py_type, AfterValidator(_ip)]
                options["json_schema_extra"] = IP_SCHEMA
            else:
                raise SchemaError(f"{where}: unknown request tag {name}={raw!r}")
        except ValueError as exc:
            raise SchemaError(f"{where}: tag {name}={raw!r} is not a number") from exc
    if py_type is JsonInt:  # within the JSON-safe range unless the tags narrow it
        options.setdefault("ge", -MAX_JSON_INT)
        options["le"] = min(options.get("le", MAX_JSON_INT), MAX_JSON_INT)
    description = options.pop("description", None)
    # The constraints go on the type, so that an optional field's schema keeps them too.
    constrained = Annotated[py_type, Field(**options)] if options else py_type
    if default is not ...:
        constrained = constrained | None
    return constrained, Field(default, description=description)


def _name(text: str) -> str:
    return "".join(part.capitalize() for part in text.replace("-", "_").split("_"))


def entity_model(store: Any, service_name: str) -> type[BaseModel]:
    """One entity row of a model's request: the service's join keys and request-source fields."""
    from feast.on_demand_feature_view import OnDemandFeatureView

    from serving.features import any_view

    service = store.get_feature_service(service_name)
    fields: dict[str, Any] = {}
    entities = {e.join_key: e for e in store.list_entities()}
    for projection in service.feature_view_projections:
        view = any_view(store, projection.name)
        if view is None:
            raise SchemaError(f"{service_name}: view {projection.name} is not in the registry")
        if isinstance(view, OnDemandFeatureView):
            for source in view.source_request_sources.values():
                for f in source.schema:
                    where = f"{service_name}: request source {source.name}, field {f.name}"
                    fields[f.name] = _field(python_type(f.dtype), f.tags, where)
            # the views it reads are keyed by join keys the request must carry too
            for source_projection in view.source_feature_view_projections.values():
                source_view = any_view(store, source_projection.name)
                if source_view is None:
                    raise SchemaError(
                        f"{service_name}: view {source_projection.name} is not in the registry"
                    )
                fields.update(_join_keys(source_view, source_projection, entities, service_name))
            continue
        fields.update(_join_keys(view, projection, entities, service_name))
    if not fields:
        raise SchemaError(f"{service_name}: the service has no join key and no request field")
    return create_model(
        f"{_name(service_name)}Entity", __config__=ConfigDict(extra="forbid"), **fields
    )


def _join_keys(view: Any, projection: Any, entities: dict, service_name: str) -> dict[str, Any]:
    fields = {}
    join_map = projection.join_key_map or {}
    for column in view.entity_columns:
        name = join_map.get(column.name, column.name)
        entity = entities.get(column.name)
        tags = {**(entity.tags if entity else {}), **(column.tags or {})}
        if entity is not None and entity.description and "request.description" not in tags:
            tags["request.description"] = entity.description
        fields[name] = _field(python_type(column.dtype), tags, f"{service_name}: join key {name}")
    return fields


def predict_request(service_name: str, entity: type[BaseModel]) -> type[BaseModel]:
    return create_model(
        f"{_name(service_name)}Request",
        __config__=ConfigDict(extra="forbid"),
        entities=(list[entity], Field(..., min_length=1, max_length=MAX_BATCH)),  # type: ignore[valid-type]
    )


def push_event(store: Any, source: str) -> type[BaseModel]:
    """One event of a push source: its timestamp, and the join keys and features of the views
    that read it. A feature left out is pushed as null: a push replaces the key's whole row, as
    Feast's push does."""
    push = store.get_data_source(source)
    fields: dict[str, Any] = {push.batch_source.timestamp_field: (Timestamp, ...)}
    entities = {e.join_key: e for e in store.list_entities()}
    for view in store.list_feature_views():
        stream = getattr(view, "stream_source", None)
        if stream is None or stream.name != source:
            continue
        for column in view.entity_columns:
            entity = entities.get(column.name)
            tags = {**(entity.tags if entity else {}), **(column.tags or {})}
            where = f"push source {source}: join key {column.name}"
            fields[column.name] = _field(python_type(column.dtype), tags, where)
        for feature in view.features:
            where = f"push source {source}: field {feature.name}"
            fields[feature.name] = _field(python_type(feature.dtype), feature.tags, where, None)
    return create_model(f"{_name(source)}Event", __config__=ConfigDict(extra="forbid"), **fields)


def events_request(name: str, event: type[BaseModel]) -> type[BaseModel]:
    return create_model(
        f"{_name(name)}Events",
        __config__=ConfigDict(extra="forbid"),
        events=(list[event], Field(..., min_length=1, max_length=MAX_EVENTS)),  # type: ignore[valid-type]
    )


class Problem(BaseModel):
    detail: str


class ServedValue(BaseModel):
    value: Any = Field(description="null when missing (unknown entity, no value, NaN)")
    age_seconds: float | None = Field(
        description="Since the pipeline last vouched for the value; null when computed now or missing"
    )
    stale: bool = Field(description="Older than the view's freshness budget")
    status: Literal["PRESENT", "NOT_FOUND", "NULL_VALUE", "OUTSIDE_MAX_AGE"]


class Prediction(BaseModel):
    request_id: str = Field(description="Also the served-feature log's request id")
    entity: dict[str, Any]
    score: float = Field(ge=0, le=1)
    decision: bool = Field(description="score >= the model's threshold")
    missing_features: list[str]
    features: dict[str, ServedValue]


class PredictResponse(BaseModel):
    model: str
    model_version: str
    threshold: float
    predictions: list[Prediction]


class PushResponse(BaseModel):
    written: int
    erased: int = Field(0, description="Rows of erased subjects: dropped, not written")
    at: str


class IngestResponse(BaseModel):
    accepted: int
    repeated: int = Field(description="Appended before (a retry): not appended again")
    erased: int = Field(0, description="Events of erased subjects: dropped, not appended")
    stream: str
    ids: list[str] = Field(description="Per event, its entry id; empty when not appended")
    broker_ms: float


class Ready(BaseModel):
    status: Literal["ready", "unavailable"]
    reason: str | None = None


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error answers of a route."""
    described = {
        400: "The body could not be read (not UTF-8)",
        401: "No API key, or an unknown one",
        403: "The key lacks this route's scope",
        404: "No such model, source or event kind",
        503: "A dependency did not answer in time, or the online store is not loaded; retry",
    }
    return {code: {"model": Problem, "description": described[code]} for code in codes}
