"""`providers.tidb.textrows`: result rows read off the wire in batches, on a real MariaDB.

The reference is pymysql's own value-by-value reading (`query_to_arrow(vectorised=False)`, the path
every result took before): for every column type the two must give the same Arrow column, bit for
bit for floats. Also: rows spread over many batches and socket reads, a row of 16 MiB or more
(several packets), a query that fails after sending rows, a reader stopped early, a connection
killed mid-result.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import threading

import numpy as np
import pyarrow as pa
import pymysql
import pytest

from providers.tidb import connection, textrows
from tests.utils.tables import rows as fetch_rows

COLUMNS = [
    ("b", "TINYINT(1)"),
    ("i8", "TINYINT"),
    ("i16", "SMALLINT UNSIGNED"),
    ("i24", "MEDIUMINT"),
    ("i32", "INT"),
    ("u32", "INT UNSIGNED"),
    ("i64", "BIGINT"),
    ("yr", "YEAR"),
    ("bits", "BIT(12)"),
    ("f32", "FLOAT"),
    ("f64", "DOUBLE"),
    ("dec", "DECIMAL(30,10)"),
    ("ch", "CHAR(4)"),
    ("vc", "VARCHAR(300)"),
    ("txt", "MEDIUMTEXT"),
    ("en", "ENUM('a','bb','ccc')"),
    ("st", "SET('x','y')"),
    ("bn", "BINARY(4)"),
    ("vb", "VARBINARY(300)"),
    ("bl", "MEDIUMBLOB"),
    ("dt6", "DATETIME(6)"),
    ("dt0", "DATETIME"),
    ("dt3", "DATETIME(3)"),
    ("ts6", "TIMESTAMP(6) NULL"),
    ("d", "DATE"),
    ("tm", "TIME(6)"),
    ("js", "JSON"),
]

DOUBLES = [
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -0.0,
    0.1,
    0.1 + 0.2,
    1 / 3,
    -123456789.123456789,
    1e-300,
    6.02214076e23,
    math.pi,
    100.0,
]
FLOATS = [3.4028234e38, 1.17549435e-38, 0.1, -2.5, 16777217.0, 1.0000001]


def _value_rows() -> list[tuple]:
    every_byte = bytes(range(256))
    long_text = "é" * 40_000  # 80 000 bytes: a 3-byte length prefix (0xFD)
    rows = []
    for k in range(len(DOUBLES)):
        rows.append(
            (
                k % 2,
                -128 + k,
                65535 - k,
                -8388608 + k,
                -(2**31) + k,
                2**32 - 1 - k,
                (-1) ** k * (2**63 - 1 - k),
                1901 + k,
                k * 341,
                FLOATS[k % len(FLOATS)],
                DOUBLES[k],
                decimal.Decimal("12345678901234567890.0123456789") / (k + 1),
                ["", "a", "日本", "🙂🙂"][k % 4],
                ("x" * 250, "y" * 251, "z" * 300, "ab,\n\"'\\%s")[k % 4],
                (long_text, "", "short", "😀" * 20_000)[k % 4],
                ["a", "bb", "ccc"][k % 3],
                ["", "x", "y", "x,y"][k % 4],
                every_byte[k * 4 : k * 4 + 4],
                every_byte[k : k + 251],
                every_byte * (k * 30),  # up to 84 KiB
                dt.datetime(1000 + k * 700, 1 + k % 12, 1 + k, k, k, k, k * 83_333),
                dt.datetime(2026, 1, 1, 0, 0, k),
                dt.datetime(2026, 1, 1, 0, 0, 0, k * 1000),
                dt.datetime(2001, 2, 3, 4, 5, 6, k),
                dt.date(1000 + k * 800, 12, 31),
                dt.timedelta(hours=-838 + k * 100, microseconds=k),
                ['[1, 2.5, "x"]', '{"a": [1, {"b": null}]}', "3", '"text"', "[]", "null"][k % 6],
            )
        )
    rows.append(tuple(None for _ in COLUMNS))
    rows.append(
        (
            1,
            127,
            0,
            8388607,
            2**31 - 1,
            0,
            -(2**63),
            2155,
            4095,
            0.0,
            9007199254740993.0,
            decimal.Decimal("-0.0000000001"),
            "abcd",
            "",
            "",
            "a",
            "",
            b"\x00\x00\x00\x00",
            b"",
            b"",
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
            dt.datetime(1000, 1, 1),
            dt.datetime(1970, 1, 1),
            dt.datetime(2038, 1, 19, 3, 14, 7, 999999),
            dt.date(9999, 12, 31),
            dt.timedelta(hours=838, minutes=59, seconds=59),
            '{"k": "v"}',
        )
    )
    return rows


@pytest.fixture
def typed_table(db):
    ddl = ", ".join(f"`{n}` {t}" for n, t in COLUMNS)
    with db.cursor() as cur:
        cur.execute(f"CREATE TABLE typed (id INT PRIMARY KEY, {ddl})")
        marks = ", ".join(["%s"] * (len(COLUMNS) + 1))
        cur.executemany(
            f"INSERT INTO typed VALUES ({marks})",
            [(i, *row) for i, row in enumerate(_value_rows())],
        )
    return "typed"


def assert_same(fast: pa.Table, slow: pa.Table) -> None:
    assert fast.schema == slow.schema
    assert fast.num_rows == slow.num_rows
    for name in fast.column_names:
        a, b = fast.column(name), slow.column(name)
        assert a.to_pylist() == b.to_pylist(), name
        if pa.types.is_floating(a.type):  # -0.0 == 0.0 above; the bits must match too
            bits = np.dtype(f"u{a.type.bit_width // 8}")
            assert np.array_equal(
                a.to_numpy(zero_copy_only=False).view(bits),
                b.to_numpy(zero_copy_only=False).view(bits),
            ), name


def read_both(db, statement, **kwargs) -> tuple[pa.Table, pa.Table]:
    fast = connection.query_to_arrow(db, statement, vectorised=True, **kwargs)
    slow = connection.query_to_arrow(db, statement, vectorised=False, **kwargs)
    return fast, slow


def test_every_column_type_reads_as_pymysql_reads_it(db, typed_table):
    fast, slow = read_both(db, ("SELECT * FROM typed ORDER BY id", []), json_columns={"js"})
    assert fast.num_rows == len(DOUBLES) + 2
    assert_same(fast, slow)
    # and the values are the ones written, where a type keeps them exactly
    f64 = fast.column("f64").to_pylist()
    assert f64[: len(DOUBLES)] == DOUBLES  # (MariaDB sends -0.0 as "0"; both paths read 0.0)
    assert fast.column("bl").to_pylist()[2] == bytes(range(256)) * 60
    assert fast.column("txt").to_pylist()[0] == "é" * 40_000
    assert fast.column("dt6").type == pa.timestamp("us", tz="UTC")
    (all_null,) = fast.slice(len(DOUBLES), 1).to_pylist()
    assert all_null.pop("id") == len(DOUBLES)
    assert set(all_null.values()) == {None}


def test_expressions_and_dropped_columns_read_as_pymysql_reads_them(db, typed_table):
    statement = (
        "SELECT id, f64 / 3 AS third, CAST(i64 AS CHAR) AS text_int, d + INTERVAL 1 DAY AS "
        "next_day, NULL AS nothing, JSON_EXTRACT(js, '$[0]') AS first, %s AS bound "
        "FROM typed ORDER BY id",
        ["value's"],
    )
    fast, slow = read_both(db, statement, drop_columns={"id"})
    assert "id" not in fast.column_names
    assert_same(fast, slow)


@pytest.mark.parametrize("fetch_rows", [1, 7, 1000, 50_000])
def test_many_rows_over_many_batches_and_socket_reads(db, fetch_rows):
    with db.cursor() as cur:
        cur.execute(
            "CREATE TABLE many (id INT PRIMARY KEY, v DOUBLE, s VARCHAR(40), t DATETIME(6))"
        )
        rng = np.random.default_rng(fetch_rows)
        values = rng.normal(size=3000) * 10.0 ** rng.integers(-30, 30, 3000)
        cur.executemany(
            "INSERT INTO many VALUES (%s, %s, %s, %s)",
            [
                (
                    i,
                    None if i % 97 == 0 else float(values[i]),
                    "s" * (i % 40),
                    dt.datetime(2026, 1, 1) + dt.timedelta(microseconds=int(i) * 7_777_777),
                )
                for i in range(3000)
            ],
        )
    fast, slow = read_both(db, ("SELECT * FROM many ORDER BY id", []), fetch_rows=fetch_rows)
    assert fast.num_rows == 3000
    assert_same(fast, slow)


def test_an_empty_result_has_the_columns_and_types(db, typed_table):
    fast, slow = read_both(db, ("SELECT id, f64, dt6, vc FROM typed WHERE id < 0", []))
    assert fast.num_rows == 0
    assert fast.schema == slow.schema


def test_a_row_of_16_mib_or_more_spans_packets(db):
    big = bytes(range(256)) * (17 * 4096)  # 17 MiB: the row arrives as two packets
    with db.cursor() as cur:
        cur.execute("CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB, f DOUBLE)")
        cur.executemany(
            "INSERT INTO big VALUES (%s, %s, %s)",
            [(1, b"small", 0.5), (2, big, 1.5), (3, None, 2.5)],
        )
    table = connection.query_to_arrow(db, ("SELECT * FROM big ORDER BY id", []))
    assert table.column("id").to_pylist() == [1, 2, 3]
    assert table.column("b").to_pylist() == [b"small", big, None]
    assert table.column("f").to_pylist() == [0.5, 1.5, 2.5]
    assert fetch_rows(db, "SELECT 1") == [(1,)]  # the connection is in step after it


def test_a_query_failing_after_sending_rows_raises_and_the_connection_still_works(db):
    with db.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        cur.execute("CREATE TABLE u (k INT, v INT)")
        cur.executemany("INSERT INTO t VALUES (%s)", [(i,) for i in range(5000)])
        # only the last id has two rows in u: its scalar subquery fails after 4999 rows were sent
        cur.executemany(
            "INSERT INTO u VALUES (%s, %s)", [(i, i) for i in range(5000)] + [(4999, 0)]
        )
    statement = ("SELECT id, (SELECT v FROM u WHERE u.k = t.id) AS v FROM t ORDER BY id", [])
    with pytest.raises(pymysql.err.MySQLError, match="more than 1 row"):
        connection.query_to_arrow(db, statement, fetch_rows=100)
    assert fetch_rows(db, "SELECT COUNT(*) FROM t") == [(5000,)]


def test_a_reader_stopped_early_drops_the_rest_and_the_connection_still_works(db, typed_table):
    with db.cursor(pymysql.cursors.SSCursor) as cur:
        cur.execute("SELECT id, f64 FROM typed ORDER BY id")
        result = cur._result
        assert textrows.supported(db, result)
        kinds = [pa.int32(), pa.float64()]
        batches = textrows.read_batches(db, result, kinds, [False, False], [0, 1], 2)
        first = next(batches)
        assert first[0].to_pylist() == [0, 1]
        batches.close()
        assert not result.unbuffered_active
    assert fetch_rows(db, "SELECT COUNT(*) FROM typed") == [(len(DOUBLES) + 2,)]


def test_a_connection_killed_mid_result_raises_instead_of_hanging(db, mariadb, store_config):
    with db.cursor(pymysql.cursors.SSCursor) as cur:
        (conn_id,) = fetch_rows(db, "SELECT CONNECTION_ID()")[0]
        # one row every 10 ms from the sequence engine: the result is still streaming when killed
        cur.execute("SELECT seq, SLEEP(0.01) FROM seq_1_to_3000")
        batches = textrows.read_batches(
            db, cur._result, [pa.int64(), pa.int64()], [False, False], [0, 1], 10
        )
        assert next(batches)[0].to_pylist() == list(range(1, 11))
        killer = threading.Timer(0.05, _kill, (store_config, conn_id))
        killer.start()
        with pytest.raises(pymysql.err.OperationalError):
            for _ in batches:
                pass
        killer.join()


def _kill(store_config, conn_id: int) -> None:
    with connection.connect(store_config) as other, other.cursor() as cur:
        cur.execute("KILL %s", (conn_id,))


def test_not_supported_without_an_unbuffered_result_in_progress(db):
    assert not textrows.supported(db, None)
    with db.cursor() as cur:  # buffered: pymysql has already read every row
        cur.execute("SELECT 1")
        assert not textrows.supported(db, cur._result)
