"""Pin training sets to a knowledge time, through Feast's own `get_historical_features`.

    from providers.tidb import as_of

    with as_of("2026-03-01T00:00:00Z"):
        training = store.get_historical_features(entity_df=..., features=...).to_df()

Inside the block, feature rows that became known after the knowledge time are invisible: rows
whose `created_timestamp_column` is later (or, for views without one, whose event time is later).
Feature jobs stamp every row with `created_ts`, and re-runs append new versions, so the same
knowledge time rebuilds the same training set after any number of later backfills. The job built
inside the block remembers its knowledge time (`job.as_of`) for the training artefact.

This is plain SQL on `created_ts`, so it works on TiDB, MySQL and MariaDB alike and has no
snapshot-retention window (TiDB's `AS OF TIMESTAMP` stale reads only reach back as far as the GC
life time, ten minutes by default).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from contextvars import ContextVar

import pandas as pd

_KNOWLEDGE_TIME: ContextVar[dt.datetime | None] = ContextVar("tidb_as_of", default=None)


def to_utc(value: dt.datetime | str | pd.Timestamp) -> dt.datetime:
    """A tz-aware UTC datetime from a datetime (naive means UTC) or an ISO 8601 string."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


@contextlib.contextmanager
def as_of(knowledge_time: dt.datetime | str | pd.Timestamp) -> Iterator[dt.datetime]:
    """Within the block, historical retrieval sees only what was known at `knowledge_time`."""
    try:
        pinned = to_utc(knowledge_time)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"as_of needs a timestamp, got {knowledge_time!r}: {exc}") from exc
    token = _KNOWLEDGE_TIME.set(pinned)
    try:
        yield pinned
    finally:
        _KNOWLEDGE_TIME.reset(token)


def current() -> dt.datetime | None:
    """The knowledge time in force, or None (everything known now)."""
    return _KNOWLEDGE_TIME.get()
