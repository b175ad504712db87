"""LOAD DATA LOCAL INFILE on the real server: exact values, nothing skipped silently, a refusing
server detected, and no client file but the one being loaded sent."""

from __future__ import annotations

import datetime as dt
import decimal
import random

import pyarrow as pa
import pymysql
import pytest

from providers.tidb import bulk
from tests.utils.tables import create_table, rows

DDL = (
    "id BIGINT NOT NULL PRIMARY KEY, txt VARCHAR(200) NULL, js JSON NULL, x DOUBLE NULL, "
    "amount DECIMAL(14, 2) NULL, ok BOOLEAN NULL, day DATE NULL, ts DATETIME(6) NULL"
)
COLUMNS = ["id", "txt", "js", "x", "amount", "ok", "day", "ts"]
TRICKY = [
    "tab\there",
    "new\nline",
    "back\\slash",
    "\\N",
    "quote ' \" `",
    "José 😀",
    "",
    "cr\r",
    "nul\0",
]


def _table(n: int, seed: int = 3) -> pa.Table:
    rng = random.Random(seed)
    ids = list(range(n))
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "txt": pa.array(
                [None if i % 11 == 0 else TRICKY[i % len(TRICKY)] + str(i) for i in ids]
            ),
            "js": pa.array([f'["a\\\\b\\t{i}", {i}]' for i in ids]),
            "x": pa.array([rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-20, 20) for _ in ids]),
            "amount": pa.array(
                [decimal.Decimal(rng.randint(-(10**12), 10**12)) / 100 for _ in ids],
                pa.decimal128(14, 2),
            ),
            "ok": pa.array([i % 3 == 0 for i in ids]),
            "day": pa.array([dt.date(2026, 1, 1) + dt.timedelta(days=i % 400) for i in ids]),
            "ts": pa.array(
                [
                    dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
                    + dt.timedelta(microseconds=7**i % 10**12)
                    for i in ids
                ],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )


def test_loaded_values_read_back_exactly(db, store_config):
    create_table(db, "bulk_t", DDL)
    table = _table(3000)
    with bulk.connect(store_config) as conn:
        stored = bulk.load(conn, "bulk_t", COLUMNS, bulk.rows_text(table, COLUMNS), table.num_rows)
    assert stored == 3000
    got = rows(db, "SELECT id, txt, js, x, amount, ok, day, ts FROM bulk_t ORDER BY id")
    want = table.to_pylist()
    for row, expected in zip(got, want, strict=True):
        assert row[1] == expected["txt"]
        assert row[2] == expected["js"]
        assert row[3] == expected["x"]  # the same double, bit for bit
        assert row[4] == expected["amount"]
        assert bool(row[5]) == expected["ok"]
        assert row[6] == expected["day"]
        assert row[7] == expected["ts"].replace(tzinfo=None)


def test_a_row_the_server_would_skip_or_truncate_raises(db, store_config):
    create_table(db, "bulk_t", DDL)
    table = _table(10)
    with bulk.connect(store_config) as conn:
        bulk.load(conn, "bulk_t", COLUMNS, bulk.rows_text(table, COLUMNS), 10)
        with pytest.raises(bulk.BulkLoadError, match="stored 0 of 10 rows"):
            bulk.load(conn, "bulk_t", COLUMNS, bulk.rows_text(table, COLUMNS), 10)  # same keys
        long_text = pa.table({"id": [99], "txt": ["x" * 300]})
        with pytest.raises(bulk.BulkLoadError, match="warning"):
            bulk.load(conn, "bulk_t", ["id", "txt"], bulk.rows_text(long_text, ["id", "txt"]), 1)
    assert rows(db, "SELECT COUNT(*) FROM bulk_t")[0][0] == 10  # the failed loads rolled back


def test_a_server_refusing_local_infile_is_detected(db, store_config):
    create_table(db, "bulk_t", DDL)
    assert bulk.probe(store_config, "bulk_t", COLUMNS) is None
    with db.cursor() as cur:
        cur.execute("SET GLOBAL local_infile = 0")
    try:
        reason = bulk.probe(store_config, "bulk_t", COLUMNS)
    finally:
        with db.cursor() as cur:
            cur.execute("SET GLOBAL local_infile = 1")
    assert reason is not None and reason.split(":")[0] in {str(c) for c in bulk.REFUSED}


def test_only_the_file_being_loaded_is_ever_sent(tmp_path):
    """A server asking for another client file than the one being loaded gets nothing."""
    secret, loading = tmp_path / "secret", tmp_path / "load.tsv"
    secret.write_text("not for the server")
    bulk._allowed.path = str(loading)  # as during a load of `loading`
    try:
        with pytest.raises(pymysql.err.OperationalError, match="not being loaded"):
            pymysql.connections._send_local_file(str(secret).encode(), None)
    finally:
        bulk._allowed.path = None


def test_nan_is_stored_as_null_and_infinity_refused():
    text = bulk.rows_text(pa.table({"x": [1.5, float("nan"), None]}), ["x"])
    assert text == b"1.5\n\\N\n\\N\n"
    with pytest.raises(ValueError, match="infinite"):
        bulk.rows_text(pa.table({"x": [float("inf")]}), ["x"])


def test_loads_under_no_backslash_escapes(db, store_config):
    create_table(db, "bulk_t", DDL)
    with db.cursor() as cur:
        cur.execute("SET GLOBAL sql_mode = CONCAT(@@GLOBAL.sql_mode, ',NO_BACKSLASH_ESCAPES')")
    try:
        table = _table(50)
        with bulk.connect(store_config) as conn:
            bulk.load(conn, "bulk_t", COLUMNS, bulk.rows_text(table, COLUMNS), 50)
    finally:
        with db.cursor() as cur:
            cur.execute(
                "SET GLOBAL sql_mode = REPLACE(@@GLOBAL.sql_mode, 'NO_BACKSLASH_ESCAPES', '')"
            )
    got = [r[0] for r in rows(db, "SELECT txt FROM bulk_t ORDER BY id")]
    assert got == table.column("txt").to_pylist()
