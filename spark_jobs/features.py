"""Batch features per user as of a day: pure DataFrame functions, no I/O.

"As of day D" means: computed from events before D+1 00:00 UTC, and valid from that instant,
so rows are stamped `event_ts = D+1 00:00`. A window of w days covers days D-w+1 .. D.

Storage is change-only. A feature set writes a user's row for day D when
- one of its values differs from the previous day computed (D-1; across a gap in the days
  computed, the last day before it): an event entered a window, or left one; or
- D is the first day of a computed range (a key frame) and the user has a value, or it changed
  that day (with `backfill --compare-stored`, only where it differs from what the stored rows
  answer the day before: `against_stored`), or
- an older version already has a row for (user, D): the new row shadows it (a re-run after late
  events must never leave an older run's row as the answer).
The value on any day is the user's latest row at or before it, which is Feast's point-in-time
rule, so the answers are those of one row per user and day (tests/unit/spark/test_features.py
compares both layouts at every user and day). A window that empties yields a row of zeros (or
empty lists) on the day it empties, so an older non-zero row never stands for "nothing lately".

The computation is linear in the events, not in events x window length:
- counts and sums are deltas: +x on an event's day, -x on the day it leaves a w-day window
  (day + w); a running sum per user, ordered by day, is the value on every change day;
- distinct counts: per (user, value) the days the value is inside a window merge into intervals
  (+1 at an interval's start, -1 the day after its end), summed the same way;
- the 365-day top 3 (`top_values`) is a per-user sliding pass in Python over login days and the
  days they leave the window.
Sums are exact (DECIMAL) and rounded to a double once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window


def as_of_timestamp(day: dt.date) -> dt.datetime:
    """The instant the features of `day` become valid: the next midnight, UTC.

    Aware datetimes only: PySpark reads a naive one in the Python process's local zone.
    """
    return dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)


def key_frames(days: list[dt.date]) -> list[dt.date]:
    """The first day of each run of consecutive days in `days` (sorted)."""
    days = sorted(days)
    return [d for i, d in enumerate(days) if i == 0 or (d - days[i - 1]).days != 1]


def _in_days(column: Column, days: list[dt.date]) -> Column:
    first, last = min(days), max(days)
    inside = column.between(F.lit(first), F.lit(last))
    if len(days) != (last - first).days + 1:  # a resumed chunk can have gaps
        inside = inside & column.isin(days)
    return inside


# --------------------------------------------------------------------------- change rows


@dataclass(frozen=True)
class WindowSum:
    """`output` = the sum of the daily column `source` over the last `days` days."""

    output: str
    source: str
    days: int


@dataclass(frozen=True)
class WindowDistinct:
    """`output` = the number of distinct `value`s seen over the last `days` days."""

    output: str
    days: int


def _deltas(
    frame: DataFrame, shifts: dict[int, dict[str, Column]], types: dict[str, str]
) -> DataFrame:
    """Per input row, one row per shift: on `day + shift`, the given deltas (the others zero)."""
    structs = [
        F.struct(
            F.lit(shift).alias("shift"),
            *[deltas.get(o, F.lit(0)).cast(t).alias(o) for o, t in types.items()],
        )
        for shift, deltas in sorted(shifts.items())
    ]
    return frame.select("user_id", "day", F.explode(F.array(*structs)).alias("d")).select(
        "user_id",
        F.date_add(F.col("day"), F.col("d.shift")).alias("day"),
        *[F.col(f"d.{o}").alias(o) for o in types],
    )


def sum_deltas(daily: DataFrame, sums: list[WindowSum], types: dict[str, str]) -> DataFrame:
    """+x on the day, -x on the day it leaves each window (daily: user_id, day, sources)."""
    shifts: dict[int, dict[str, Column]] = {0: {}}
    for s in sums:
        shifts[0][s.output] = F.col(s.source)
        shifts.setdefault(s.days, {})[s.output] = -F.col(s.source)
    return _deltas(daily, shifts, types)


def distinct_deltas(
    used: DataFrame, value: str, distinct: list[WindowDistinct], types: dict[str, str]
) -> DataFrame:
    """+1 when a value enters a window after being out of it, -1 when it leaves (used: user_id,
    day, `value`, one row per use day).

    A use on day u keeps the value in a w-day window on days u .. u+w-1; consecutive uses less
    than w+1 days apart merge into one interval.
    """
    by_value = Window.partitionBy("user_id", value).orderBy("day")
    prev, nxt = F.lag("day").over(by_value), F.lead("day").over(by_value)
    flagged = used.select(
        "user_id",
        "day",
        *[
            (prev.isNull() | (F.datediff(F.col("day"), prev) > d.days)).alias(f"_in_{d.output}")
            for d in distinct
        ],
        *[
            (nxt.isNull() | (F.datediff(nxt, F.col("day")) > d.days)).alias(f"_out_{d.output}")
            for d in distinct
        ],
    )
    shifts: dict[int, dict[str, Column]] = {0: {}}
    for d in distinct:
        shifts[0][d.output] = F.when(F.col(f"_in_{d.output}"), 1).otherwise(0)
        shifts.setdefault(d.days, {})[d.output] = F.when(F.col(f"_out_{d.output}"), -1).otherwise(0)
    return _deltas(flagged, shifts, types)


def _any_nonzero(columns: list[str]) -> Column:
    out = F.lit(False)
    for c in columns:
        out = out | (F.col(c) != 0)
    return out


def change_rows(
    deltas: list[DataFrame],
    users: DataFrame,
    days: list[dt.date],
    types: dict[str, str],
    forced: DataFrame | None = None,
) -> DataFrame:
    """(user_id, as_of_day, outputs): the rows to store for `days` (see the module docstring).

    `deltas`: frames of (user_id, day, outputs) from events read since the longest window before
    the first day; `users`: every user_id of those events; `forced`: (user_id, day) that must get
    a row (an older version has one). A day after the first keeps a row where the value differs
    from the user's value on the previous day computed, which is what these rows answer there;
    across a gap in `days` that is the last day before the gap (every user gets a row there to
    compare with). The answers are those of these rows alone: the backfill computes one run of
    consecutive days at a time and compares its first day with the stored rows
    (`against_stored`).
    """
    outputs = list(types)
    ordered = sorted(days)
    frames = key_frames(ordered)
    before_gaps = [ordered[ordered.index(k) - 1] for k in frames[1:]]
    marks = [
        users.select("user_id", F.lit(day).alias("day"), F.lit(0).alias("_forced"))
        for day in [*frames, *before_gaps]
    ]
    if forced is not None:
        marks.append(forced.select("user_id", "day", F.lit(1).alias("_forced")))
    zero = {o: F.lit(0).cast(t).alias(o) for o, t in types.items()}
    parts = [d.select("user_id", "day", *outputs, F.lit(0).alias("_forced")) for d in deltas]
    parts += [m.select("user_id", "day", *zero.values(), "_forced") for m in marks]
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    per_day = union.groupBy("user_id", "day").agg(
        *[F.sum(o).alias(o) for o in outputs], F.max("_forced").alias("_forced")
    )
    running = (
        Window.partitionBy("user_id")
        .orderBy("day")
        .rowsBetween(Window.unboundedPreceding, Window.currentRow)
    )
    state = per_day.select(
        "user_id",
        "day",
        "_forced",
        _any_nonzero(outputs).alias("_moved"),  # the day's deltas
        *[F.sum(o).over(running).alias(o) for o in outputs],
    ).where(_in_days(F.col("day"), ordered))
    previous = Window.partitionBy("user_id").orderBy("day")
    changed = F.lit(False)
    for o, t in types.items():
        changed = changed | (F.col(o) != F.coalesce(F.lag(o).over(previous), F.lit(0).cast(t)))
    # The first day: what is stored before is not known here (against_stored compares with it),
    # so a user with a value, or whose value moved that day (a window that empties), gets a row.
    keep = (F.col("_forced") == 1) | F.when(
        F.col("day") == F.lit(ordered[0]), F.col("_moved") | _any_nonzero(outputs)
    ).otherwise(changed)
    return (
        state.select("user_id", "day", *outputs, keep.alias("_keep"))
        .where("_keep")
        .select("user_id", F.col("day").alias("as_of_day"), *outputs)
    )


def against_stored(
    rows: DataFrame,
    stored: DataFrame,
    day: dt.date,
    columns: tuple[str, ...],
    lists: tuple[str, ...] = (),
    forced: DataFrame | None = None,
) -> DataFrame:
    """`rows` with `day`'s key frame reduced to what the stored rows do not already answer.

    `rows`: a feature set's change rows (user_id, as_of_day, columns) where `day` is a key frame
    (every user with a value has a row there). `stored`: (user_id, columns), what the recorded
    rows answer the day before, whatever version wrote them. A user's answer on `day` is its own
    row there, else the stored one: so `day` keeps a row only where the value differs from the
    stored answer (no stored row: empty) or an older version has a row on `day` (`forced`), and
    gets an empty row (zeros, `[]` for the JSON `lists`) where a stored value emptied. Lists are
    compared as values, not as text (TiDB normalises JSON text).
    """
    types = dict(rows.dtypes)
    array = "array<string>"
    empty = {c: (F.lit("[]") if c in lists else F.lit(0)).cast(types[c]) for c in columns}

    def value(side: str, column: str) -> Column:
        """A side's value, empty where it has none (lists parsed: compared as values)."""
        c = F.coalesce(F.col(f"{side}.{column}"), empty[column])
        return F.from_json(c, array) if column in lists else c

    first = rows.where(F.col("as_of_day") == F.lit(day))
    # One join: users with a row on `day`, with a stored answer, or both.
    both = first.alias("r").join(stored.alias("s"), "user_id", "full_outer")
    if forced is not None:
        older = forced.where(F.col("day") == F.lit(day)).select("user_id").distinct()
        both = both.join(older.withColumn("_older", F.lit(True)), "user_id", "left")
    else:
        both = both.withColumn("_older", F.lit(None).cast("boolean"))
    mine = F.col("r.as_of_day").isNotNull()
    differs = F.lit(False)
    for column in columns:
        differs = differs | ~value("r", column).eqNullSafe(value("s", column))
    # mine: kept where it differs or an older version has a row that day; not mine: the day's
    # value is empty, written where the stored one is not
    compared = both.where(
        F.when(mine, differs | F.coalesce(F.col("_older"), F.lit(False))).otherwise(differs)
    ).select(
        "user_id",
        F.lit(day).alias("as_of_day"),
        *[F.when(mine, F.col(f"r.{c}")).otherwise(empty[c]).alias(c) for c in columns],
    )
    later = rows.where(F.col("as_of_day") != F.lit(day))
    return later.unionByName(compared)


