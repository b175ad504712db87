"""Exact keys from the TiDB store, whatever the database's collation and character set.

Every test runs in a database created with each of `COLLATIONS`: a case-insensitive one
(`utf8mb4_general_ci`: 'abc' = 'ABC'), a PAD SPACE one (`utf8mb4_bin`: 'a ' = 'a') and a latin1
one ('José' = 'jose', and a different byte encoding). Keys must match on their value's bytes in
the point-in-time join, with SQL entity rows, in non-entity (time-range) retrieval, in
`pull_latest` and in the TiDB -> Redis engine; keys that cannot be matched exactly are refused.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureView, Field
from feast.types import Int64

from providers.tidb import InvalidEntityDataFrame, TiDBSource
from providers.tidb.errors import TiDBOfflineStoreError
from tests.utils.exact import (  # noqa: F401 - database_charset is a fixture
    ACCOUNT,
    T0,
    USER,
    UTC_T0,
    database_charset,
)
from tests.utils.exact import exact_store as _store
from tests.utils.exact import ints as _ints
from tests.utils.exact import view as make_view
from tests.utils.tables import create_table

# Distinct keys that collations merge: case (general_ci, latin1), accents (latin1_swedish_ci,
# general_ci), trailing spaces (every PAD SPACE collation, the _bin ones included).
STRING_KEYS = {"abc": 1, "ABC": 2, "José": 3, "Jose": 4, "a": 5, "a ": 6}


def _account_view(ttl: timedelta | None = None) -> FeatureView:
    return FeatureView(
        name="acct_v",
        entities=[ACCOUNT],
        ttl=ttl,
        schema=[Field(name="v", dtype=Int64)],
        source=TiDBSource(name="acct_src", table="acct", timestamp_field="event_ts"),
        online=True,
    )


@pytest.fixture
def accounts(db):
    """One row per string key (in the database's default character set and collation)."""
    create_table(
        db,
        "acct",
        "acct VARCHAR(16), v BIGINT, event_ts DATETIME(6), KEY (acct, event_ts)",
        pd.DataFrame(
            {"acct": list(STRING_KEYS), "v": list(STRING_KEYS.values()), "event_ts": [T0] * 6}
        ),
    )


def test_string_keys_match_on_their_bytes_in_the_point_in_time_join(repo_config, accounts):
    store = _store(repo_config, ACCOUNT, _account_view())
    keys = ["abc", "ABC", "José", "Jose", "a ", "a", "JOSÉ", "a  "]
    ents = pd.DataFrame({"acct": keys, "event_timestamp": [UTC_T0] * len(keys)})
    df = store.get_historical_features(entity_df=ents, features=["acct_v:v"]).to_df()
    assert df["acct"].tolist() == keys
    assert _ints(df["v"]) == [1, 2, 3, 4, 6, 5, None, None]


def test_string_keys_match_on_their_bytes_with_entity_rows_from_a_query(repo_config, db, accounts):
    store = _store(repo_config, ACCOUNT, _account_view())
    create_table(
        db,
        "labels",
        "acct VARCHAR(16), event_timestamp DATETIME(6)",
        pd.DataFrame({"acct": [*STRING_KEYS, "x"], "event_timestamp": [T0] * 7}),
    )
    df = store.get_historical_features(
        entity_df="SELECT acct, event_timestamp FROM labels", features=["acct_v:v"]
    ).to_df()
    assert len(df) == 7
    got = dict(zip(df["acct"], _ints(df["v"]), strict=True))
    assert got == {**STRING_KEYS, "x": None}


def test_string_keys_stay_distinct_in_time_range_retrieval(repo_config, accounts):
    store = _store(repo_config, ACCOUNT, _account_view())
    df = store.get_historical_features(
        features=["acct_v:v"],
        start_date=(UTC_T0 - timedelta(hours=1)).to_pydatetime(),
        end_date=(UTC_T0 + timedelta(hours=1)).to_pydatetime(),
    ).to_df()
    assert dict(zip(df["acct"], df["v"], strict=True)) == STRING_KEYS


def test_string_keys_stay_distinct_in_pull_latest_and_materialization(repo_config, accounts):
    store = _store(repo_config, ACCOUNT, _account_view(), engine=True)
    view = store.get_feature_view("acct_v")
    job = store._get_provider().offline_store.pull_latest_from_table_or_query(
        config=store.config,
        data_source=view.batch_source,
        join_key_columns=["acct"],
        feature_name_columns=["v"],
        timestamp_field="event_ts",
        created_timestamp_column=None,
        start_date=(UTC_T0 - timedelta(days=1)).to_pydatetime(),
        end_date=(UTC_T0 + timedelta(days=1)).to_pydatetime(),
    )
    latest = job.to_arrow().to_pydict()
    assert dict(zip(latest["acct"], latest["v"], strict=True)) == STRING_KEYS

    store.materialize(
        (UTC_T0 - timedelta(days=1)).to_pydatetime(), (UTC_T0 + timedelta(days=1)).to_pydatetime()
    )
    keys = [*STRING_KEYS, "JOSÉ"]
    online = store.get_online_features(
        features=["acct_v:v"], entity_rows=[{"acct": k} for k in keys]
    ).to_dict()
    assert online["v"] == [*STRING_KEYS.values(), None]


def test_int_keys_with_missing_values_match_exactly_and_unsafe_floats_are_refused(repo_config, db):
    big = 2**53 - 1  # the largest integer every float64 neighbourhood still holds exactly
    create_table(
        db,
        "stats",
        "user_id BIGINT, n BIGINT, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": [big, big - 1, 5], "n": [1, 2, 3], "event_ts": [T0] * 3}),
    )
    view = make_view("stats", "stats")
    store = _store(repo_config, USER, view)
    # A missing key makes pandas store the column as float64.
    ents = pd.DataFrame({"user_id": [big, None, 5.0, big - 1], "event_timestamp": [UTC_T0] * 4})
    assert ents["user_id"].dtype == np.float64
    df = store.get_historical_features(entity_df=ents, features=["stats:n"]).to_df()
    assert _ints(df["n"]) == [1, None, 3, 2]
    # 2**53 + 1 became 2**53 on its way into a float64 column: it would match another user.
    lost = pd.DataFrame({"user_id": [2**53 + 1, None], "event_timestamp": [UTC_T0] * 2})
    assert lost["user_id"].tolist()[0] == 2**53
    with pytest.raises(InvalidEntityDataFrame, match=r"beyond 2\*\*53.*Int64"):
        store.get_historical_features(entity_df=lost, features=["stats:n"]).to_df()


