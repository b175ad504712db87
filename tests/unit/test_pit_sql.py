"""SQL text of the point-in-time join: golden statements, exact key conditions, bound values."""

from __future__ import annotations

import datetime as dt

import pytest
from pymysql.constants import FIELD_TYPE

from providers.tidb import keys, pit_sql, sql
from tests.unit.test_sql import (
    END,
    END_UTC,
    START,
    START_UTC,
    assert_naive,
    assert_no_values_in_text,
    golden,
    norm,
)

TTL_US = 3_600_000_123  # 1 h and 123 us
KNOWN = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def column(name, code=FIELD_TYPE.LONGLONG, charset=None, collation=None, scale=0):
    return keys.SourceColumn(name, code, 0, scale, charset, collation)


def int_key(source: str, i: int = 0) -> pit_sql.KeyJoin:
    return pit_sql.KeyJoin(column(source), keys.KeyKind.INTEGER, pit_sql.key_column(i))


def view(name, source_from, key_joins, features, ttl_us=0, **kw) -> pit_sql.ViewQuery:
    return pit_sql.ViewQuery(
        name=name,
        source_from=source_from,
        keys=key_joins,
        features=[(f"s.{sql.quote_identifier(c)}", alias) for c, alias in features],
        timestamp_field=kw.pop("ts", "ts"),
        created_timestamp_column=kw.pop("created", None),
        ttl_us=ttl_us,
        **kw,
    )


def test_string_key_ttl_floor_created_filter_and_knowledge_time():
    latin1 = pit_sql.KeyJoin(
        column("driver", FIELD_TYPE.VAR_STRING, "latin1", "latin1_swedish_ci"),
        keys.KeyKind.STRING,
        "_feast_k0",
    )
    floor = dt.datetime(1, 1, 1, 1)
    v = pit_sql.ViewQuery(
        name="driver_hourly",
        source_from="`driver_stats`",
        keys=[latin1],
        features=[("CAST(s.`conv_rate` AS DOUBLE)", "_feast_f0_0")],
        timestamp_field="event_ts",
        created_timestamp_column="created",
        ttl_us=TTL_US,
        ttl_floor=floor,
        min_event_timestamp=START,
        max_event_timestamp=END,
        knowledge_time=KNOWN,
    )
    text, params = pit_sql.point_in_time_join(
        "_feast_entity_x", [v], [sql.ROW_ID], filter_by_created_timestamp=True
    )
    visible = """
        s.`driver` = CONVERT(CONVERT({r}.`_feast_k0` USING utf8mb4) USING latin1) COLLATE latin1_swedish_ci
        AND CAST(CONVERT(s.`driver` USING utf8mb4) AS BINARY) = {r}.`_feast_k0`
        AND s.`event_ts` <= {r}.`_feast_ts`
        AND s.`event_ts` >= DATE_SUB(GREATEST({r}.`_feast_ts`, CAST(%s AS DATETIME(6))), INTERVAL %s MICROSECOND)
        AND COALESCE(s.`created`, s.`event_ts`) <= {r}.`_feast_ts`
        AND COALESCE(s.`created`, s.`event_ts`) <= %s
    """
    expected = f"""
        WITH _feast_fv0 AS (
          SELECT `_feast_k0`, `_feast_ts`, `_feast_f0_0` FROM (
            SELECT t.`_feast_k0`, t.`_feast_ts`, CAST(s.`conv_rate` AS DOUBLE) AS `_feast_f0_0`,
              ROW_NUMBER() OVER (PARTITION BY t.`_feast_k0`, t.`_feast_ts`
                                 ORDER BY COALESCE(s.`created`, s.`event_ts`) DESC) AS _feast_rn
            FROM (
              SELECT DISTINCT e.`_feast_k0`, e.`_feast_ts`,
                (SELECT MAX(s.`event_ts`) FROM `driver_stats` AS s
                 WHERE {visible.format(r="e")}
                   AND s.`event_ts` >= %s AND s.`event_ts` <= %s) AS _feast_latest_ts
              FROM (SELECT DISTINCT `_feast_k0`, `_feast_ts` FROM `_feast_entity_x`) AS e
            ) AS t
            JOIN `driver_stats` AS s ON {visible.format(r="t")}
             AND s.`event_ts` = t._feast_latest_ts
          ) AS r WHERE r._feast_rn = 1)
        SELECT e.`_feast_row_id`, _feast_fv0.`_feast_f0_0`
        FROM `_feast_entity_x` AS e
        LEFT JOIN _feast_fv0 ON _feast_fv0.`_feast_k0` = e.`_feast_k0`
                            AND _feast_fv0.`_feast_ts` = e.`_feast_ts`
        ORDER BY e.`_feast_row_id`
    """
    assert norm(text) == golden(expected)
    known = KNOWN.replace(tzinfo=None)
    once = [floor, TTL_US, known]
    assert params == [*once, START_UTC, END_UTC, *once]
    assert text.count("%s") == len(params)
    assert_naive(params)
    assert_no_values_in_text(text, TTL_US, START, START_UTC, END, KNOWN)


