"""The business events the platform ingests: their schemas, their streams and their raw tables.

One module for every reader and writer of events: serving's `/ingest` route validates with these
models, the generator's replay and the stream job encode and decode with `encode`/`decode`, and the
raw-event landing writes the raw tables of `spark_jobs/schema.py` with the same columns. The feature
repo's stream sources name the streams defined here (`feature_repo/velocity_features.py`).

On the broker an event is one message: the JSON object of its model, `event_ts` as ISO-8601 UTC
with microseconds. Redis Streams carry it in one field (`e`) of a stream entry; Kafka as the
record value.

Decisions:
- `event_id` is the producer's id for the event (an idempotency key): the raw tables' primary key,
  so an event delivered twice lands once, and the tie-break of `last` aggregations.
- Money is a decimal with at most 12 integer digits and 2 decimals (the raw tables' DECIMAL(14, 2)):
  a value that would be rounded on the way in is refused, not rounded.
- An event more than `MAX_CLOCK_SKEW` in the future is refused (a producer's clock is wrong); an old
  event is accepted: it reaches the raw tables and the backfill even when the stream's watermark
  has passed it (the stream job counts it as late).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, field_validator

MAX_CLOCK_SKEW = dt.timedelta(minutes=5)
MESSAGE_FIELD = b"e"  # the Redis Streams entry field holding the JSON message

BigId = Annotated[int, Field(ge=1, le=2**63 - 1)]
Money = Annotated[Decimal, Field(max_digits=14, decimal_places=2, allow_inf_nan=False)]


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: BigId
    user_id: BigId
    event_ts: AwareDatetime

    @field_validator("event_ts")
    @classmethod
    def _not_in_the_future(cls, value: dt.datetime) -> dt.datetime:
        value = value.astimezone(dt.UTC)
        if value > dt.datetime.now(dt.UTC) + MAX_CLOCK_SKEW:
            raise ValueError(
                f"event_ts is more than {MAX_CLOCK_SKEW} in the future: check the producer's clock"
            )
        if value.year < 2000:
            raise ValueError("event_ts is before the year 2000")
        return value


class LoginEvent(_Event):
    ip: str = Field(
        min_length=2,
        max_length=45,
        json_schema_extra={"anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
    )
    device_id: str = Field(min_length=1, max_length=64)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    success: StrictBool

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return str(ipaddress.ip_address(value))  # one spelling per address


class TransactionEvent(_Event):
    merchant_id: str = Field(min_length=1, max_length=32)
    amount: Money = Field(gt=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class WithdrawalEvent(_Event):
    amount: Money = Field(gt=0)
    destination_account: str = Field(min_length=1, max_length=34)


@dataclass(frozen=True)
class EventKind:
    """One kind of event: its model, its stream (topic) and its raw table in TiDB."""

    name: str
    model: type[_Event]
    stream: str
    table: str
    id_column: str

    @property
    def columns(self) -> list[str]:
        """The raw table's columns, in the model's order (`event_id` is the table's id column)."""
        return [self.id_column if f == "event_id" else f for f in self.model.model_fields]


KINDS: dict[str, EventKind] = {
    k.name: k
    for k in (
        EventKind("login", LoginEvent, "events.login", "logins", "login_id"),
        EventKind("transaction", TransactionEvent, "events.transaction", "transactions", "txn_id"),
        EventKind(
            "withdrawal", WithdrawalEvent, "events.withdrawal", "withdrawals", "withdrawal_id"
        ),
    )
}
BY_STREAM = {k.stream: k for k in KINDS.values()}


def kind_of_stream(stream: str) -> EventKind:
    try:
        return BY_STREAM[stream]
    except KeyError:
        raise ValueError(f"unknown event stream {stream!r}; streams: {sorted(BY_STREAM)}") from None


def encode(event: _Event) -> bytes:
    """The broker message of a validated event."""
    data = event.model_dump()
    data["event_ts"] = event.event_ts.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for name, value in data.items():
        if isinstance(value, Decimal):
            data[name] = str(value)
    return json.dumps(data, separators=(",", ":")).encode("utf-8")


def decode(kind: EventKind, message: bytes | str) -> _Event:
    """A broker message back to its event (raises pydantic.ValidationError when malformed)."""
    return kind.model.model_validate_json(message)


def to_row(kind: EventKind, event: _Event) -> dict[str, Any]:
    """The raw table's row of an event (column names of spark_jobs/schema.py)."""
    data = event.model_dump()
    data[kind.id_column] = data.pop("event_id")
    data["event_ts"] = event.event_ts.astimezone(dt.UTC).replace(tzinfo=None)
    return {c: data[c] for c in kind.columns}


def from_row(kind: EventKind, row: dict[str, Any]) -> _Event:
    """The event of a raw table row (naive UTC event_ts; BOOLEAN read back as 0/1)."""
    data = dict(row)
    data["event_id"] = data.pop(kind.id_column)
    stamp = data["event_ts"]
    data["event_ts"] = stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp
    for name, spec in kind.model.model_fields.items():
        if spec.annotation is bool and data.get(name) in (0, 1):
            data[name] = bool(data[name])
    return kind.model.model_validate(data)
