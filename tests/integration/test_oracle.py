"""Oracle tests for the point-in-time join of `get_historical_features`.

On seeded random data (about 200 users, three feature views over three tables, ~2k entity rows)
the TiDB store's answer is compared row for row with

1. a plain pandas as-of join written here (independent of the store's code), and
2. Feast's own DuckDB offline store reading the same rows from parquet files.

The contract: for every entity row and view, the feature row with the same join key, the latest
event time <= the entity row's time and >= that time minus the view's TTL (inclusive; no TTL means
unbounded), ties on event time going to the latest created timestamp. Entity rows with no match
get nulls (they are not dropped), duplicate entity rows each get their own result row, and a NULL
value in the winning row stays NULL (no fall-back to an older row).

The data is built so that the expected answer is unique: (user, event time, created time) is
unique in the views with a created timestamp and (user, event time) is unique in the view without
one. It deliberately contains event-time ties broken by created time, entity times equal to
feature times, entity times exactly at feature time + TTL (included) and just past it (excluded,
also by one microsecond), entity times before any feature row, users without any feature row,
NULL feature values and duplicate entity rows. `_diagnostics` checks that each of these cases
actually decides some expected values, so the comparison cannot pass on trivial data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, ValueType
from feast.repo_config import RegistryConfig, RepoConfig
from feast.types import Float64, Int64, String

from providers.tidb import TiDBSource
from tests.conftest import COLLATIONS
from tests.utils.tables import create_table

SEEDS = [7, 2024, 31337]
BASE = pd.Timestamp("2026-01-01 00:00:00", tz="UTC")
SPAN_SECONDS = 30 * 86400
N_USERS = 200
N_FEATURELESS_USERS = 15
ENTITY_TS = "event_timestamp"


@dataclass(frozen=True)
class ViewDef:
    name: str
    table: str
    ttl: timedelta | None
    ts_col: str
    created_col: str | None
    features: tuple[tuple[str, str], ...]  # (name, kind): kind in float / int / str
    n_rows: int
    index: bool  # give the MariaDB table an index on (user_id, event time)


VIEWS = (
    ViewDef(
        name="short",
        table="feat_short",
        ttl=timedelta(days=1),
        ts_col="event_ts",
        created_col="created_ts",
        features=(("amount", "float"), ("cnt", "int")),
        n_rows=5000,
        index=True,
    ),
    ViewDef(
        name="week",
        table="feat_week",
        ttl=timedelta(days=7),
        ts_col="ts",
        created_col=None,
        features=(("score", "float"), ("category", "str")),
        n_rows=2500,
        index=False,
    ),
    ViewDef(
        name="life",
        table="feat_life",
        ttl=None,
        ts_col="event_time",
        created_col="created_at",
        features=(("total", "float"), ("level", "int")),
        n_rows=1500,
        index=False,
    ),
)
FEATURE_REFS = [f"{v.name}:{f}" for v in VIEWS for f, _ in v.features]
FEAST_TYPES = {"float": Float64, "int": Int64, "str": String}
SQL_TYPES = {"float": "DOUBLE", "int": "BIGINT", "str": "VARCHAR(32)"}


@dataclass
class Data:
    features: dict[str, pd.DataFrame]  # view name -> rows (timestamps tz-aware UTC)
    entity_df: pd.DataFrame  # row_id, user_id, event_timestamp, label
    users: np.ndarray
    featureless_users: np.ndarray


# --------------------------------------------------------------------------- data


def _seconds(values) -> pd.TimedeltaIndex:
    return pd.to_timedelta(np.asarray(values, dtype="int64"), unit="s")


def _with_nulls(rng: np.random.RandomState, values: pd.Series, p: float) -> pd.Series:
    return values.mask(rng.rand(len(values)) < p)


def _feature_rows(rng: np.random.RandomState, view: ViewDef, users: np.ndarray) -> pd.DataFrame:
    n = view.n_rows
    df = pd.DataFrame(
        {
            "user_id": rng.choice(users, n).astype("int64"),
            view.ts_col: BASE + _seconds(rng.randint(0, SPAN_SECONDS, n)),
        }
    )
    if view.created_col:
        df[view.created_col] = df[view.ts_col] + _seconds(rng.randint(0, 7200, n))
        # Event-time ties: ~15% of the rows get a sibling at the same event time, created at an
        # independent random time (so the winner is sometimes the earlier inserted row, sometimes not).
        ties = df.sample(n=n * 15 // 100, random_state=rng).copy()
        ties[view.created_col] = ties[view.ts_col] + _seconds(rng.randint(0, 7200, len(ties)))
        df = pd.concat([df, ties], ignore_index=True)
        df = df.drop_duplicates(["user_id", view.ts_col, view.created_col], ignore_index=True)
    else:
        df = df.drop_duplicates(["user_id", view.ts_col], ignore_index=True)
    m = len(df)
    for name, kind in view.features:
        if kind == "float":
            values = pd.Series(np.round(rng.normal(0, 100, m), 4))
            df[name] = _with_nulls(rng, values, 0.12)
        elif kind == "int":
            values = pd.Series(rng.randint(-(10**6), 10**6, m)).astype("Int64")
            df[name] = _with_nulls(rng, values, 0.12)
        else:
            values = pd.Series(rng.choice(["a", "b", "c", "d", "e"], m), dtype=object)
            values = _with_nulls(rng, values, 0.12)
            df[name] = values.astype(object).where(values.notna(), None)
    # Shuffle, so that the insertion order says nothing about time order.
    return df.sample(frac=1.0, random_state=rng).reset_index(drop=True)


def _entity_rows(
    rng: np.random.RandomState,
    features: dict[str, pd.DataFrame],
    users: np.ndarray,
    featureless: np.ndarray,
) -> pd.DataFrame:
    parts: list[pd.DataFrame] = []

    def add(user_ids, timestamps) -> None:
        parts.append(
            pd.DataFrame(
                {
                    "user_id": np.asarray(user_ids, dtype="int64"),
                    ENTITY_TS: pd.DatetimeIndex(timestamps).tz_convert("UTC"),
                }
            )
        )

    # Random rows over the whole range, from 2 days before the first feature row to 2 days after.
    n = 1000
    add(
        rng.choice(users, n),
        BASE + _seconds(rng.randint(-2 * 86400, SPAN_SECONDS + 2 * 86400, n)),
    )
    # Users without any feature row.
    add(rng.choice(featureless, 60), BASE + _seconds(rng.randint(0, SPAN_SECONDS, 60)))
    # Before any feature row of anyone.
    add(rng.choice(users, 40), BASE - _seconds(rng.randint(1, 86400, 40)))
    for view in VIEWS:
        rows = features[view.name]
        ts = pd.DatetimeIndex(rows[view.ts_col])

        def sample(k: int, rows=rows, ts=ts) -> tuple[np.ndarray, pd.DatetimeIndex]:
            idx = rng.choice(len(rows), k, replace=False)
            return rows["user_id"].to_numpy()[idx], ts[idx]

        # Entity time == a feature row's event time (the row must be included).
        add(*sample(150))
        # Just before a feature row's event time (that row must be excluded).
        u, t = sample(40)
        add(u, t - pd.Timedelta(seconds=1))
        u, t = sample(20)
        add(u, t - pd.Timedelta(microseconds=1))
        # Just before each user's first feature row.
        first = rows.groupby("user_id")[view.ts_col].min()
        pick = rng.choice(len(first), 30, replace=False)
        add(
            first.index.to_numpy()[pick],
            pd.DatetimeIndex(first.to_numpy()[pick]) - pd.Timedelta(seconds=1),
        )
        if view.ttl:
            # Exactly at event time + TTL (included), and just past it (excluded).
            add(*_shift(sample(150), view.ttl))
            add(*_shift(sample(50), view.ttl + pd.Timedelta(seconds=1)))
            add(*_shift(sample(20), view.ttl + pd.Timedelta(microseconds=1)))
    entity = pd.concat(parts, ignore_index=True)
    # Duplicate entity rows: each copy must get its own result row.
    dups = entity.sample(n=200, random_state=rng)
    entity = pd.concat([entity, dups, dups.iloc[:30]], ignore_index=True)
    entity = entity.sample(frac=1.0, random_state=rng).reset_index(drop=True)
    # Row ids unrelated to the row order, so that sorting by them is a real re-ordering.
    entity.insert(0, "row_id", (rng.permutation(len(entity)) * 3 + 11).astype("int64"))
    entity["label"] = rng.randint(0, 2, len(entity)).astype("int64")
    return entity


def _shift(sampled, delta) -> tuple[np.ndarray, pd.DatetimeIndex]:
    users, ts = sampled
    return users, ts + pd.Timedelta(delta)


def with_string_keys(data: Data) -> Data:
    """The same data keyed by strings that collations merge: each group of four distinct users
    is 'uN', 'UN' (case), 'uN ' (a trailing space: PAD SPACE) and 'üN' (accent)."""
    ids = np.sort(np.unique(np.concatenate([data.users, data.entity_df["user_id"].to_numpy()])))

    def variant(i: int) -> str:
        base = f"u{i // 4}"
        return [base, base.upper(), base + " ", "ü" + base[1:]][i % 4]

    names = {int(u): variant(i) for i, u in enumerate(ids)}

    def rekey(df: pd.DataFrame) -> pd.DataFrame:
        out = df.copy()
        out["user_id"] = out["user_id"].map(lambda u: names[int(u)]).astype(object)
        return out

    # Entity rows whose keys collide with another row's at the same time: a store comparing
    # under the collation merges them (DISTINCT) or matches one to the other's features.
    entity = rekey(data.entity_df)
    rng = np.random.RandomState(len(entity))
    twins = entity.sample(n=300, random_state=rng).copy()
    group = {
        v: [names[int(u)] for u in ids[(i // 4) * 4 : (i // 4) * 4 + 4]]
        for i, v in enumerate(names[int(u)] for u in ids)
    }
    twins["user_id"] = [
        [k for k in group[v] if k != v][rng.randint(0, len(group[v]) - 1)]
        if len(group[v]) > 1
        else v
        for v in twins["user_id"]
    ]
    twins["row_id"] = entity["row_id"].max() + 1 + np.arange(len(twins))
    entity = pd.concat([entity, twins], ignore_index=True)
    return Data(
        {name: rekey(df) for name, df in data.features.items()},
        entity,
        np.array([names[int(u)] for u in data.users], dtype=object),
        np.array([names[int(u)] for u in data.featureless_users], dtype=object),
    )


def make_data(seed: int) -> Data:
    rng = np.random.RandomState(seed)
    all_users = pd.unique(rng.randint(1, 10**9, 2 * N_USERS).astype("int64"))[:N_USERS]
    all_users[0] = 2**40 + 17  # beyond 32 bits
    featureless = all_users[:N_FEATURELESS_USERS]
    with_features = all_users[N_FEATURELESS_USERS:]
    features = {}
    for view in VIEWS:
        # Each view covers ~85% of the users that have features, so some users lack only some views.
        keep = with_features[rng.rand(len(with_features)) < 0.85]
        features[view.name] = _feature_rows(rng, view, keep)
    entity = _entity_rows(rng, features, all_users, featureless)
    return Data(features, entity, all_users, featureless)


# --------------------------------------------------------------------------- the oracle


def _out(view: ViewDef, feature: str, full_feature_names: bool) -> str:
    return f"{view.name}__{feature}" if full_feature_names else feature


def oracle(data: Data, full_feature_names: bool = False) -> pd.DataFrame:
    """A plain as-of join: candidates by key and time window, latest (event, created) time wins."""
    expected = data.entity_df.copy()
    for view in VIEWS:
        _, winners = _candidates_and_winners(data, view)
        names = [f for f, _ in view.features]
        renamed = winners[["row_id", *names]].rename(
            columns={f: _out(view, f, full_feature_names) for f in names}
        )
        expected = expected.merge(renamed, on="row_id", how="left", validate="one_to_one")
    assert len(expected) == len(data.entity_df)
    return expected


def _candidates_and_winners(data: Data, view: ViewDef) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = data.features[view.name]
    cand = data.entity_df[["row_id", "user_id", ENTITY_TS]].merge(rows, on="user_id", how="inner")
    cand = cand[cand[view.ts_col] <= cand[ENTITY_TS]]
    if view.ttl:
        cand = cand[cand[view.ts_col] >= cand[ENTITY_TS] - view.ttl]
    order = ["row_id", view.ts_col] + ([view.created_col] if view.created_col else [])
    # The expected answer must be unique: no two candidates share the full sort key.
    assert not cand.duplicated(order).any(), f"{view.name}: ambiguous test data"
    cand = cand.sort_values(order, kind="mergesort")
    winners = cand.groupby("row_id", sort=False).tail(1)
    return cand, winners


def _diagnostics(data: Data, view: ViewDef) -> dict[str, int]:
    """How many entity rows each tricky case decides (all must be > 0 for a meaningful test)."""
    cand, win = _candidates_and_winners(data, view)
    first = view.features[0][0]
    ent = data.entity_df
    diag = {
        "matched": len(win),
        "unmatched": len(ent) - len(win),
        "entity_ts_equals_feature_ts": int((win[view.ts_col] == win[ENTITY_TS]).sum()),
        "null_in_winning_row": int(win[first].isna().sum()),
    }
    # NULL in the winning row while an older candidate has a value: must stay NULL.
    has_value = cand[cand[first].notna()].groupby("row_id").size()
    null_win = win[win[first].isna()]
    diag["null_wins_over_older_value"] = int(null_win["row_id"].isin(has_value.index).sum())
    if view.created_col:
        same_event = cand.merge(win[["row_id", view.ts_col]], on=["row_id", view.ts_col])
        diag["event_time_tie_broken_by_created"] = int(
            (same_event.groupby("row_id").size() > 1).sum()
        )
    if view.ttl:
        diag["at_ttl_boundary"] = int((win[view.ts_col] == win[ENTITY_TS] - view.ttl).sum())
        # Rows that have older feature rows, all of them outside the TTL: the TTL empties them.
        older = ent[["row_id", "user_id", ENTITY_TS]].merge(
            data.features[view.name][["user_id", view.ts_col]], on="user_id"
        )
        older = older[older[view.ts_col] <= older[ENTITY_TS]]
        diag["expired_by_ttl"] = int((~older["row_id"].drop_duplicates().isin(win["row_id"])).sum())
    return diag


# --------------------------------------------------------------------------- the stores


def _entity(data: Data) -> Entity:
    strings = data.entity_df["user_id"].dtype == object
    value_type = ValueType.STRING if strings else ValueType.INT64
    return Entity(name="user", join_keys=["user_id"], value_type=value_type)


def _schema(view: ViewDef) -> list[Field]:
    return [Field(name=f, dtype=FEAST_TYPES[kind]) for f, kind in view.features]


def _ddl(view: ViewDef, data: Data) -> str:
    key = "VARCHAR(32)" if data.entity_df["user_id"].dtype == object else "BIGINT"
    cols = [f"user_id {key} NOT NULL", f"`{view.ts_col}` DATETIME(6) NOT NULL"]
    if view.created_col:
        cols.append(f"`{view.created_col}` DATETIME(6) NOT NULL")
    cols += [f"`{f}` {SQL_TYPES[kind]} NULL" for f, kind in view.features]
    if view.index:
        cols.append(f"INDEX (user_id, `{view.ts_col}`)")
    return ", ".join(cols)


def _for_sql(df: pd.DataFrame) -> pd.DataFrame:
    """Nullable ints as Python objects with None (the plain-SQL helper binds them as is)."""
    out = df.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.Int64Dtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def _feature_views(data: Data, make_source) -> list:
    """The same entity and views for both stores; only the source differs."""
    user = _entity(data)
    views = [
        FeatureView(
            name=view.name,
            entities=[user],
            ttl=view.ttl,
            schema=_schema(view),
            source=make_source(
                view,
                name=f"{view.name}_src",
                timestamp_field=view.ts_col,
                created_timestamp_column=view.created_col or "",
            ),
        )
        for view in VIEWS
    ]
    return [user, *views]


def tidb_store(repo_config, db, data: Data) -> FeatureStore:
    for view in VIEWS:
        create_table(db, view.table, _ddl(view, data), _for_sql(data.features[view.name]))
    store = FeatureStore(config=repo_config)
    store.apply(_feature_views(data, lambda view, **kw: TiDBSource(table=view.table, **kw)))
    return store


def duckdb_store(tmp_path, data: Data) -> FeatureStore:
    root = tmp_path / "duckdb_repo"
    root.mkdir()
    for view in VIEWS:
        data.features[view.name].to_parquet(root / f"{view.table}.parquet", index=False)
    config = RepoConfig(
        project="oracle_duckdb",
        provider="local",
        registry=RegistryConfig(path=str(root / "registry.db"), cache_ttl_seconds=0),
        offline_store={"type": "duckdb"},
        online_store={"type": "sqlite", "path": str(root / "online.db")},
        entity_key_serialization_version=3,
        repo_path=root,
    )
    store = FeatureStore(config=config)
    store.apply(
        _feature_views(
            data, lambda view, **kw: FileSource(path=str(root / f"{view.table}.parquet"), **kw)
        )
    )
    return store


# --------------------------------------------------------------------------- comparison


def _normalised(df: pd.DataFrame) -> pd.DataFrame:
    out = df.sort_values("row_id", kind="mergesort").reset_index(drop=True)
    # Both sides to tz-aware UTC at microsecond precision (naive values are read as UTC).
    out[ENTITY_TS] = pd.to_datetime(out[ENTITY_TS], utc=True).astype("datetime64[us, UTC]")
    return out


def assert_frames_match(actual: pd.DataFrame, expected: pd.DataFrame, who: str, columns) -> None:
    assert len(actual) == len(expected), f"{who}: {len(actual)} rows, expected {len(expected)}"
    missing = [c for c in ["row_id", "user_id", ENTITY_TS, *columns] if c not in actual.columns]
    assert not missing, f"{who}: missing columns {missing}; got {list(actual.columns)}"
    assert actual["row_id"].is_unique, f"{who}: duplicated row ids"
    a, e = _normalised(actual), _normalised(expected)
    assert a["row_id"].tolist() == e["row_id"].tolist(), f"{who}: different row ids"
    assert a["user_id"].tolist() == e["user_id"].tolist(), f"{who}: user_id"
    assert (a[ENTITY_TS] == e[ENTITY_TS]).all(), f"{who}: entity timestamps changed"
    if "label" in actual.columns:  # the caller's extra columns come back unchanged
        assert a["label"].tolist() == e["label"].tolist(), f"{who}: label"
    kinds = {_k: kind for v in VIEWS for f, kind in v.features for _k in (f, f"{v.name}__{f}")}
    problems = []
    for col in columns:
        if kinds.get(col) == "str":
            av = a[col].astype(object).where(a[col].notna(), None)
            ev = e[col].astype(object).where(e[col].notna(), None)
            bad = ~np.array([x == y for x, y in zip(av, ev, strict=True)])
        else:
            av = pd.to_numeric(a[col]).astype("float64").to_numpy()
            ev = pd.to_numeric(e[col]).astype("float64").to_numpy()
            bad = ~np.isclose(av, ev, rtol=1e-9, atol=1e-9, equal_nan=True)
        if bad.any():
            sample = pd.DataFrame(
                {
                    "row_id": a["row_id"][bad],
                    "user_id": a["user_id"][bad],
                    ENTITY_TS: a[ENTITY_TS][bad],
                    "actual": np.asarray(av, dtype=object)[bad],
                    "expected": np.asarray(ev, dtype=object)[bad],
                }
            ).head(8)
            problems.append(f"{col}: {int(bad.sum())} of {len(a)} rows differ\n{sample}")
    assert not problems, f"{who} disagrees with the pandas oracle:\n" + "\n".join(problems)


def _check_sanity(data: Data, expected: pd.DataFrame, columns: list[str]) -> None:
    """The comparison must be meaningful: many values, some nulls, every tricky case exercised."""
    n = len(expected)
    assert 1800 <= n <= 3000, n
    assert data.entity_df.duplicated(["user_id", ENTITY_TS]).sum() >= 200
    assert sum(len(df) for df in data.features.values()) >= 8000
    for col in columns:
        share = expected[col].notna().mean()
        assert 0.2 < share < 0.95, f"{col}: {share:.2f} non-null"
    for view in VIEWS:
        diag = _diagnostics(data, view)
        assert all(v > 0 for v in diag.values()), f"{view.name}: a case is not exercised: {diag}"


def _columns(full_feature_names: bool) -> list[str]:
    return [_out(v, f, full_feature_names) for v in VIEWS for f, _ in v.features]


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", SEEDS)
def test_historical_features_match_oracles(seed, repo_config, db, tmp_path):
    data = make_data(seed)
    columns = _columns(False)
    expected = oracle(data)
    _check_sanity(data, expected, columns)

    tidb = tidb_store(repo_config, db, data)
    actual = tidb.get_historical_features(
        entity_df=data.entity_df.copy(), features=FEATURE_REFS
    ).to_df()
    assert "label" in actual.columns
    assert_frames_match(actual, expected, "TiDB store", columns)

    duck = duckdb_store(tmp_path, data)
    reference = duck.get_historical_features(
        entity_df=data.entity_df.copy(), features=FEATURE_REFS
    ).to_df()
    assert_frames_match(reference, expected, "DuckDB store", columns)


@pytest.mark.parametrize("database_charset", list(COLLATIONS.values()), ids=list(COLLATIONS))
def test_string_keys_match_oracles_under_every_collation(repo_config, db, tmp_path):
    """Keys that case-, accent- and PAD SPACE-insensitive collations merge stay distinct: the
    database, its tables and the store's scratch tables all use the collation under test."""
    data = with_string_keys(make_data(SEEDS[2]))
    columns = _columns(False)
    expected = oracle(data)
    _check_sanity(data, expected, columns)
    assert expected["user_id"].str.endswith(" ").any() and expected["user_id"].str.isupper().any()

    tidb = tidb_store(repo_config, db, data)
    actual = tidb.get_historical_features(
        entity_df=data.entity_df.copy(), features=FEATURE_REFS
    ).to_df()
    assert_frames_match(actual, expected, "TiDB store (string keys)", columns)

    duck = duckdb_store(tmp_path, data)
    reference = duck.get_historical_features(
        entity_df=data.entity_df.copy(), features=FEATURE_REFS
    ).to_df()
    assert_frames_match(reference, expected, "DuckDB store (string keys)", columns)