def _users(frame: DataFrame) -> DataFrame:
    return frame.select("user_id").distinct()


def _finish(rows: DataFrame, columns: tuple[str, ...], doubles: Iterable[str]) -> DataFrame:
    """Declared column order; exact sums rounded to a double once, counts as BIGINT."""
    doubles = set(doubles)
    return rows.select(
        "user_id",
        "as_of_day",
        *[F.col(c).cast("double" if c in doubles else "bigint").alias(c) for c in columns],
    )


COUNT, AMOUNT = "bigint", "decimal(30,2)"  # delta and running-sum types: exact


# --------------------------------------------------------------------------- transactions

TXN_WINDOWS = (1, 7, 30)
TXN_COLUMNS = tuple(f"txn_{m}_{w}d" for w in TXN_WINDOWS for m in ("count", "sum", "merchants"))


def daily_transactions(transactions: DataFrame) -> DataFrame:
    """(user_id, day, merchant_id, n, amount) from raw transactions: one row per merchant and day."""
    return transactions.groupBy("user_id", F.to_date("event_ts").alias("day"), "merchant_id").agg(
        F.count(F.lit(1)).alias("n"), F.sum("amount").cast(AMOUNT).alias("amount")
    )


def transaction_features(
    daily: DataFrame, days: list[dt.date], forced: DataFrame | None = None
) -> DataFrame:
    """Transaction count, sum and distinct merchants over 1, 7 and 30 days: change rows."""
    types = {c: AMOUNT if "_sum_" in c else COUNT for c in TXN_COLUMNS}
    totals = daily.groupBy("user_id", "day").agg(
        F.sum("n").alias("n"), F.sum("amount").cast(AMOUNT).alias("amount")
    )
    sums = [WindowSum(f"txn_count_{w}d", "n", w) for w in TXN_WINDOWS]
    sums += [WindowSum(f"txn_sum_{w}d", "amount", w) for w in TXN_WINDOWS]
    distinct = [WindowDistinct(f"txn_merchants_{w}d", w) for w in TXN_WINDOWS]
    deltas = [
        sum_deltas(totals, sums, types),
        distinct_deltas(
            daily.select("user_id", "day", "merchant_id"), "merchant_id", distinct, types
        ),
    ]
    rows = change_rows(deltas, _users(daily), days, types, forced)
    return _finish(rows, TXN_COLUMNS, (s.output for s in sums if s.source == "amount"))


