"""Sliding-window aggregations, computed the same way by the stream job and the backfill.

The definition (docs/velocity_features.md): an aggregation with window W and slide s cuts time
into tiles of length s (tile i covers [i*s, (i+1)*s)). Its value at instant t covers every event
with `event_ts <= t` whose tile is one of the last W/s tiles up to and including t's own:

    tile(ts) > tile(t) - W/s

so the window reaches back between W - s and W, and a new event counts from its own instant.
Values change only at change points: an event's instant (the value just after every event of that
instant) and a tile's expiry instant `(i + W/s) * s`, when the tile leaves the window. Both engines
emit one row per (key, view, change point) holding every aggregation of the view, so the value at
any instant is the latest row at or before it (a point-in-time join, Feast's own rule).

`KeyWindows` holds one key's state: finalized tiles (partial aggregates of events older than the
watermark) and the raw events not yet finalized. The stream job keeps it in Spark's state store
and calls `advance` once per micro-batch; the backfill calls it once with every event. A late
event (inside the watermark) re-emits the change points from its instant on: newer versions of
rows already written, so the latest version is always the value of the complete history.

Arithmetic is exact: sums are kept as fractions of the values' exact binary value and rounded
once, so the result does not depend on the order events arrive in (float addition does).
Time is integer microseconds since the epoch (UTC).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

FUNCTIONS = ("count", "sum", "mean", "min", "max", "count_distinct", "last")
MIN_WINDOW_US = 60 * 1_000_000  # 1 minute
MAX_WINDOW_US = 30 * 86_400 * 1_000_000  # 30 days


class WindowSpecError(ValueError):
    """A windowed aggregation that cannot be computed as declared."""


@dataclass(frozen=True)
class WindowAgg:
    """One aggregation: `function` of `column` over `window_us`, tiled by `slide_us`."""

    feature: str
    column: str
    function: str
    window_us: int
    slide_us: int

    def __post_init__(self) -> None:
        where = f"aggregation {self.feature!r}"
        if self.function not in FUNCTIONS:
            raise WindowSpecError(f"{where}: function {self.function!r} is not one of {FUNCTIONS}")
        if not MIN_WINDOW_US <= self.window_us <= MAX_WINDOW_US:
            raise WindowSpecError(f"{where}: the window must be between 1 minute and 30 days")
        if self.slide_us <= 0 or self.window_us % self.slide_us:
            raise WindowSpecError(
                f"{where}: the slide interval must divide the window "
                f"({self.window_us} us is not a multiple of {self.slide_us} us)"
            )
        if self.window_us // self.slide_us > 1440:
            raise WindowSpecError(
                f"{where}: at most 1440 tiles per window (window / slide); "
                "use a longer slide interval"
            )

    @property
    def tiles(self) -> int:
        return self.window_us // self.slide_us


@dataclass(frozen=True)
class Event:
    """One raw event of a key: its instant, its id (ties on the instant go to the larger id for
    `last`), and the values of the columns the aggregations read."""

    ts: int
    event_id: int
    values: dict[str, Any]


# --- partial aggregates: one per (tile, aggregation), JSON-serializable --------------------------


def _empty(function: str) -> Any:
    if function in ("count",):
        return 0
    if function in ("sum", "mean"):
        return [0, 1, 0]  # numerator, denominator, count
    if function == "count_distinct":
        return []
    return None  # min, max, last


def _add(function: str, partial: Any, event: Event, column: str) -> Any:
    value = event.values.get(column)
    if function == "count":
        return partial + 1
    if value is None:  # count counts events; every other function skips nulls
        return partial
    if function in ("sum", "mean"):
        total = Fraction(*_plus(partial[0], partial[1], *_ratio(value)))
        return [total.numerator, total.denominator, partial[2] + 1]
    if function == "min":
        return value if partial is None or value < partial else partial
    if function == "max":
        return value if partial is None or value > partial else partial
    if function == "count_distinct":
        key = json.dumps(value)
        return partial if key in partial else sorted([*partial, key])
    if function == "last":
        if partial is None or (event.ts, event.event_id) >= (partial[0], partial[1]):
            return [event.ts, event.event_id, value]
        return partial
    raise AssertionError(function)


def _ratio(value: Any) -> tuple[int, int]:
    """The exact value of a number as (numerator, denominator)."""
    try:
        return value.as_integer_ratio()
    except AttributeError:  # a type without it (str): Fraction reads it
        exact = Fraction(value)
        return exact.numerator, exact.denominator


def _plus(n1: int, d1: int, n2: int, d2: int) -> tuple[int, int]:
    """Exact n1/d1 + n2/d2 over the least common denominator (not reduced: `_final` does)."""
    if d1 == d2:
        return n1 + n2, d1
    g = math.gcd(d1, d2)
    return n1 * (d2 // g) + n2 * (d1 // g), d1 // g * d2


def _combine(function: str, column: str, parts: list[Any], events: list[Event]) -> Any:
    """The final value of tile partials and pending events together, in one pass.

    Equal to folding `_add`/merging partials and then `_final` (the hypothesis tests hold it to
    the brute-force definition); written as one pass per aggregation because this is the stream
    job's hot loop (see docs/benchmarks.md, Stream)."""
    if function == "count":
        return sum(parts) + len(events)
    if function == "last":
        best = max((p for p in parts if p is not None), default=None, key=lambda p: (p[0], p[1]))
        for e in events:
            value = e.values.get(column)
            if value is not None and (best is None or (e.ts, e.event_id) >= (best[0], best[1])):
                best = [e.ts, e.event_id, value]
        return None if best is None else best[2]
    values = [v for e in events if (v := e.values.get(column)) is not None]
    if function in ("sum", "mean"):
        num, den, count = 0, 1, 0
        for n, d, c in parts:
            num, den = _plus(num, den, n, d)
            count += c
        for value in values:
            num, den = _plus(num, den, *_ratio(value))
        count += len(values)
        return _final(function, [num, den, count])
    if function in ("min", "max"):
        candidates = [p for p in parts if p is not None] + values
        if not candidates:
            return None
        return min(candidates) if function == "min" else max(candidates)
    if function == "count_distinct":
        return len(set().union(*parts, (json.dumps(v) for v in values)))
    raise AssertionError(function)