def test_full_feature_names_match_oracles(repo_config, db, tmp_path):
    """Prefixed output names; entity times given in a non-UTC zone (+05:30) come back as UTC."""
    data = make_data(SEEDS[0])
    columns = _columns(True)
    expected = oracle(data, full_feature_names=True)
    entity_df = data.entity_df.copy()
    entity_df[ENTITY_TS] = entity_df[ENTITY_TS].dt.tz_convert("Asia/Kolkata")

    tidb = tidb_store(repo_config, db, data)
    actual = tidb.get_historical_features(
        entity_df=entity_df.copy(), features=FEATURE_REFS, full_feature_names=True
    ).to_df()
    assert not set(_columns(False)) & set(actual.columns)
    assert_frames_match(actual, expected, "TiDB store (full feature names, +05:30)", columns)

    duck = duckdb_store(tmp_path, data)
    reference = duck.get_historical_features(
        entity_df=entity_df.copy(), features=FEATURE_REFS, full_feature_names=True
    ).to_df()
    assert_frames_match(reference, expected, "DuckDB store (full feature names, +05:30)", columns)


def test_entity_sql_query_matches_oracle(repo_config, db):
    data = make_data(SEEDS[1])
    columns = _columns(False)
    expected = oracle(data)
    create_table(
        db,
        "entity_rows",
        f"row_id BIGINT NOT NULL, user_id BIGINT NOT NULL, {ENTITY_TS} DATETIME(6) NOT NULL",
        data.entity_df[["row_id", "user_id", ENTITY_TS]],
    )
    tidb = tidb_store(repo_config, db, data)
    actual = tidb.get_historical_features(
        entity_df=f"SELECT user_id, {ENTITY_TS}, row_id FROM entity_rows",
        features=FEATURE_REFS,
    ).to_df()
    assert_frames_match(actual, expected, "TiDB store (SQL entity query)", columns)
