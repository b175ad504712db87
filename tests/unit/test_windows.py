"""The window engine against a brute-force reading of its definition (spark_jobs/windows.py).

The oracle computes each value straight from the definition: every event with `ts <= t` whose tile
is one of the last W/s tiles up to t's. The engine must agree at every change point and between
them, whether it sees the history at once (the backfill) or in micro-batches with out-of-order
events inside the watermark (the stream), including after a round trip through its serialized
state.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spark_jobs.windows import Event, KeyWindows, WindowAgg, WindowSpecError, rows_for_key

S = 1_000_000  # one second in microseconds
AGGS = [
    WindowAgg("n_1m", "ip", "count", 60 * S, 10 * S),
    WindowAgg("failed_10m", "failed", "sum", 600 * S, 60 * S),
    WindowAgg("amount_sum_10m", "amount", "sum", 600 * S, 60 * S),
    WindowAgg("amount_mean_10m", "amount", "mean", 600 * S, 60 * S),
    WindowAgg("amount_min_2m", "amount", "min", 120 * S, 60 * S),
    WindowAgg("amount_max_2m", "amount", "max", 120 * S, 60 * S),
    WindowAgg("ips_5m", "ip", "count_distinct", 300 * S, 60 * S),
    WindowAgg("last_ip_1h", "ip", "last", 3600 * S, 600 * S),
]


def oracle(agg: WindowAgg, events: list[Event], t: int):
    inside = [
        e for e in events if e.ts <= t and e.ts // agg.slide_us > t // agg.slide_us - agg.tiles
    ]
    values = [e.values.get(agg.column) for e in inside]
    present = [v for v in values if v is not None]
    if agg.function == "count":
        return len(inside)
    if agg.function == "sum":
        return float(sum((Fraction(v) for v in present), Fraction(0)))
    if agg.function == "mean":
        return float(sum(Fraction(v) for v in present) / len(present)) if present else None
    if agg.function == "min":
        return min(present) if present else None
    if agg.function == "max":
        return max(present) if present else None
    if agg.function == "count_distinct":
        return len(set(present))
    last = max(
        (e for e in inside if e.values.get(agg.column) is not None),
        key=lambda e: (e.ts, e.event_id),
        default=None,
    )
    return None if last is None else last.values[agg.column]


def change_points(events: list[Event], until: int) -> list[int]:
    points = {e.ts for e in events}
    for agg in AGGS:
        points |= {(e.ts // agg.slide_us + agg.tiles) * agg.slide_us for e in events}
    return sorted(p for p in points if p <= until)


amounts = st.one_of(
    st.none(),
    st.sampled_from([0.1, 0.2, 0.3, 19.99, 1e-3, 1e6, 7.0]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)
raw_events = st.lists(
    st.tuples(
        st.integers(0, 3 * 3600 * S),  # three hours, microsecond resolution
        st.sampled_from(["1.1.1.1", "2.2.2.2", "3.3.3.3", None]),
        st.sampled_from([0, 1]),
        amounts,
    ),
    min_size=1,
    max_size=60,
)


def make_events(raw) -> list[Event]:
    return [
        Event(ts, event_id, {"ip": ip, "failed": failed, "amount": amount})
        for event_id, (ts, ip, failed, amount) in enumerate(raw, start=1)
    ]


def latest(rows: dict[int, list], t: int):
    before = [p for p in rows if p <= t]
    return rows[max(before)] if before else None


@settings(max_examples=150, deadline=None)
@given(raw_events)
def test_backfill_rows_are_the_definition_at_every_change_point(raw):
    events = make_events(raw)
    until = max(e.ts for e in events) + 2 * 3600 * S
    rows = rows_for_key(AGGS, events, until)
    assert [p for p, _ in rows] == change_points(events, until)
    for point, values in rows:
        assert values == [oracle(agg, events, point) for agg in AGGS], point


@settings(max_examples=150, deadline=None)
@given(raw_events, st.integers(0, 120), st.randoms(use_true_random=False))
def test_micro_batches_with_late_events_end_at_the_backfill(raw, delay_s, rnd):
    """Arrival order is shuffled within the watermark delay; the latest version of each row
    equals the backfill's, and the state survives serialization between batches."""
    events = make_events(raw)
    delay = delay_s * S
    # Arrival: an event may arrive after later ones, but never after the watermark passed it.
    arrival = sorted(events, key=lambda e: e.ts + rnd.randint(0, delay))
    state = KeyWindows(AGGS)
    served: dict[int, list] = {}
    max_seen = -(2**62)
    batch: list[Event] = []
    for index, event in enumerate(arrival):
        batch.append(event)
        if rnd.random() < 0.4 or index == len(arrival) - 1:
            watermark = max_seen - delay  # the watermark the batch was filtered with
            kept = [e for e in batch if e.ts >= watermark]
            assert kept == batch  # the shuffle above never goes past the delay
            for point, values in state.advance(batch, watermark):
                served[point] = values  # a newer version replaces the row
            max_seen = max(max_seen, *(e.ts for e in batch))
            state = KeyWindows.loads(AGGS, state.dumps())
            batch = []
    horizon = max_seen + 2 * 3600 * S  # let the watermark pass every expiry
    for point, values in state.advance([], horizon):
        served[point] = values
    expected = dict(rows_for_key(AGGS, events, horizon))
    assert served == expected
    assert state.is_empty()


