"""Exact values from the TiDB store: declared types, knowledge time, names and limits.

Every test runs in a database of each of `COLLATIONS`, as the key tests do.
"""

from __future__ import annotations

import datetime as dt
import math
import struct
import subprocess
import sys
import threading
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from feast import FeatureView, Field
from feast.types import (
    Array,
    Bool,
    Float32,
    Float64,
    Int32,
    Int64,
    String,
    UnixTimestamp,
)

from providers.tidb import TiDBSource, as_of
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
from tests.utils.tables import create_table

# ----------------------------------------------------------------------------- types

FLOAT32_VALUES = [
    1 / 7,
    3.4028234663852886e38,  # the largest float32
    1.401298464324817e-45,  # the smallest subnormal float32
    1.1754943508222875e-38,  # the smallest normal float32 (MariaDB stores -0.0 as 0: not here)
    0.1,
    123456.789,
]


def _float32(values) -> list[float]:
    """The float32 nearest each value, as a Python float (what a FLOAT column stores)."""
    return [struct.unpack("<f", struct.pack("<f", v))[0] for v in values]


def test_float32_features_come_back_bit_identical(repo_config, db):
    stored = _float32(FLOAT32_VALUES)
    n = len(stored)
    create_table(
        db,
        "ratios",
        "user_id BIGINT, ratio FLOAT, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": range(n), "ratio": stored, "event_ts": [T0] * n}),
    )
    view = FeatureView(
        name="ratios",
        entities=[USER],
        ttl=None,
        schema=[Field(name="ratio", dtype=Float32)],
        source=TiDBSource(name="ratios_src", table="ratios", timestamp_field="event_ts"),
        online=True,
    )
    store = _store(repo_config, USER, view, engine=True)
    ents = pd.DataFrame({"user_id": range(n), "event_timestamp": [UTC_T0] * n})
    table = store.get_historical_features(entity_df=ents, features=["ratios:ratio"]).to_arrow()
    assert table.schema.field("ratio").type == pa.float32()
    got = table.column("ratio").to_numpy()
    assert got.tobytes() == np.array(stored, dtype=np.float32).tobytes()

    store.materialize(
        (UTC_T0 - timedelta(days=1)).to_pydatetime(), (UTC_T0 + timedelta(days=1)).to_pydatetime()
    )
    online = store.get_online_features(
        features=["ratios:ratio"], entity_rows=[{"user_id": i} for i in range(n)]
    ).to_dict()
    assert np.array(online["ratio"], dtype=np.float32).tobytes() == got.tobytes()


ARRAY_TYPES = {
    "i32s": (Array(Int32), pa.int32()),
    "i64s": (Array(Int64), pa.int64()),
    "f32s": (Array(Float32), pa.float32()),
    "f64s": (Array(Float64), pa.float64()),
    "flags": (Array(Bool), pa.bool_()),
    "names": (Array(String), pa.string()),
    "stamps": (Array(UnixTimestamp), pa.timestamp("us", tz="UTC")),
}


def _array_view(name: str = "arrays") -> FeatureView:
    return FeatureView(
        name=name,
        entities=[USER],
        ttl=None,
        schema=[Field(name=c, dtype=t) for c, (t, _) in ARRAY_TYPES.items()],
        source=TiDBSource(
            name=f"{name}_src",
            table=name,
            timestamp_field="event_ts",
            json_columns=list(ARRAY_TYPES),
        ),
    )


def test_array_features_keep_their_declared_types_when_empty_or_null(repo_config, db):
    cols = ", ".join(f"{c} JSON" for c in ARRAY_TYPES)
    create_table(
        db,
        "arrays",
        f"user_id BIGINT, {cols}, event_ts DATETIME(6)",
        pd.DataFrame(
            {
                "user_id": [1, 2],
                **{c: ["[]", None] for c in ARRAY_TYPES},
                "event_ts": [T0, T0],
            }
        ),
    )
    store = _store(repo_config, USER, _array_view())
    ents = pd.DataFrame({"user_id": [1, 2, 3], "event_timestamp": [UTC_T0] * 3})
    table = store.get_historical_features(
        entity_df=ents, features=[f"arrays:{c}" for c in ARRAY_TYPES]
    ).to_arrow()
    for column, (_, element) in ARRAY_TYPES.items():
        assert table.schema.field(column).type == pa.list_(element), column
        assert table.column(column).to_pylist() == [[], None, None], column