# --------------------------------------------------------------------------- withdrawals

WITHDRAWAL_WINDOWS = (1, 7)
WITHDRAWAL_COLUMNS = tuple(
    f"withdrawal_{m}_{w}d" for w in WITHDRAWAL_WINDOWS for m in ("count", "sum")
)


def daily_withdrawals(withdrawals: DataFrame) -> DataFrame:
    """(user_id, day, n, amount) from raw withdrawals."""
    return withdrawals.groupBy("user_id", F.to_date("event_ts").alias("day")).agg(
        F.count(F.lit(1)).alias("n"), F.sum("amount").cast(AMOUNT).alias("amount")
    )


def withdrawal_features(
    daily: DataFrame, days: list[dt.date], forced: DataFrame | None = None
) -> DataFrame:
    """Withdrawal count and sum over 1 and 7 days: change rows."""
    types = {c: AMOUNT if "_sum_" in c else COUNT for c in WITHDRAWAL_COLUMNS}
    sums = [
        WindowSum(f"withdrawal_{m}_{w}d", "n" if m == "count" else "amount", w)
        for w in WITHDRAWAL_WINDOWS
        for m in ("count", "sum")
    ]
    rows = change_rows([sum_deltas(daily, sums, types)], _users(daily), days, types, forced)
    return _finish(rows, WITHDRAWAL_COLUMNS, (c for c in types if types[c] == AMOUNT))