def test_decimal_key_column_matches_integer_keys(repo_config, db):
    create_table(
        db,
        "dec_keys",
        "user_id DECIMAL(10, 2), n BIGINT, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": [5, 6.5], "n": [1, 2], "event_ts": [T0] * 2}),
    )
    view = make_view("dec_v", "dec_keys")
    store = _store(repo_config, USER, view)
    ents = pd.DataFrame({"user_id": [5, 6, 7], "event_timestamp": [UTC_T0] * 3})
    df = store.get_historical_features(entity_df=ents, features=["dec_v:n"]).to_df()
    assert _ints(df["n"]) == [1, None, None]


def test_a_floating_point_key_column_is_refused(repo_config, db):
    create_table(
        db,
        "float_keys",
        "user_id DOUBLE, n BIGINT, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": [5.0], "n": [1], "event_ts": [T0]}),
    )
    view = make_view("float_v", "float_keys")
    store = _store(repo_config, USER, view)
    ents = pd.DataFrame({"user_id": [5], "event_timestamp": [UTC_T0]})
    with pytest.raises(TiDBOfflineStoreError, match=r"user_id.*DOUBLE.*CAST"):
        store.get_historical_features(entity_df=ents, features=["float_v:n"]).to_df()


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ([1, 2], "strings"),  # a STRING entity given ints
        (["x", b"y"], "strings"),
    ],
)
def test_entity_keys_of_the_wrong_kind_are_refused(repo_config, accounts, keys, problem):
    store = _store(repo_config, ACCOUNT, _account_view())
    ents = pd.DataFrame({"acct": keys, "event_timestamp": [UTC_T0] * len(keys)})
    with pytest.raises(InvalidEntityDataFrame, match=rf"acct.*{problem}"):
        store.get_historical_features(entity_df=ents, features=["acct_v:v"]).to_df()


def test_text_written_through_the_store_keeps_its_characters(repo_config, db):
    """Pushed rows reach a table in the database's character set (latin1 here, for one of the
    collations) as the same characters, not as their UTF-8 bytes re-read as latin1."""
    from providers.tidb import TiDBOfflineStore

    create_table(db, "pushed", "acct VARCHAR(16), v BIGINT, event_ts DATETIME(6)")
    view = FeatureView(
        name="pushed",
        entities=[ACCOUNT],
        ttl=None,
        schema=[Field(name="v", dtype=Int64)],
        source=TiDBSource(name="pushed_src", table="pushed", timestamp_field="event_ts"),
    )
    store = _store(repo_config, ACCOUNT, view)
    rows = pa.table(
        {
            "acct": list(STRING_KEYS),
            "v": list(STRING_KEYS.values()),
            "event_ts": pa.array([T0.to_pydatetime()] * 6, pa.timestamp("us")),
        }
    )
    TiDBOfflineStore.offline_write_batch(store.config, view, rows, None)
    with db.cursor() as cur:
        cur.execute("SELECT acct, v FROM pushed ORDER BY v")
        assert dict(cur.fetchall()) == STRING_KEYS
    ents = pd.DataFrame({"acct": list(STRING_KEYS), "event_timestamp": [UTC_T0] * 6})
    df = store.get_historical_features(entity_df=ents, features=["pushed:v"]).to_df()
    assert _ints(df["v"]) == list(STRING_KEYS.values())


def test_fractional_int_keys_are_refused(repo_config, db):
    create_table(db, "s2", "user_id BIGINT, n BIGINT, event_ts DATETIME(6)")
    view = make_view("s2", "s2")
    store = _store(repo_config, USER, view)
    ents = pd.DataFrame({"user_id": [1.5], "event_timestamp": [UTC_T0]})
    with pytest.raises(InvalidEntityDataFrame, match=r"user_id.*whole numbers"):
        store.get_historical_features(entity_df=ents, features=["s2:n"]).to_df()