def test_array_features_hold_declared_element_types(repo_config, db):
    cols = ", ".join(f"{c} JSON" for c in ARRAY_TYPES)
    stamp = dt.datetime(2026, 1, 9, 12, 30, 15, 123456, tzinfo=dt.UTC)
    values = {
        "i32s": "[1, -2]",
        "i64s": "[9007199254740993]",  # 2**53 + 1: exact as an int, not as a double
        "f32s": "[0.1]",
        "f64s": "[0.1, 1e300]",
        "flags": "[true, false]",
        "names": '["José", ""]',
        "stamps": '["2026-01-09T12:30:15.123456+00:00", "2026-01-09T12:30:15.123456Z"]',
    }
    create_table(
        db,
        "arrays",
        f"user_id BIGINT, {cols}, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": [1], **{c: [v] for c, v in values.items()}, "event_ts": [T0]}),
    )
    store = _store(repo_config, USER, _array_view())
    ents = pd.DataFrame({"user_id": [1], "event_timestamp": [UTC_T0]})
    table = store.get_historical_features(
        entity_df=ents, features=[f"arrays:{c}" for c in ARRAY_TYPES]
    ).to_arrow()
    row = table.to_pylist()[0]
    assert row["i32s"] == [1, -2]
    assert row["i64s"] == [9007199254740993]
    assert row["f32s"] == _float32([0.1])
    assert row["f64s"] == [0.1, 1e300]
    assert row["flags"] == [True, False]
    assert row["names"] == ["José", ""]
    assert row["stamps"] == [stamp, stamp]
    for column, (_, element) in ARRAY_TYPES.items():
        assert table.schema.field(column).type == pa.list_(element), column


def test_scalar_features_take_their_declared_types(repo_config, db):
    """Columns narrower or wider than the declaration come back as declared."""
    create_table(
        db,
        "mixed",
        "user_id INT, n INT, small BIGINT, flag TINYINT, amount DECIMAL(12, 2), "
        "label VARCHAR(8), event_ts DATETIME(6)",
        pd.DataFrame(
            {
                "user_id": [1],
                "n": [7],
                "small": [-3],
                "flag": [1],
                "amount": [12.5],
                "label": ["x"],
                "event_ts": [T0],
            }
        ),
    )
    view = FeatureView(
        name="mixed",
        entities=[USER],
        ttl=None,
        schema=[
            Field(name="n", dtype=Int64),
            Field(name="small", dtype=Int32),
            Field(name="flag", dtype=Bool),
            Field(name="amount", dtype=Float64),
            Field(name="label", dtype=String),
        ],
        source=TiDBSource(name="mixed_src", table="mixed", timestamp_field="event_ts"),
    )
    store = _store(repo_config, USER, view)
    ents = pd.DataFrame({"user_id": [1, 2], "event_timestamp": [UTC_T0] * 2})
    table = store.get_historical_features(
        entity_df=ents, features=[f"mixed:{c}" for c in ("n", "small", "flag", "amount", "label")]
    ).to_arrow()
    expected = {
        "n": pa.int64(),
        "small": pa.int32(),
        "flag": pa.bool_(),
        "amount": pa.float64(),
        "label": pa.string(),
    }
    for column, kind in expected.items():
        assert table.schema.field(column).type == kind, column
    assert table.slice(0, 1).to_pylist()[0] | {"event_timestamp": None} == {
        "user_id": 1,
        "event_timestamp": None,
        "n": 7,
        "small": -3,
        "flag": True,
        "amount": 12.5,
        "label": "x",
    }