# --------------------------------------------------------------------------- logins

LOGIN_COLUMNS = ("failed_logins_1d", "logins_1d")


def daily_logins(logins: DataFrame) -> DataFrame:
    """(user_id, day, n, failed) from raw logins."""
    return logins.groupBy("user_id", F.to_date("event_ts").alias("day")).agg(
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(F.col("success"), F.lit(0)).otherwise(F.lit(1))).cast(COUNT).alias("failed"),
    )


def login_features(
    daily: DataFrame, days: list[dt.date], forced: DataFrame | None = None
) -> DataFrame:
    """Failed logins and all logins over 1 day: change rows."""
    types = dict.fromkeys(LOGIN_COLUMNS, COUNT)
    sums = [WindowSum("failed_logins_1d", "failed", 1), WindowSum("logins_1d", "n", 1)]
    rows = change_rows([sum_deltas(daily, sums, types)], _users(daily), days, types, forced)
    return _finish(rows, LOGIN_COLUMNS, ())


# --------------------------------------------------------------------------- profile (365 days)

PROFILE_WINDOW = 365
TOP_N = 3
KINDS = ("ip", "device")
PROFILE_COLUMNS = ("common_ips_365d", "common_devices_365d")
_FORCED = "~forced"  # a marker row's kind in the profile pass (not a login value)
EPOCH = dt.date(1970, 1, 1)


def daily_login_values(logins: DataFrame) -> DataFrame:
    """(user_id, day, kind, value, n, last_ts) for successful logins; kind is 'ip' or 'device'."""
    ok = logins.where(F.col("success"))
    per_kind = [
        ok.select("user_id", "event_ts", F.lit(kind).alias("kind"), F.col(column).alias("value"))
        for kind, column in (("ip", "ip"), ("device", "device_id"))
    ]
    both = per_kind[0].unionByName(per_kind[1])
    return both.groupBy("user_id", F.to_date("event_ts").alias("day"), "kind", "value").agg(
        F.count(F.lit(1)).alias("n"),
        F.max("event_ts").alias("last_ts"),
    )


Tops = tuple[tuple[str, ...], ...]  # per kind, the top values in order


def _tops(counts: dict[str, dict[str, list[int]]], top_n: int) -> Tops:
    """Most logins first, then most recently used, then by value."""
    return tuple(
        tuple(sorted(counts[k], key=lambda v, c=counts[k]: (-c[v][0], -c[v][1], v))[:top_n])
        for k in KINDS
    )


