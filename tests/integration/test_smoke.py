import pandas as pd

from tests.utils.repo import store_with, user_view
from tests.utils.tables import create_table


def test_point_in_time_smoke(repo_config, db):
    feats = pd.DataFrame(
        {
            "user_id": [1, 1, 2],
            "spend": [10.0, 20.0, 5.0],
            "n": [1, 2, 3],
            "event_ts": pd.to_datetime(
                ["2026-01-01 00:00", "2026-01-02 00:00", "2026-01-01 12:00"]
            ),
            "created_ts": pd.to_datetime(
                ["2026-01-01 00:00", "2026-01-02 00:00", "2026-01-01 12:00"]
            ),
        }
    )
    create_table(
        db,
        "user_stats",
        "user_id BIGINT, spend DOUBLE, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)",
        feats,
    )
    store = store_with(repo_config, user_view())
    entity_df = pd.DataFrame(
        {
            "user_id": [1, 1, 2, 3],
            "event_timestamp": pd.to_datetime(
                ["2026-01-01 06:00", "2026-01-02 06:00", "2026-01-03 06:00", "2026-01-02 00:00"],
                utc=True,
            ),
            "label": [0, 1, 0, 1],
        }
    )
    df = store.get_historical_features(
        entity_df=entity_df, features=["user_stats:spend", "user_stats:n"]
    ).to_df()
    print(df)
    assert list(df["spend"].fillna(-1)) == [10.0, 20.0, -1, -1]