def _final(function: str, partial: Any) -> Any:
    if function == "count":
        return partial
    if function == "sum":
        return float(Fraction(partial[0], partial[1]))  # correctly rounded once
    if function == "mean":
        return float(Fraction(partial[0], partial[1]) / partial[2]) if partial[2] else None
    if function == "count_distinct":
        return len(partial)
    if function == "last":
        return None if partial is None else partial[2]
    return partial  # min, max


# --- one key's state ------------------------------------------------------------------------------


@dataclass
class KeyWindows:
    """The window state of one key of one view (see the module docstring)."""

    aggs: Sequence[WindowAgg]
    # slide_us -> tile index -> partials of the aggregations with that slide (in `aggs` order)
    tiles: dict[int, dict[int, list[Any]]] = field(default_factory=dict)
    pending: list[Event] = field(default_factory=list)  # events at or after `finalized_us`
    finalized_us: int = -(2**62)  # every event before this instant is in `tiles`
    emitted_us: int = -(2**62)  # change points up to here have been emitted

    def __post_init__(self) -> None:
        self._by_slide: dict[int, list[int]] = {}
        # (function, column, slide, tiles per window, index within its slide's partials)
        self._plan: list[tuple[str, str, int, int, int]] = []
        self._spans: dict[int, set[int]] = {}  # slide -> the window lengths in tiles
        for index, agg in enumerate(self.aggs):
            group = self._by_slide.setdefault(agg.slide_us, [])
            self._plan.append((agg.function, agg.column, agg.slide_us, agg.tiles, len(group)))
            self._spans.setdefault(agg.slide_us, set()).add(agg.tiles)
            group.append(index)

    # serialized form for the stream engine's state store
    def dumps(self) -> str:
        tiles = {str(s): {str(i): p for i, p in t.items()} for s, t in self.tiles.items()}
        pending = [[e.ts, e.event_id, e.values] for e in self.pending]
        return json.dumps([tiles, pending, self.finalized_us, self.emitted_us])

    @classmethod
    def loads(cls, aggs: Sequence[WindowAgg], text: str) -> KeyWindows:
        tiles, pending, finalized, emitted = json.loads(text)
        return cls(
            aggs,
            {int(s): {int(i): p for i, p in t.items()} for s, t in tiles.items()},
            [Event(ts, eid, values) for ts, eid, values in pending],
            finalized,
            emitted,
        )

    def advance(
        self, events: Iterable[Event], watermark_us: int, until_us: int | None = None
    ) -> list[tuple[int, list[Any]]]:
        """Take new events, emit `(change point, values)` rows, finalize what the watermark passed.

        Rows cover every change point from the earliest new event (re-emitting corrected ones)
        through the latest event or the watermark, whichever is later (`until_us` caps it: the
        backfill's end). Events before `finalized_us` cannot be placed exactly: the caller drops
        them first (Spark does, below its watermark) and this refuses them.
        """
        # An event id seen again while its event is still pending (a producer's retry) counts
        # once; raw tables keep one copy too (their primary key).
        seen = {e.event_id for e in self.pending}
        new = []
        for event in sorted(events, key=lambda e: (e.ts, e.event_id)):
            if event.event_id not in seen:
                seen.add(event.event_id)
                new.append(event)
        if new and new[0].ts < self.finalized_us:
            raise ValueError(
                f"event at {new[0].ts} us is older than the finalized state ({self.finalized_us})"
            )
        self.pending.extend(new)
        self.pending.sort(key=lambda e: (e.ts, e.event_id))
        latest = self.pending[-1].ts if self.pending else self.emitted_us
        hi = max(latest, watermark_us, self.emitted_us)
        if until_us is not None:
            hi = min(hi, until_us)
        lo = self.emitted_us + 1
        if new:
            lo = min(lo, new[0].ts)
        rows = [(point, self.values_at(point)) for point in self._change_points(lo, hi)]
        self.emitted_us = max(self.emitted_us, hi)
        self._finalize(min(watermark_us, hi + 1))
        return rows

    def next_expiry(self) -> int | None:
        """The first change point after what was emitted (a tile leaving a window), if any."""
        points = self._change_points(self.emitted_us + 1, 2**62)
        return points[0] if points else None

    def is_empty(self) -> bool:
        """No event is inside any window any more: the state can be dropped."""
        return not self.pending and not any(self.tiles.values())

    def values_at(self, point: int) -> list[Any]:
        out = []
        for function, column, slide, tiles, position in self._plan:
            lowest = point // slide - tiles + 1
            # Finalized events are all older than any point asked for (`advance` ensures it).
            parts = [p[position] for t, p in self.tiles.get(slide, {}).items() if t >= lowest]
            events = []
            for event in self.pending:
                if event.ts > point:
                    break
                if event.ts // slide >= lowest:
                    events.append(event)
            out.append(_combine(function, column, parts, events))
        return out

    def _change_points(self, lo: int, hi: int) -> list[int]:
        """Event instants and tile expiries in [lo, hi], ascending."""
        if hi < lo:
            return []
        points = {e.ts for e in self.pending if lo <= e.ts <= hi}
        for slide, spans in self._spans.items():
            occupied = set(self.tiles.get(slide, ()))
            occupied.update(e.ts // slide for e in self.pending)
            for tile in occupied:
                for span in spans:
                    expiry = (tile + span) * slide
                    if lo <= expiry <= hi:
                        points.add(expiry)
        return sorted(points)

    def _finalize(self, before_us: int) -> None:
        """Fold pending events older than `before_us` into tiles; drop tiles no window can reach."""
        if before_us <= self.finalized_us:
            return
        keep = []
        for event in self.pending:
            if event.ts >= before_us:
                keep.append(event)
                continue
            for slide, indexes in self._by_slide.items():
                tiles = self.tiles.setdefault(slide, {})
                tile = event.ts // slide
                partials = tiles.get(tile)
                if partials is None:
                    partials = tiles[tile] = [_empty(self.aggs[i].function) for i in indexes]
                for position, i in enumerate(indexes):
                    agg = self.aggs[i]
                    partials[position] = _add(agg.function, partials[position], event, agg.column)
        self.pending = keep
        self.finalized_us = before_us
        # Every later change point is at or after `finalized_us` (later events are not older),
        # and a tile counts only before its expiry: a tile that expired by then is never read.
        # Its expiry is a change point already emitted: `finalized_us` is at most `emitted_us`,
        # except past the backfill's end (`until_us`), where nothing more is emitted.
        for slide, indexes in self._by_slide.items():
            span = max(self.aggs[i].tiles for i in indexes)
            tiles = self.tiles.get(slide, {})
            for tile in [t for t in tiles if (t + span) * slide <= self.finalized_us]:
                del tiles[tile]


def rows_for_key(
    aggs: Sequence[WindowAgg], events: Iterable[Event], until_us: int
) -> list[tuple[int, list[Any]]]:
    """Every change point of one key up to `until_us` from its whole history (the backfill)."""
    return KeyWindows(aggs).advance(events, watermark_us=until_us, until_us=until_us)


def micros(value: Any) -> int:
    """Integer microseconds since the epoch of a datetime/Timestamp (naive means UTC)."""
    import datetime as dt

    if hasattr(value, "value") and not isinstance(value, dt.datetime):  # pandas Timestamp
        return int(value.value) // 1000
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        delta = value - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, int):
        return value
    raise TypeError(f"not a timestamp: {value!r}")


__all__ = [
    "FUNCTIONS",
    "Event",
    "KeyWindows",
    "WindowAgg",
    "WindowSpecError",
    "micros",
    "rows_for_key",
]