def test_a_tile_leaves_the_window_at_its_expiry():
    agg = WindowAgg("failed_10m", "failed", "sum", 600 * S, 60 * S)
    events = [Event(90 * S, 1, {"failed": 1}), Event(130 * S, 2, {"failed": 1})]
    rows = dict(rows_for_key([agg], events, 3600 * S))
    # tile 1 ([60 s, 120 s)) leaves at 60 s * (1 + 10); tile 2 at 60 s * 12
    assert rows == {90 * S: [1.0], 130 * S: [2.0], 660 * S: [1.0], 720 * S: [0.0]}


def test_sums_do_not_depend_on_arrival_order():
    agg = WindowAgg("s", "amount", "sum", 600 * S, 60 * S)
    values = [0.1, 0.2, 0.3, 1e16, -1e16, 0.7]
    events = [Event(S, i, {"amount": v}) for i, v in enumerate(values)]
    forward = rows_for_key([agg], events, 2 * S)
    backward = rows_for_key([agg], list(reversed(events)), 2 * S)
    assert forward == backward
    assert forward[0][1] == [float(sum(Fraction(v) for v in values))]
    assert forward[0][1] != [sum(values)]  # what float addition in arrival order gives


def test_an_event_older_than_the_finalized_state_is_refused():
    state = KeyWindows(AGGS)
    state.advance([Event(100 * S, 1, {"ip": "1.1.1.1"})], watermark_us=50 * S)
    with pytest.raises(ValueError, match="older than the finalized state"):
        state.advance([Event(10 * S, 2, {"ip": "1.1.1.1"})], watermark_us=50 * S)


@pytest.mark.parametrize(
    ("window", "slide", "message"),
    [
        (30 * S, 10 * S, "between 1 minute and 30 days"),
        (31 * 86400 * S, 86400 * S, "between 1 minute and 30 days"),
        (600 * S, 7 * S, "must divide the window"),
        (86400 * S, 10 * S, "at most 1440 tiles"),
    ],
)
def test_definitions_that_cannot_be_computed_are_refused(window, slide, message):
    with pytest.raises(WindowSpecError, match=message):
        WindowAgg("f", "c", "count", window, slide)
    with pytest.raises(WindowSpecError, match="not one of"):
        WindowAgg("f", "c", "median", 600 * S, 60 * S)


@settings(max_examples=100, deadline=None)
@given(raw_events, st.integers(1, 60))
def test_a_key_woken_only_by_its_timer_emits_every_expiry_and_then_empties(raw, delay_s):
    """As the stream runs it: data once, then calls only when the watermark passes the timer
    (`next_expiry`); every change point comes out, and the state ends empty with no timer."""
    events = make_events(raw)
    state = KeyWindows(AGGS)
    served = dict(state.advance(events, watermark_us=0))
    watermark = max(e.ts for e in events) - delay_s * S
    horizon = watermark + 3 * 3600 * S
    while True:
        timer = state.next_expiry()
        if timer is None:
            break
        assert timer > state.emitted_us
        watermark = max(watermark, timer)  # Spark fires once the watermark reaches the timer
        assert watermark <= horizon, "the timer never lets the state empty"
        served.update(state.advance([], watermark))
    assert state.is_empty()
    expected = dict(rows_for_key(AGGS, events, watermark))
    assert served == expected


def test_a_retried_event_inside_the_watermark_counts_once():
    agg = WindowAgg("n", "ip", "count", 600 * S, 60 * S)
    state = KeyWindows([agg])
    first = state.advance([Event(100 * S, 7, {"ip": "a"})], watermark_us=0)
    again = state.advance([Event(100 * S, 7, {"ip": "a"}), Event(101 * S, 8, {"ip": "b"})], 0)
    assert first == [(100 * S, [1])]
    assert again == [(101 * S, [2])]  # the retry changed nothing at 100 s