def top_values(
    entries: list[tuple[int, str, str | None, int, int]],
    emit: set[int],
    keys: set[int],
    window: int = PROFILE_WINDOW,
    top_n: int = TOP_N,
) -> list[tuple[int, Tops]]:
    """One user's profile change rows: [(day, tops)] for days in `emit` (day numbers).

    `entries`: (day, kind, value, n, last_ts) sorted by day, one per (day, kind, value) of
    successful logins read since `window` days before the first emitted day; an entry of kind
    `_FORCED` marks a day that must get a row. `keys`: the first day of each run of days in
    `emit`, evaluated even without events. The first emitted day gets a row when the user has a
    value or it changed that day; a later one when its value differs from what the rows emitted
    before answer (across a gap: the value on the last day before it). A use on day d counts on
    days d .. d+window-1; a value's last use is the latest of its uses still inside the window.
    """
    uses = [e for e in entries if e[1] != _FORCED]
    forced = {e[0] for e in entries if e[1] == _FORCED}
    last = max(emit)
    days = {e[0] for e in uses} | {e[0] + window for e in uses} | forced | keys
    counts: dict[str, dict[str, list[int]]] = {k: {} for k in KINDS}
    added = removed = 0
    answer: Tops | None = None  # what the rows emitted so far answer (None: before the first)
    out: list[tuple[int, Tops]] = []
    before: Tops = ()
    for day in sorted(d for d in days if d <= last):
        if answer is None and day in emit:
            before = _tops(counts, top_n)  # the value the day before the first emitted day
        while removed < len(uses) and uses[removed][0] + window <= day:
            _, kind, value, n, _ = uses[removed]
            c = counts[kind][value]  # type: ignore[index]
            c[0] -= n
            if c[0] == 0:
                del counts[kind][value]  # type: ignore[arg-type]
            removed += 1
        while added < len(uses) and uses[added][0] <= day:
            _, kind, value, n, ts = uses[added]
            c = counts[kind].setdefault(value, [0, ts])  # type: ignore[arg-type]
            c[0] += n
            c[1] = max(c[1], ts)
            added += 1
        if day not in emit:  # before the first day, or inside a gap: no row, no answer
            continue
        now = _tops(counts, top_n)
        # the first day: a value, or one that changed that day (a window that empties)
        changed = (any(now) or now != before) if answer is None else now != answer
        if changed or day in forced:
            out.append((day, now))
        answer = now
    return out


def _profile_batches(
    emit: set[int], keys: set[int], window: int, top_n: int
) -> Callable[[Iterator], Iterator]:
    """mapInPandas over partitions sorted by (user_id, day): every user's rows, one at a time.

    A user's rows can straddle Arrow batches: the last user of a batch waits for the next one.
    """
    import itertools

    import numpy as np
    import pandas as pd

    def to_json(values: tuple[str, ...]) -> str:
        return json.dumps(list(values), separators=(",", ":"), ensure_ascii=False)

    def rows_of(frame: pd.DataFrame) -> pd.DataFrame:
        out: list[tuple[int, int, str, str]] = []
        columns = [frame[c].tolist() for c in ("user_id", "day", "kind", "value", "n", "last_ts")]
        for user, group in itertools.groupby(zip(*columns, strict=True), key=lambda r: r[0]):
            entries = [(d, k, v, n, ts) for _, d, k, v, n, ts in group]
            for day, (ips, devices) in top_values(entries, emit, keys, window, top_n):
                out.append((user, day, to_json(ips), to_json(devices)))
        return pd.DataFrame(out, columns=["user_id", "day", *PROFILE_COLUMNS])

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        pending = None
        for batch in batches:
            if pending is not None:
                batch = pd.concat([pending, batch], ignore_index=True)
            if not len(batch):
                continue
            users = batch["user_id"].to_numpy()
            cut = int(np.searchsorted(users, users[-1]))  # the last user may go on
            pending = batch.iloc[cut:]
            if cut:
                yield rows_of(batch.iloc[:cut])
        if pending is not None and len(pending):
            yield rows_of(pending)

    return run


def profile_features(
    daily: DataFrame,
    days: list[dt.date],
    forced: DataFrame | None = None,
    window: int = PROFILE_WINDOW,
    top_n: int = TOP_N,
) -> DataFrame:
    """Common IPs and devices over 365 days (top 3, JSON arrays): change rows.

    Order: most logins first, then most recently used, then by value. A window that empties
    yields empty lists.
    """
    uses = daily.select(
        "user_id",
        F.datediff(F.col("day"), F.lit(EPOCH)).alias("day"),
        "kind",
        "value",
        F.col("n").cast("long").alias("n"),
        F.unix_micros(F.col("last_ts")).alias("last_ts"),
    )
    if forced is not None:
        uses = uses.unionByName(
            forced.select(
                "user_id",
                F.datediff(F.col("day"), F.lit(EPOCH)).alias("day"),
                F.lit(_FORCED).alias("kind"),
                F.lit(None).cast("string").alias("value"),
                F.lit(0).cast("long").alias("n"),
                F.lit(0).cast("long").alias("last_ts"),
            )
        )
    run = _profile_batches(
        {(d - EPOCH).days for d in days},
        {(d - EPOCH).days for d in key_frames(days)},
        window,
        top_n,
    )
    schema = "user_id long, day int, common_ips_365d string, common_devices_365d string"
    rows = (
        uses.repartition("user_id").sortWithinPartitions("user_id", "day").mapInPandas(run, schema)
    )
    return rows.select(
        "user_id",
        F.date_add(F.lit(EPOCH), F.col("day")).alias("as_of_day"),
        *PROFILE_COLUMNS,
    )


