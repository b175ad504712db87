"""The served-feature log writer process: start-up failures are reported, not swallowed."""

from __future__ import annotations

import pytest

from serving.feature_log import ServedFeatureLogger


def test_a_writer_that_cannot_load_the_repo_fails_the_start_with_the_reason(tmp_path):
    logger = ServedFeatureLogger(str(tmp_path))  # no feature_store.yaml here
    with pytest.raises(RuntimeError, match="could not start: .*feature_store.yaml"):
        logger.start(timeout=60)
    logger.process.join(10)
    assert not logger.process.is_alive()


def test_stop_before_start_is_a_no_op():
    ServedFeatureLogger("unused").stop()


def test_served_records_become_feast_log_rows_named_by_view():
    import datetime as dt
    import pickle

    from serving.feature_log import log_rows, served_records
    from serving.features import ServedFeature

    served = [
        {
            "txn_count_7d": ServedFeature(
                value=3,
                status="PRESENT",
                age_seconds=5.0,
                stale=False,
                event_timestamp=1_700_000_000,
                vouched_timestamp=1_700_086_400.5,  # the pipeline's progress, a day later
            ),
            "ip_risk": ServedFeature(
                value=None, status="NOT_FOUND", age_seconds=None, stale=False, event_timestamp=0
            ),
        }
    ]
    records = served_records([{"user_id": 7, "amount": 12.5}], served, ["req-1"])
    # what crosses the pipe: plain tuples, no per-row column names
    records = pickle.loads(pickle.dumps(records))
    (row,) = log_rows(records, {"txn_count_7d": "user_txn", "ip_risk": "ip_stats"})
    served_at = row.pop("__log_timestamp")
    assert abs(served_at.timestamp() - records[0][2]) < 1e-3 and served_at.tzinfo == dt.UTC
    assert row == {
        "user_id": 7,
        "amount": 12.5,
        "user_txn__txn_count_7d": 3,
        "user_txn__txn_count_7d__timestamp": dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.UTC),
        "user_txn__txn_count_7d__status": 1,
        "__vouched__user_txn": dt.datetime(2023, 11, 15, 22, 13, 20, 500000, tzinfo=dt.UTC),
        "ip_stats__ip_risk": None,
        "ip_stats__ip_risk__timestamp": dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        "ip_stats__ip_risk__status": 3,  # not found: no vouched time (the column stays null)
        "__log_date": served_at.date(),
        "__request_id": "req-1",
    }