def test_two_views_with_integer_keys_and_no_ttl():
    v0 = view("a", "`s0`", [int_key("user_id")], [("amt", "_feast_f0_0")])
    v1 = view(
        "b",
        "(SELECT * FROM x WHERE c LIKE 'z%%')",
        [int_key("uid", 0), int_key("mid", 1)],
        [("cnt", "_feast_f1_0"), ("sum", "_feast_f1_1")],
        ttl_us=86_400_000_000,
        ts="event_ts",
        created="created",
        min_event_timestamp=START,
        max_event_timestamp=END,
    )
    text, params = pit_sql.point_in_time_join("db.ent", [v0, v1], [sql.ROW_ID])
    expected = """
        WITH _feast_fv0 AS (SELECT `_feast_k0`, `_feast_ts`, `_feast_f0_0` FROM (
            SELECT t.`_feast_k0`, t.`_feast_ts`, s.`amt` AS `_feast_f0_0`,
              ROW_NUMBER() OVER (PARTITION BY t.`_feast_k0`, t.`_feast_ts`
                                 ORDER BY s.`ts` DESC) AS _feast_rn
            FROM (
              SELECT DISTINCT e.`_feast_k0`, e.`_feast_ts`,
                (SELECT MAX(s.`ts`) FROM `s0` AS s
                 WHERE s.`user_id` = e.`_feast_k0` AND s.`ts` <= e.`_feast_ts` AND 1 = 1)
                  AS _feast_latest_ts
              FROM (SELECT DISTINCT `_feast_k0`, `_feast_ts` FROM `db`.`ent`) AS e) AS t
            JOIN `s0` AS s ON s.`user_id` = t.`_feast_k0` AND s.`ts` <= t.`_feast_ts`
             AND s.`ts` = t._feast_latest_ts
          ) AS r WHERE r._feast_rn = 1),
        _feast_fv1 AS (SELECT `_feast_k0`, `_feast_k1`, `_feast_ts`, `_feast_f1_0`, `_feast_f1_1` FROM (
            SELECT t.`_feast_k0`, t.`_feast_k1`, t.`_feast_ts`,
              s.`cnt` AS `_feast_f1_0`, s.`sum` AS `_feast_f1_1`,
              ROW_NUMBER() OVER (PARTITION BY t.`_feast_k0`, t.`_feast_k1`, t.`_feast_ts`
                                 ORDER BY COALESCE(s.`created`, s.`event_ts`) DESC) AS _feast_rn
            FROM (
              SELECT DISTINCT e.`_feast_k0`, e.`_feast_k1`, e.`_feast_ts`,
                (SELECT MAX(s.`event_ts`) FROM (SELECT * FROM x WHERE c LIKE 'z%%') AS s
                 WHERE s.`uid` = e.`_feast_k0` AND s.`mid` = e.`_feast_k1`
                   AND s.`event_ts` <= e.`_feast_ts`
                   AND s.`event_ts` >= DATE_SUB(e.`_feast_ts`, INTERVAL %s MICROSECOND)
                   AND s.`event_ts` >= %s AND s.`event_ts` <= %s) AS _feast_latest_ts
              FROM (SELECT DISTINCT `_feast_k0`, `_feast_k1`, `_feast_ts` FROM `db`.`ent`) AS e) AS t
            JOIN (SELECT * FROM x WHERE c LIKE 'z%%') AS s
              ON s.`uid` = t.`_feast_k0` AND s.`mid` = t.`_feast_k1`
             AND s.`event_ts` <= t.`_feast_ts`
             AND s.`event_ts` >= DATE_SUB(t.`_feast_ts`, INTERVAL %s MICROSECOND)
             AND s.`event_ts` = t._feast_latest_ts
          ) AS r WHERE r._feast_rn = 1)
        SELECT e.`_feast_row_id`, _feast_fv0.`_feast_f0_0`, _feast_fv1.`_feast_f1_0`, _feast_fv1.`_feast_f1_1`
        FROM `db`.`ent` AS e
        LEFT JOIN _feast_fv0 ON _feast_fv0.`_feast_k0` = e.`_feast_k0` AND _feast_fv0.`_feast_ts` = e.`_feast_ts`
        LEFT JOIN _feast_fv1 ON _feast_fv1.`_feast_k0` = e.`_feast_k0` AND _feast_fv1.`_feast_k1` = e.`_feast_k1`
                     AND _feast_fv1.`_feast_ts` = e.`_feast_ts`
        ORDER BY e.`_feast_row_id`
    """
    assert norm(text) == golden(expected)
    assert params == [86_400_000_000, START_UTC, END_UTC, 86_400_000_000]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # utf8mb4 text: no conversion, the index condition in the column's collation
        (
            column("k", FIELD_TYPE.VAR_STRING, "utf8mb4", "utf8mb4_general_ci"),
            "s.`k` = CONVERT(e.`_feast_k0` USING utf8mb4) COLLATE utf8mb4_general_ci "
            "AND CAST(s.`k` AS BINARY) = e.`_feast_k0`",
        ),
        # binary strings compare byte for byte as they are
        (column("k", FIELD_TYPE.VAR_STRING, "binary", "binary"), "s.`k` = e.`_feast_k0`"),
    ],
)
def test_string_key_conditions(source, expected):
    kind = keys.source_kind(source)
    assert keys.match(source, kind, "s.`k`", "e.`_feast_k0`") == expected