# --------------------------------------------------------------------------- registry

# What every feature set's rows depend on besides its own prepare/compute.
_SHARED: tuple[Callable, ...] = (
    key_frames,
    _in_days,
    change_rows,
    _any_nonzero,
    _deltas,
    _finish,
    against_stored,
)


@dataclass(frozen=True)
class FeatureSet:
    """One feature table: where its events come from and how a range of days of it is computed."""

    name: str
    table: str
    source: str  # raw event table
    lookback_days: int  # days before the first as-of day whose events the computation reads
    feature_view: str  # the Feast view over `table` (feature_repo/batch_features.py)
    prepare: Callable[[DataFrame], DataFrame]
    # (prepared, days, forced) -> user_id, as_of_day, columns: the change rows of `days`
    compute: Callable[..., DataFrame]
    columns: tuple[str, ...]
    uses: tuple[Callable, ...] = ()  # helpers of `compute` (part of its definition)
    constants: tuple[str, ...] = ()  # names of module constants it depends on
    lists: tuple[str, ...] = ()  # columns holding JSON lists (empty: `[]`; the others: 0)

    def definition_hash(self) -> str:
        """Changes when the computation or the output changes: its code, columns and windows."""
        module = globals()
        parts = [
            self.name,
            self.table,
            self.source,
            str(self.lookback_days),
            ",".join(self.columns),
            ",".join(self.lists),
        ]
        parts += [
            inspect.getsource(fn)
            for fn in (self.prepare, self.compute, *self.uses, *_SHARED, versioned)
        ]
        parts += [f"{name}={module[name]!r}" for name in self.constants]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


FEATURE_SETS: dict[str, FeatureSet] = {
    fs.name: fs
    for fs in (
        FeatureSet(
            "transactions",
            "user_transaction_features",
            "transactions",
            max(TXN_WINDOWS),
            "user_transactions",
            daily_transactions,
            transaction_features,
            TXN_COLUMNS,
            (sum_deltas, distinct_deltas),
            ("TXN_WINDOWS", "COUNT", "AMOUNT"),
        ),
        FeatureSet(
            "withdrawals",
            "user_withdrawal_features",
            "withdrawals",
            max(WITHDRAWAL_WINDOWS),
            "user_withdrawals",
            daily_withdrawals,
            withdrawal_features,
            WITHDRAWAL_COLUMNS,
            (sum_deltas,),
            ("WITHDRAWAL_WINDOWS", "COUNT", "AMOUNT"),
        ),
        FeatureSet(
            "logins",
            "user_login_features",
            "logins",
            1,
            "user_logins",
            daily_logins,
            login_features,
            LOGIN_COLUMNS,
            (sum_deltas,),
            ("COUNT",),
        ),
        FeatureSet(
            "profile",
            "user_profile_features",
            "logins",
            PROFILE_WINDOW,
            "user_profile",
            daily_login_values,
            profile_features,
            PROFILE_COLUMNS,
            (top_values, _tops, _profile_batches),
            ("PROFILE_WINDOW", "TOP_N", "KINDS"),
            PROFILE_COLUMNS,
        ),
    )
}


def versioned(
    rows: DataFrame, feature_set: FeatureSet, created: dt.datetime, run_id: str
) -> DataFrame:
    """Add the version columns every stored feature row carries (event_ts from as_of_day)."""
    return rows.select(
        "user_id",
        *feature_set.columns,
        # midnight after the as-of day, UTC (the session and JVM time zones are UTC)
        F.date_add(F.col("as_of_day"), 1).cast("timestamp").alias("event_ts"),
        F.lit(created).alias("created_ts"),
        F.lit(run_id).alias("run_id"),
    )