def test_a_value_that_does_not_fit_its_declared_type_is_an_error(repo_config, db):
    create_table(
        db,
        "wide",
        "user_id BIGINT, small BIGINT, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": [1], "small": [2**40], "event_ts": [T0]}),
    )
    view = FeatureView(
        name="wide",
        entities=[USER],
        ttl=None,
        schema=[Field(name="small", dtype=Int32)],
        source=TiDBSource(name="wide_src", table="wide", timestamp_field="event_ts"),
    )
    store = _store(repo_config, USER, view)
    ents = pd.DataFrame({"user_id": [1], "event_timestamp": [UTC_T0]})
    with pytest.raises(TiDBOfflineStoreError, match=r"small.*Int32"):
        store.get_historical_features(entity_df=ents, features=["wide:small"]).to_arrow()


# ----------------------------------------------------------------------------- knowledge time


def _versions_view(created: str | None = "created_ts") -> FeatureView:
    return FeatureView(
        name="versions",
        entities=[USER],
        ttl=None,
        schema=[Field(name="n", dtype=Int64)],
        source=TiDBSource(
            name="versions_src",
            table="versions",
            timestamp_field="event_ts",
            created_timestamp_column=created or "",
        ),
    )


def test_as_of_pins_time_range_retrieval_to_rows_known_then(repo_config, db):
    """A backfill after the pin adds entity rows and values: the pinned training set ignores both."""
    pinned = T0 + timedelta(hours=1)
    create_table(
        db,
        "versions",
        "user_id BIGINT, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)",
        pd.DataFrame(
            {
                "user_id": [1, 2, 1],
                "n": [10, 20, 11],
                "event_ts": [T0, T0, T0],
                # user 2's row and user 1's second version came from a later backfill
                "created_ts": [T0, pinned + timedelta(days=1), pinned + timedelta(days=1)],
            }
        ),
    )
    store = _store(repo_config, USER, _versions_view())
    window = dict(
        start_date=(UTC_T0 - timedelta(hours=1)).to_pydatetime(),
        end_date=(UTC_T0 + timedelta(hours=1)).to_pydatetime(),
    )
    now = store.get_historical_features(features=["versions:n"], **window).to_df()
    assert sorted(zip(now["user_id"], now["n"], strict=True)) == [(1, 11), (2, 20)]
    with as_of(pinned.tz_localize("UTC")):
        then = store.get_historical_features(features=["versions:n"], **window).to_df()
    assert list(zip(then["user_id"], then["n"], strict=True)) == [(1, 10)]


def test_rows_without_a_created_timestamp_are_known_from_their_event_time(repo_config, db):
    create_table(
        db,
        "versions",
        "user_id BIGINT, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)",
        pd.DataFrame(
            {
                "user_id": [1, 1, 2],
                "n": [1, 2, 3],
                "event_ts": [T0, T0 + timedelta(days=1), T0],
                "created_ts": [None, None, T0 + timedelta(days=3)],
            }
        ),
    )
    store = _store(repo_config, USER, _versions_view())
    ents = pd.DataFrame({"user_id": [1, 2], "event_timestamp": [UTC_T0 + timedelta(days=5)] * 2})
    now = store.get_historical_features(entity_df=ents, features=["versions:n"]).to_df()
    assert now["n"].tolist() == [2, 3]
    with as_of(UTC_T0 + timedelta(hours=12)):
        df = store.get_historical_features(entity_df=ents, features=["versions:n"]).to_df()
    # user 1: the row of T0 (no created time: known at its event time); the T0+1d row not yet.
    # user 2: created at T0+3d, after the pin.
    assert _ints(df["n"]) == [1, None]


def test_a_thread_started_inside_as_of_fails_loudly_instead_of_reading_unpinned(repo_config, db):
    create_table(
        db,
        "versions",
        "user_id BIGINT, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)",
        pd.DataFrame({"user_id": [1], "n": [1], "event_ts": [T0], "created_ts": [T0]}),
    )
    store = _store(repo_config, USER, _versions_view())
    ents = pd.DataFrame({"user_id": [1], "event_timestamp": [UTC_T0]})
    errors: list[BaseException] = []

    def retrieve() -> None:
        try:
            store.get_historical_features(entity_df=ents, features=["versions:n"]).to_df()
        except BaseException as exc:
            errors.append(exc)

    with as_of(UTC_T0):
        thread = threading.Thread(target=retrieve)
        thread.start()
        thread.join()
    assert len(errors) == 1 and "as_of" in str(errors[0])
    retrieve()  # outside the block nothing is pinned, in any thread
    assert len(errors) == 1