def test_parts_split_the_views_and_line_up_by_row_id():
    views = [
        view(f"v{i}", f"`s{i}`", [int_key("k")], [(f"f{i}", f"_feast_f{i}_0")], ttl_us=100 + i)
        for i in range(3)
    ]
    head = [sql.ROW_ID, "_feast_k0", "_feast_ts"]
    whole, whole_params = pit_sql.point_in_time_join("ent", views, head)
    parts = pit_sql.point_in_time_join_parts("ent", views, head, parts=2)
    assert len(parts) == 2
    (first, first_params), (second, second_params) = parts
    assert first.startswith("WITH _feast_fv0 AS")
    assert "SELECT e.`_feast_row_id`, e.`_feast_k0`, e.`_feast_ts`," in first
    assert "SELECT _feast_fv1.`_feast_f1_0` FROM" in second  # the entity columns come once
    assert all(text.endswith("ORDER BY e.`_feast_row_id`") for text, _ in parts)
    assert "_feast_f0_0" in first and "_feast_f2_0" in first and "_feast_f1_0" not in first
    assert first_params == [100, 100, 102, 102] and second_params == [101, 101]
    assert sorted(first_params + second_params) == sorted(whole_params)
    assert pit_sql.point_in_time_join_parts("ent", views, [sql.ROW_ID], parts=1) == [
        pit_sql.point_in_time_join("ent", views, [sql.ROW_ID])
    ]
    assert len(pit_sql.point_in_time_join_parts("ent", views, [sql.ROW_ID], parts=8)) == 3
    assert whole.count("%s") == len(whole_params)


