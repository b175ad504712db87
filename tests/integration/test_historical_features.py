"""get_historical_features against a real MySQL-protocol server: semantics and edge cases."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest
from feast import FeatureService, FeatureStore, FeatureView, Field, RequestSource
from feast.errors import InvalidEntityType
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64

from providers.tidb import InvalidEntityDataFrame
from tests.conftest import COLLATIONS
from tests.utils.repo import USER, store_with, user_view
from tests.utils.tables import create_table, rows

DDL = "user_id BIGINT, spend DOUBLE, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)"


@pytest.fixture(params=list(COLLATIONS), ids=list(COLLATIONS))
def database_charset(request) -> str:
    """Every join test runs in a database of each collation users run (answers must not move)."""
    return COLLATIONS[request.param]


T0 = pd.Timestamp("2026-01-10 00:00:00")


def _features(*records) -> pd.DataFrame:
    return pd.DataFrame(records, columns=["user_id", "spend", "n", "event_ts", "created_ts"])


def _entities(*records, extra=None) -> pd.DataFrame:
    df = pd.DataFrame(records, columns=["user_id", "event_timestamp"])
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    if extra:
        for k, v in extra.items():
            df[k] = v
    return df


def _get(store: FeatureStore, entity_df, features=("user_stats:spend", "user_stats:n"), **kw):
    return store.get_historical_features(entity_df=entity_df, features=list(features), **kw).to_df()


def _scratch_tables(db) -> list:
    return rows(
        db,
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME LIKE %s",
        ("\\_feast\\_entity\\_%",),
    )


@pytest.fixture
def store(repo_config, db):
    day = timedelta(days=1)
    create_table(
        db,
        "user_stats",
        DDL,
        _features(
            (1, 10.0, 1, T0, T0),
            (1, 11.0, 2, T0, T0 + timedelta(hours=1)),  # same event time, created later: wins
            (1, 12.0, 3, T0 + day, T0 + day),
            (2, None, 4, T0, T0),  # NULL feature value
            (3, 30.0, 5, T0 - day, T0 - day),
        ),
    )
    return store_with(repo_config, user_view(ttl=day))


def test_latest_row_at_or_before_entity_time(store, db):
    df = _get(store, _entities((1, T0 + timedelta(hours=12)), (1, T0 + timedelta(days=1)), (1, T0)))
    assert df["spend"].tolist() == [
        11.0,
        12.0,
        11.0,
    ]  # equal time is visible; tie -> latest created
    assert df["n"].tolist() == [2, 3, 2]
    assert _scratch_tables(db) == []  # the scratch entity table is gone


def test_ttl_boundary_is_inclusive(store):
    edge = T0 - timedelta(days=1) + timedelta(days=1)  # user 3's row + TTL
    df = _get(store, _entities((3, edge), (3, edge + timedelta(microseconds=1))))
    assert df["spend"].tolist()[0] == 30.0
    assert pd.isna(df["spend"].tolist()[1])


def test_rows_without_features_are_kept_with_nulls(store):
    df = _get(store, _entities((1, T0 - timedelta(seconds=1)), (99, T0), (2, T0)))
    assert len(df) == 3
    assert df["spend"].isna().tolist() == [
        True,
        True,
        True,
    ]  # before any row, unknown user, NULL value
    assert df["n"].tolist()[2] == 4  # the NULL is the row's value, not a fallback to another row


def test_duplicate_entity_rows_each_get_a_result_in_input_order(store):
    ents = _entities((1, T0 + timedelta(days=1)), (1, T0), (1, T0 + timedelta(days=1)), (1, T0))
    df = _get(store, ents)
    assert df["spend"].tolist() == [12.0, 11.0, 12.0, 11.0]


def test_naive_and_aware_timestamps_mean_the_same_instant(store):
    naive = pd.DataFrame({"user_id": [1], "event_timestamp": [T0 + timedelta(hours=23)]})
    aware = pd.DataFrame(
        {
            "user_id": [1],
            "event_timestamp": [
                (T0 + timedelta(hours=23)).tz_localize("UTC").tz_convert("Asia/Kolkata")
            ],
        }
    )
    shifted = pd.DataFrame(
        {
            "user_id": [1],
            "event_timestamp": [(T0 + timedelta(hours=23)).tz_localize("Asia/Kolkata")],
        }
    )  # 5h30 earlier in UTC
    a, b, c = _get(store, naive), _get(store, aware), _get(store, shifted)
    assert a["spend"].tolist() == b["spend"].tolist() == [11.0]
    assert c["spend"].tolist() == [11.0]
    assert str(a["event_timestamp"].dt.tz) == "UTC"
    assert a["event_timestamp"].iloc[0] == b["event_timestamp"].iloc[0]


def test_extra_entity_columns_come_back_unchanged(store):
    ents = _entities((1, T0), (2, T0), extra={"label": [True, False], "note": ["a", None]})
    df = _get(store, ents)
    assert df.columns.tolist() == ["user_id", "event_timestamp", "label", "note", "spend", "n"]
    assert df["label"].dtype == bool and df["note"].tolist() == ["a", None]


def test_empty_entity_dataframe(store):
    ents = _entities().astype({"user_id": "int64"})
    df = _get(store, ents)
    assert len(df) == 0 and {"spend", "n"} <= set(df.columns)


def test_full_feature_names(store):
    df = _get(store, _entities((1, T0)), full_feature_names=True)
    assert df["user_stats__spend"].tolist() == [11.0]


def test_entity_df_as_sql_query(store, db):
    create_table(
        db,
        "label_events",
        "uid BIGINT, user_id BIGINT, event_timestamp DATETIME(6)",
        pd.DataFrame(
            {
                "uid": [7, 8],
                "user_id": [1, 3],
                "event_timestamp": [T0 + timedelta(hours=2), T0 - timedelta(hours=1)],
            }
        ),
    )
    df = _get(store, "SELECT uid, user_id, event_timestamp FROM label_events WHERE uid LIKE '%'")
    df = df.sort_values("uid")
    assert df["spend"].tolist() == [11.0, 30.0]
    assert str(df["event_timestamp"].dt.tz) == "UTC"
    assert _scratch_tables(db) == []


def test_field_mapping_and_join_key_map(repo_config, db):
    create_table(
        db,
        "acct",
        "account BIGINT, amt DOUBLE, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)",
        pd.DataFrame(
            {"account": [5], "amt": [1.5], "n": [1], "event_ts": [T0], "created_ts": [T0]}
        ),
    )
    view = user_view(
        name="acct_stats", table="acct", field_mapping={"amt": "spend", "account": "user_id"}
    )
    store = store_with(repo_config, view)
    ents = pd.DataFrame({"payer": [5], "event_timestamp": [T0.tz_localize("UTC")]})
    # A projection with a join key map, as a feature service holds it.
    svc = FeatureService(name="payer_svc", features=[view.with_join_key_map({"user_id": "payer"})])
    store.apply([svc])
    df = store.get_historical_features(
        entity_df=ents, features=store.get_feature_service("payer_svc")
    ).to_df()
    assert df["spend"].tolist() == [1.5]


def test_on_demand_view_over_batch_and_request_data(repo_config, db):
    create_table(db, "user_stats", DDL, _features((1, 10.0, 1, T0, T0)))
    view = user_view()
    request = RequestSource(name="txn", schema=[Field(name="amount", dtype=Float64)])

    @on_demand_feature_view(sources=[view, request], schema=[Field(name="ratio", dtype=Float64)])
    def amount_vs_spend(inputs: pd.DataFrame) -> pd.DataFrame:
        return pd.DataFrame({"ratio": inputs["amount"] / inputs["spend"]})

    store = store_with(repo_config, view, request, amount_vs_spend)
    ents = _entities((1, T0), extra={"amount": [25.0]})
    df = _get(store, ents, features=["user_stats:spend", "amount_vs_spend:ratio"])
    assert df["ratio"].tolist() == [2.5]


def test_filter_by_created_timestamp(store):
    # At T0+30min the created-later tie (created T0+1h) was not known yet.
    df = _get(store, _entities((1, T0 + timedelta(minutes=30))), filter_by_created_timestamp=True)
    assert df["spend"].tolist() == [10.0]
    df = _get(store, _entities((1, T0 + timedelta(minutes=30))))
    assert df["spend"].tolist() == [11.0]


def test_non_entity_mode_uses_rows_in_the_range(store):
    job = store.get_historical_features(
        features=["user_stats:spend"],
        start_date=(T0 - timedelta(hours=1)).to_pydatetime(),
        end_date=(T0 + timedelta(hours=1)).to_pydatetime(),
    )
    df = job.to_df().sort_values("user_id")
    assert df["user_id"].tolist() == [1, 2]  # distinct (user, event time) in range
    assert df["spend"].tolist()[0] == 11.0 and pd.isna(df["spend"].tolist()[1])


def test_to_sql_and_metadata(store):
    ents = _entities((1, T0), (2, T0 + timedelta(days=1)))
    job = store.get_historical_features(entity_df=ents, features=["user_stats:spend"])
    text = job.to_sql()
    assert "`user_stats`" in text and "ROW_NUMBER() OVER" in text and "%s" not in text
    assert job.metadata.features == ["user_stats:spend"]
    assert job.metadata.keys == ["user_id"]
    assert job.metadata.min_event_timestamp == T0.tz_localize("UTC")
    assert job.metadata.max_event_timestamp == (T0 + timedelta(days=1)).tz_localize("UTC")


# ----------------------------------------------------------------------- bad input


def test_entity_df_of_wrong_type(store):
    with pytest.raises(InvalidEntityType):
        store.get_historical_features(entity_df=[{"user_id": 1}], features=["user_stats:spend"])


def test_entity_df_without_timestamp_column(store):
    with pytest.raises(InvalidEntityDataFrame, match="event_timestamp"):
        _get(store, pd.DataFrame({"user_id": [1], "when": ["yesterday"]}))


def test_entity_df_without_join_key(store):
    with pytest.raises(InvalidEntityDataFrame, match="user_id"):
        _get(store, pd.DataFrame({"customer": [1], "event_timestamp": [T0.tz_localize("UTC")]}))


def test_entity_df_with_unparseable_or_empty_timestamps(store):
    with pytest.raises(InvalidEntityDataFrame, match="timestamps"):
        _get(store, pd.DataFrame({"user_id": [1], "event_timestamp": ["not a time"]}))
    with pytest.raises(InvalidEntityDataFrame, match="empty timestamps"):
        _get(store, pd.DataFrame({"user_id": [1, 2], "event_timestamp": [T0, pd.NaT]}))


def test_scratch_table_dropped_when_query_fails(repo_config, db):
    create_table(db, "user_stats", DDL)
    store = store_with(repo_config, user_view())
    with db.cursor() as cur:
        cur.execute(
            "ALTER TABLE user_stats DROP COLUMN spend"
        )  # the view now names a missing column
    with pytest.raises(Exception, match="spend"):
        _get(store, _entities((1, T0)))
    assert _scratch_tables(db) == []


def test_view_over_a_query_source(repo_config, db):
    from providers.tidb import TiDBSource

    create_table(db, "raw", DDL, _features((1, 10.0, 1, T0, T0), (1, 99.0, 2, T0, T0)))
    view = FeatureView(
        name="q_stats",
        entities=[USER],
        ttl=None,
        schema=[Field(name="spend", dtype=Float64), Field(name="n", dtype=Int64)],
        source=TiDBSource(
            name="q_src",
            query="SELECT * FROM raw WHERE spend < 50",
            timestamp_field="event_ts",
            created_timestamp_column="created_ts",
        ),
    )
    store = store_with(repo_config, view)
    df = _get(store, _entities((1, T0 + timedelta(days=400))), features=["q_stats:spend"])
    assert df["spend"].tolist() == [10.0]  # TTL None: unbounded look-back


def test_percent_signs_in_queries_and_names(repo_config, db):
    """`%` in a query source, in a SQL entity query and in a column name reaches the server intact."""
    from providers.tidb import TiDBSource

    create_table(
        db,
        "pct",
        "user_id BIGINT, `rate%` DOUBLE, tag VARCHAR(8), event_ts DATETIME(6)",
        pd.DataFrame(
            {"user_id": [1, 2], "rate%": [0.5, 0.7], "tag": ["a%", "b"], "event_ts": [T0, T0]}
        ),
    )
    view = FeatureView(
        name="pct_view",
        entities=[USER],
        ttl=None,
        schema=[Field(name="rate%", dtype=Float64), Field(name="mod3", dtype=Int64)],
        source=TiDBSource(
            name="pct_src",
            timestamp_field="event_ts",
            query="SELECT user_id, `rate%`, user_id % 3 AS mod3, event_ts FROM pct WHERE tag LIKE 'a%'",
        ),
    )
    store = store_with(repo_config, view)
    from providers.tidb import TiDBOfflineStore

    TiDBOfflineStore().validate_data_source(repo_config, view.batch_source)
    create_table(
        db,
        "days",
        "user_id BIGINT, day VARCHAR(10)",
        pd.DataFrame({"user_id": [1, 2], "day": ["2026-01-11", "2026-01-11"]}),
    )
    entity_sql = "SELECT user_id, STR_TO_DATE(CONCAT(day, ' 06'), '%Y-%m-%d %H') AS event_timestamp FROM days WHERE day LIKE '2026-%'"
    df = _get(store, entity_sql, features=["pct_view:rate%", "pct_view:mod3"]).sort_values(
        "user_id"
    )
    assert df["rate%"].tolist()[0] == 0.5 and pd.isna(
        df["rate%"].tolist()[1]
    )  # user 2's tag is not LIKE 'a%'
    assert df["mod3"].tolist()[0] == 1


def test_string_keys_match_exactly_under_a_case_insensitive_collation(repo_config, db):
    from feast import Entity, ValueType

    from providers.tidb import TiDBSource

    create_table(
        db,
        "acct_ci",
        "acct VARCHAR(16) COLLATE utf8mb4_general_ci, v BIGINT, event_ts DATETIME(6)",
        pd.DataFrame({"acct": ["abc", "ABC", "a"], "v": [1, 2, 3], "event_ts": [T0, T0, T0]}),
    )
    account = Entity(name="account", join_keys=["acct"], value_type=ValueType.STRING)
    view = FeatureView(
        name="acct_v",
        entities=[account],
        ttl=None,
        schema=[Field(name="v", dtype=Int64)],
        source=TiDBSource(name="acct_ci_src", table="acct_ci", timestamp_field="event_ts"),
    )
    store = FeatureStore(config=repo_config)
    store.apply([account, view])
    ents = pd.DataFrame(
        {"acct": ["abc", "ABC", "A", "a "], "event_timestamp": [T0.tz_localize("UTC")] * 4}
    )
    df = store.get_historical_features(entity_df=ents, features=["acct_v:v"]).to_df()
    assert df["v"].tolist()[:2] == [1, 2]
    assert df["v"].isna().tolist()[2:] == [True, True]


def test_as_of_pins_retrieval_to_a_knowledge_time(repo_config, db):
    """Rows created after the knowledge time are invisible; views without a created column use event time."""
    from providers.tidb import as_of

    v1, v2 = T0 + timedelta(hours=1), T0 + timedelta(days=3)  # knowledge times of two backfill runs
    create_table(
        db,
        "user_stats",
        DDL,
        _features(
            (1, 10.0, 1, T0, v1),  # first version of the row for T0
            (1, 99.0, 9, T0, v2),  # a later re-run recomputed the same event time
        ),
    )
    create_table(
        db,
        "events_nc",
        "user_id BIGINT, spend DOUBLE, n BIGINT, event_ts DATETIME(6)",
        pd.DataFrame(
            {
                "user_id": [1, 1],
                "spend": [1.0, 2.0],
                "n": [1, 2],
                "event_ts": [T0, T0 + timedelta(days=2)],
            }
        ),
    )
    store = store_with(
        repo_config,
        user_view(ttl=None),
        user_view(name="nc", table="events_nc", created=None, ttl=None),
    )
    ents = _entities((1, T0 + timedelta(days=5)))
    feats = ["user_stats:spend", "nc:n"]
    latest = _get(store, ents, features=feats)
    assert latest["spend"].tolist() == [99.0] and latest["n"].tolist() == [2]
    with as_of(v1 + timedelta(minutes=1)) as pinned:
        job = store.get_historical_features(entity_df=ents, features=feats)
    assert job.as_of == pinned
    first = job.to_df()  # executed outside the block: the pin belongs to the job
    assert first["spend"].tolist() == [10.0]
    assert first["n"].tolist() == [1]  # the event on T0+2d was not known at T0+1h
    with as_of("2000-01-01T00:00:00Z"):
        assert _get(store, ents, features=feats)[["spend", "n"]].isna().all(axis=None)
    with pytest.raises(ValueError, match="as_of needs a timestamp"):
        with as_of("last tuesday"):
            pass