def test_a_process_started_inside_as_of_inherits_the_pin(repo_config, db, tmp_path):
    create_table(
        db,
        "versions",
        "user_id BIGINT, n BIGINT, event_ts DATETIME(6), created_ts DATETIME(6)",
        pd.DataFrame(
            {
                "user_id": [1, 1],
                "n": [1, 2],
                "event_ts": [T0, T0],
                "created_ts": [T0, T0 + timedelta(days=2)],
            }
        ),
    )
    store = _store(repo_config, USER, _versions_view())
    import yaml

    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "feature_store.yaml").write_text(
        yaml.safe_dump(
            {
                "project": store.config.project,
                "provider": "local",
                "registry": {"path": str(repo_config.repo_path / "r.db"), "cache_ttl_seconds": 0},
                "offline_store": store.config.offline_store.model_dump(mode="json"),
                "online_store": {"type": "redis", "connection_string": "127.0.0.1:1"},
                "entity_key_serialization_version": 3,
            }
        )
    )
    script = f"""
import pandas as pd
from feast import FeatureStore
store = FeatureStore(repo_path={str(tmp_path / "repo")!r})
ents = pd.DataFrame({{"user_id": [1], "event_timestamp": [pd.Timestamp("{UTC_T0 + timedelta(days=5)}")]}})
print(store.get_historical_features(entity_df=ents, features=["versions:n"]).to_df()["n"].tolist())
"""
    with as_of(UTC_T0 + timedelta(days=1)):
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[1]"


# ----------------------------------------------------------------------------- names and limits


def test_full_feature_names_longer_than_an_sql_identifier(repo_config, db):
    view_name = "account_takeover_login_velocity_features_v2"  # 43 characters
    feature = "failed_login_attempts_from_new_devices_in_1d"  # 44 characters
    create_table(
        db,
        "velocity",
        f"user_id BIGINT, {feature} BIGINT, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": [1], feature: [4], "event_ts": [T0]}),
    )
    view = FeatureView(
        name=view_name,
        entities=[USER],
        ttl=None,
        schema=[Field(name=feature, dtype=Int64)],
        source=TiDBSource(name="velocity_src", table="velocity", timestamp_field="event_ts"),
    )
    store = _store(repo_config, USER, view)
    ents = pd.DataFrame({"user_id": [1], "event_timestamp": [UTC_T0]})
    df = store.get_historical_features(
        entity_df=ents, features=[f"{view_name}:{feature}"], full_feature_names=True
    ).to_df()
    assert df[f"{view_name}__{feature}"].tolist() == [4]


def test_a_ttl_reaching_before_year_one_means_no_lower_bound(repo_config, db):
    create_table(
        db,
        "old",
        "user_id BIGINT, n BIGINT, event_ts DATETIME(6)",
        pd.DataFrame({"user_id": [1], "n": [7], "event_ts": [pd.Timestamp("1990-05-01")]}),
    )
    view = FeatureView(
        name="old",
        entities=[USER],
        ttl=timedelta(days=365 * 2100),  # reaches before year 1 from 2026
        schema=[Field(name="n", dtype=Int64)],
        source=TiDBSource(name="old_src", table="old", timestamp_field="event_ts"),
    )
    store = _store(repo_config, USER, view)
    ents = pd.DataFrame(
        {"user_id": [1, 1], "event_timestamp": [UTC_T0, pd.Timestamp("1990-04-01", tz="UTC")]}
    )
    df = store.get_historical_features(entity_df=ents, features=["old:n"]).to_df()
    assert _ints(df["n"]) == [7, None]
    assert not math.isnan(df["n"].iloc[0])
