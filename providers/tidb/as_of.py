"""Pin training sets to a knowledge time, through Feast's own `get_historical_features`.

    from providers.tidb import as_of

    with as_of("2026-03-01T00:00:00Z"):
        training = store.get_historical_features(entity_df=..., features=...).to_df()

Inside the block, feature rows that became known after the knowledge time are invisible: rows
whose `created_timestamp_column` is later, or, where a row has no created timestamp (no such
column, or NULL in it), whose event time is later: such a row counts as known from its event
time. Entity rows built from a time range (no entity dataframe) come only from rows known by
then. Feature jobs stamp every row with `created_ts`, and re-runs append new versions, so the
same knowledge time rebuilds the same training set after any number of later backfills. The job
built inside the block remembers its knowledge time (`job.as_of`) and keeps it when it runs
later, outside the block.

Where the pin applies:
- in the thread that entered the block (and in code run with `contextvars.copy_context()`);
- in processes started while the block is open (`subprocess`, `multiprocessing` with spawn or
  fork): the pin is exported as `FEAST_TIDB_AS_OF` in the environment they inherit. The
  environment is the process's, so this holds for processes any thread starts meanwhile; worker
  processes started before the block (a `Pool`) do not see it: enter `as_of` in the worker;
- in another thread of the same process, a retrieval while a block is open fails with
  `AsOfNotInContext` instead of silently reading everything known now. Enter `as_of` in that
  thread, or `as_of(None)` to state that it reads unpinned on purpose.

This is plain SQL on `created_ts`, so it works on TiDB, MySQL and MariaDB alike and has no
snapshot-retention window (TiDB's `AS OF TIMESTAMP` stale reads only reach back as far as the GC
life time, ten minutes by default).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar

import pandas as pd

from providers.tidb.errors import AsOfNotInContext

ENV = "FEAST_TIDB_AS_OF"
_UNPINNED = "unpinned"  # as_of(None): this context reads what is known now, on purpose
_CONFLICT = "conflict"  # blocks with different pins are open in the exporting process

_KNOWLEDGE_TIME: ContextVar[dt.datetime | str | None] = ContextVar("tidb_as_of", default=None)
_lock = threading.Lock()
_open: dict[int, dt.datetime] = {}  # this process's open blocks (by id of a token) -> pin
_saved: str | None = None  # the variable as it was when the first open block began


def to_utc(value: dt.datetime | str | pd.Timestamp) -> dt.datetime:
    """A tz-aware UTC datetime from a datetime (naive means UTC) or an ISO 8601 string."""
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.to_pydatetime()


def _export() -> None:
    """The environment child processes inherit: the one pin of the open blocks, or, once none
    is open, the variable as it was before the first."""
    pins = set(_open.values())
    if not pins:
        if _saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = _saved
    elif len(pins) == 1:
        os.environ[ENV] = next(iter(pins)).isoformat()
    else:
        os.environ[ENV] = _CONFLICT


@contextlib.contextmanager
def as_of(knowledge_time: dt.datetime | str | pd.Timestamp | None) -> Iterator[dt.datetime | None]:
    """Within the block, historical retrieval sees only what was known at `knowledge_time`
    (None: what is known now, stated on purpose)."""
    if knowledge_time is None:
        token = _KNOWLEDGE_TIME.set(_UNPINNED)
        try:
            yield None
        finally:
            _KNOWLEDGE_TIME.reset(token)
        return
    try:
        pinned = to_utc(knowledge_time)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"as_of needs a timestamp, got {knowledge_time!r}: {exc}") from exc
    global _saved
    token = _KNOWLEDGE_TIME.set(pinned)
    key = object()
    with _lock:
        if not _open:
            _saved = os.environ.get(ENV)
        _open[id(key)] = pinned
        _export()
    try:
        yield pinned
    finally:
        _KNOWLEDGE_TIME.reset(token)
        with _lock:
            del _open[id(key)]
            _export()


def current() -> dt.datetime | None:
    """The knowledge time in force, or None (everything known now).

    Raises `AsOfNotInContext` where a pin should hold but cannot be told: in a thread of a process
    with an open `as_of` block that the thread did not enter, and in a process started while
    blocks with different pins were open.
    """
    value = _KNOWLEDGE_TIME.get()
    if value == _UNPINNED:
        return None
    if isinstance(value, dt.datetime):
        return value
    with _lock:
        elsewhere = sorted({p.isoformat() for p in _open.values()})
    if elsewhere:
        raise AsOfNotInContext(
            f"as_of({', '.join(elsewhere)}) is open in another thread of this process, but this "
            "retrieval runs in a thread that did not enter it, so it would not be pinned. Enter "
            "as_of in this thread (or run it with contextvars.copy_context().run), or use "
            "as_of(None) to read what is known now on purpose."
        )
    exported = os.environ.get(ENV)
    if not exported:
        return None
    if exported == _CONFLICT:
        raise AsOfNotInContext(
            "This process was started while as_of blocks with different knowledge times were "
            "open, so its pin is ambiguous. Enter as_of in this process."
        )
    try:
        return to_utc(exported)
    except (ValueError, TypeError) as exc:
        raise AsOfNotInContext(f"{ENV}={exported!r} is not a timestamp: {exc}") from exc