def test_view_without_join_keys():
    v = view("g", "`global_stats`", [], [("n", "_feast_f0_0")])
    text, params = pit_sql.point_in_time_join("ent", [v], ["_feast_k0", "_feast_ts"])
    expected = """
        WITH _feast_fv0 AS (SELECT `_feast_ts`, `_feast_f0_0` FROM (
            SELECT t.`_feast_ts`, s.`n` AS `_feast_f0_0`,
              ROW_NUMBER() OVER (PARTITION BY t.`_feast_ts` ORDER BY s.`ts` DESC) AS _feast_rn
            FROM (
              SELECT DISTINCT e.`_feast_ts`,
                (SELECT MAX(s.`ts`) FROM `global_stats` AS s WHERE s.`ts` <= e.`_feast_ts` AND 1 = 1)
                  AS _feast_latest_ts
              FROM (SELECT DISTINCT `_feast_ts` FROM `ent`) AS e) AS t
            JOIN `global_stats` AS s ON s.`ts` <= t.`_feast_ts` AND s.`ts` = t._feast_latest_ts
          ) AS r WHERE r._feast_rn = 1)
        SELECT e.`_feast_k0`, e.`_feast_ts`, _feast_fv0.`_feast_f0_0` FROM `ent` AS e
        LEFT JOIN _feast_fv0 ON _feast_fv0.`_feast_ts` = e.`_feast_ts`
        ORDER BY e.`_feast_row_id`
    """
    assert norm(text) == golden(expected)
    assert params == []


def test_without_views():
    text, params = pit_sql.point_in_time_join("ent", [], ["_feast_k0"])
    assert text == "SELECT e.`_feast_k0` FROM `ent` AS e  ORDER BY e.`_feast_row_id`"
    assert params == []


def test_long_feature_names_are_never_identifiers():
    """Output names live outside the SQL: a 120-character full feature name is fine."""
    long_name = "v" * 60 + "__" + "f" * 60
    v = view("v", "`t`", [int_key("k")], [("f", "_feast_f0_0")])
    text, _ = pit_sql.point_in_time_join("ent", [v], [sql.ROW_ID])
    assert long_name not in text and "`_feast_f0_0`" in text


def test_distinct_entity_rows_golden():
    sources = [
        pit_sql.EntitySource("`s0`", [("CAST(s.`acct` AS BINARY)", None)], "ts", "created"),
        pit_sql.EntitySource("(SELECT 1)", [("s.`u`", "s.`u` = FLOOR(s.`u`)")], "ets", None),
    ]
    text, params = pit_sql.distinct_entity_rows(sources, START, END, KNOWN)
    assert text == (
        "SELECT DISTINCT CAST(s.`acct` AS BINARY) AS `_feast_k0`, s.`ts` AS `_feast_ts` "
        "FROM `s0` AS s WHERE s.`ts` >= %s AND s.`ts` <= %s "
        "AND COALESCE(s.`created`, s.`ts`) <= %s UNION "
        "SELECT DISTINCT s.`u` AS `_feast_k0`, s.`ets` AS `_feast_ts` FROM (SELECT 1) AS s "
        "WHERE s.`ets` >= %s AND s.`ets` <= %s AND s.`u` = FLOOR(s.`u`) AND s.`ets` <= %s"
    )
    known = KNOWN.replace(tzinfo=None)
    assert params == [START_UTC, END_UTC, known, START_UTC, END_UTC, known]
    assert_naive(params)
    plain, plain_params = pit_sql.distinct_entity_rows(sources[:1], START, END)
    assert "COALESCE" not in plain and plain_params == [START_UTC, END_UTC]


def test_latest_by_order_reads_the_index_backwards_and_stops():
    """MariaDB and MySQL run the lookup per row: ORDER BY ... LIMIT 1 instead of MAX (TiDB keeps
    MAX, which it decorrelates); the rest of the statement and its parameters are the same."""
    v = view("a", "`s0`", [int_key("user_id")], [("amt", "_feast_f0_0")], ttl_us=5)
    by_max, params = pit_sql.point_in_time_join("ent", [v], [sql.ROW_ID])
    by_order, order_params = pit_sql.point_in_time_join(
        "ent", [v], [sql.ROW_ID], latest_by_order=True
    )
    where = (
        "WHERE s.`user_id` = e.`_feast_k0` AND s.`ts` <= e.`_feast_ts` "
        "AND s.`ts` >= DATE_SUB(e.`_feast_ts`, INTERVAL %s MICROSECOND) AND 1 = 1"
    )
    by_max_lookup = f"(SELECT MAX(s.`ts`) FROM `s0` AS s {where}) AS _feast_latest_ts"
    by_order_lookup = (
        f"(SELECT s.`ts` FROM `s0` AS s {where} ORDER BY s.`ts` DESC LIMIT 1) AS _feast_latest_ts"
    )
    assert by_max_lookup in by_max
    assert by_max.replace(by_max_lookup, by_order_lookup) == by_order
    assert order_params == params
