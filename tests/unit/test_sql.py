"""SQL text of the TiDB offline store: quoting, golden statements, bound values, `render`."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from providers.tidb import sql
from providers.tidb.errors import InvalidIdentifier
from providers.tidb.reader import render

PLUS_2 = dt.timezone(dt.timedelta(hours=2))
START = dt.datetime(2024, 1, 1, 12, 0, tzinfo=PLUS_2)  # 10:00 UTC
START_UTC = dt.datetime(2024, 1, 1, 10, 0)
END = dt.datetime(2024, 2, 1, 0, 0, 30, 123456)  # naive: already UTC
END_UTC = END


def norm(text: str) -> str:
    return " ".join(text.split())


def golden(text: str) -> str:
    """An expected statement written over several lines, as the one line the code renders."""
    return norm(text).replace("( ", "(").replace(" )", ")")


def assert_no_values_in_text(text: str, *values: object) -> None:
    """No bound value may leak into the SQL text, in any usual string form."""
    for value in values:
        forms = {str(value), repr(value)}
        if isinstance(value, dt.datetime):
            forms |= {value.isoformat(), value.strftime("%Y-%m-%d"), value.isoformat(sep=" ")}
        for form in forms:
            assert form not in text, f"{form!r} appears in the SQL text"


def assert_naive(params: list) -> None:
    for p in params:
        if isinstance(p, dt.datetime):
            assert p.tzinfo is None, f"{p!r} is bound tz-aware"


# --------------------------------------------------------------------------- quoting


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("user_id", "`user_id`"),
        ("a`b", "`a``b`"),
        ("``", "``````"),
        ("with space", "`with space`"),
        (" leading", "` leading`"),
        ("naïve", "`naïve`"),
        ("x" * 64, "`" + "x" * 64 + "`"),
        ("a.b", "`a.b`"),  # quote_identifier does not split
    ],
)
def test_quote_identifier(name, quoted):
    assert sql.quote_identifier(name) == quoted


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "non-empty"),
        (None, "non-empty"),
        (42, "non-empty"),
        ("a\x00b", "NUL"),
        ("x" * 65, "longer than 64"),
        ("trailing ", "trailing spaces"),
        ("trailing\t", "trailing spaces"),
        ("   ", "trailing spaces"),
    ],
)
def test_quote_identifier_rejects(name, why):
    with pytest.raises(InvalidIdentifier, match=why):
        sql.quote_identifier(name)


def test_invalid_identifier_is_a_value_error_naming_the_input():
    with pytest.raises(ValueError, match=re.escape("'bad\\x00'")):
        sql.quote_identifier("bad\x00")


def test_injection_attempt_is_one_quoted_identifier():
    evil = "x`; DROP TABLE y; --"
    quoted = sql.quote_identifier(evil)
    assert quoted == "`x``; DROP TABLE y; --`"
    # Strip the outer quotes: every backtick left inside comes in a doubled pair.
    inner = quoted[1:-1]
    assert inner.replace("``", "") == "x; DROP TABLE y; --"
    assert sql.quote_table(evil) == quoted


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("t", "`t`"),
        ("db.t", "`db`.`t`"),
        ("d`b.t`x", "`d``b`.`t``x`"),
        ("feast_offline.driver_stats", "`feast_offline`.`driver_stats`"),
    ],
)
def test_quote_table(name, quoted):
    assert sql.quote_table(name) == quoted


@pytest.mark.parametrize(
    "name", ["a.b.c", "a..b", "db.", ".t", "", "db.t ", "db." + "x" * 65, "db.a\x00", None]
)
def test_quote_table_rejects(name):
    with pytest.raises(InvalidIdentifier):
        sql.quote_table(name)


# --------------------------------------------------------------------------- embedded queries


@pytest.mark.parametrize(
    ("query", "embedded"),
    [
        ("SELECT 1", "SELECT 1"),
        ("SELECT 1;", "SELECT 1"),
        ("  SELECT 1 ;\n", "SELECT 1 "),
        ("SELECT 1;;", "SELECT 1"),
        ("SELECT * FROM t WHERE a LIKE 'x%'", "SELECT * FROM t WHERE a LIKE 'x%%'"),
        ("SELECT '%s', 5 % 2;", "SELECT '%%s', 5 %% 2"),
    ],
)
def test_embed_query(query, embedded):
    assert sql.embed_query(query) == embedded


def test_from_expression():
    assert sql.from_expression("db.t", None) == "`db`.`t`"
    assert sql.from_expression(None, "SELECT a FROM t WHERE b LIKE '%z';") == (
        "(SELECT a FROM t WHERE b LIKE '%%z'\n)"
    )


def test_from_expression_survives_trailing_line_comment():
    expr = sql.from_expression(None, "SELECT * FROM t -- latest rows")
    statement, _ = sql.pull_all(expr, ["k"], ["f"], "ts", None, None, None)
    # MySQL `-- ` comments run to the end of the line: nothing after one may be on that line.
    for line in statement.splitlines():
        if "-- " in line:
            assert line.rstrip().endswith("-- latest rows"), line


# --------------------------------------------------------------------------- timestamps


def test_naive_utc():
    assert sql.naive_utc(START) == START_UTC
    assert sql.naive_utc(START).tzinfo is None
    assert sql.naive_utc(END) is END
    assert sql.naive_utc(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)) == dt.datetime(2024, 1, 1)


# --------------------------------------------------------------------------- pull_all / latest


def test_pull_all_golden():
    text, params = sql.pull_all(
        "`db`.`driver_stats`", ["driver_id"], ["conv_rate", "trips"], "event_ts", "created",
        START, END,
    )  # fmt: skip
    assert norm(text) == golden(
        """
        SELECT s.`driver_id`, s.`conv_rate`, s.`trips`, s.`event_ts`, s.`created`
        FROM `db`.`driver_stats` AS s
        WHERE s.`event_ts` >= %s AND s.`event_ts` <= %s
        """
    )
    assert params == [START_UTC, END_UTC]
    assert_naive(params)
    assert_no_values_in_text(text, START, START_UTC, END)


def test_pull_all_open_range_and_all_columns():
    text, params = sql.pull_all("(SELECT 1)", [], [], "ts", None, None, None)
    assert text == "SELECT s.* FROM (SELECT 1) AS s WHERE 1 = 1"
    assert params == []


def test_pull_all_only_start():
    text, params = sql.pull_all("`t`", ["k"], ["f"], "ts", None, START, None)
    assert text == "SELECT s.`k`, s.`f`, s.`ts` FROM `t` AS s WHERE s.`ts` >= %s"
    assert params == [START_UTC]


def test_pull_all_deduplicates_columns():
    text, _ = sql.pull_all("`t`", ["k"], ["k", "f", "ts"], "ts", "ts", None, END)
    assert text == "SELECT s.`k`, s.`f`, s.`ts` FROM `t` AS s WHERE s.`ts` <= %s"


def test_pull_latest_golden():
    text, params = sql.pull_latest(
        "`driver_stats`", ["driver_id", "city"], ["conv_rate"], "event_ts", "created", START, END
    )
    assert norm(text) == golden(
        """
        SELECT r.`driver_id`, r.`city`, r.`conv_rate`, r.`event_ts`, r.`created` FROM (
          SELECT s.`driver_id`, s.`city`, s.`conv_rate`, s.`event_ts`, s.`created`,
                 ROW_NUMBER() OVER (PARTITION BY s.`driver_id`, s.`city`
                                    ORDER BY s.`event_ts` DESC,
                                             COALESCE(s.`created`, s.`event_ts`) DESC) AS _feast_rn
          FROM `driver_stats` AS s
          WHERE s.`event_ts` >= %s AND s.`event_ts` <= %s
        ) AS r WHERE r._feast_rn = 1
        """
    )
    assert params == [START_UTC, END_UTC]
    assert_naive(params)
    assert_no_values_in_text(text, START, START_UTC, END)


def test_pull_latest_partitions_and_reads_as_told():
    text, _ = sql.pull_latest(
        "`t`", ["acct"], ["ratio"], "ts", None, START, END,
        partition_by={"acct": "CAST(s.`acct` AS BINARY)"},
        read_as={"ratio": "CAST(s.`ratio` AS DOUBLE)"},
    )  # fmt: skip
    assert norm(text) == golden(
        """
        SELECT r.`acct`, r.`ratio`, r.`ts` FROM (
          SELECT s.`acct`, CAST(s.`ratio` AS DOUBLE) AS `ratio`, s.`ts`,
                 ROW_NUMBER() OVER (PARTITION BY CAST(s.`acct` AS BINARY)
                                    ORDER BY s.`ts` DESC) AS _feast_rn
          FROM `t` AS s WHERE s.`ts` >= %s AND s.`ts` <= %s
        ) AS r WHERE r._feast_rn = 1
        """
    )


def test_known_at():
    assert sql.known_at("ts", None) == "s.`ts`"
    assert sql.known_at("ts", "created", "t") == "COALESCE(t.`created`, t.`ts`)"


def test_probe_golden():
    text, params = sql.probe("(SELECT 1)", ["k", "f"], ["k"])
    assert text == (
        "SELECT s.`k`, s.`f`, CHARSET(s.`k`), COLLATION(s.`k`) FROM (SELECT 1 AS one) AS d "
        "LEFT JOIN (SELECT * FROM (SELECT 1) AS q LIMIT 0) AS s ON 1 = 1"
    )
    assert params == []


def test_pull_latest_without_keys_or_features():
    text, params = sql.pull_latest("`t`", [], [], "ts", None, START, END)
    assert text == (
        "SELECT r.* FROM (SELECT s.*, ROW_NUMBER() OVER (ORDER BY s.`ts` DESC) AS _feast_rn "
        "FROM `t` AS s WHERE s.`ts` >= %s AND s.`ts` <= %s) AS r WHERE r._feast_rn = 1"
    )
    assert params == [START_UTC, END_UTC]


def test_pull_rejects_bad_column_names():
    with pytest.raises(InvalidIdentifier):
        sql.pull_all("`t`", ["k "], ["f"], "ts", None, None, None)
    with pytest.raises(InvalidIdentifier):
        sql.pull_latest("`t`", ["k"], ["f"], "", None, START, END)


# --------------------------------------------------------------------------- DDL / DML


def test_create_table_golden():
    text, params = sql.create_table("t", [("a", "BIGINT"), ("b`c", "TEXT")])
    assert text == "CREATE TABLE `t` (`a` BIGINT, `b``c` TEXT)"
    assert params == []


def test_create_table_with_row_id_if_not_exists():
    text, params = sql.create_table(
        "db.t", [("ts", "DATETIME(6) NOT NULL")], row_id=True, if_not_exists=True
    )
    assert text == (
        "CREATE TABLE IF NOT EXISTS `db`.`t` "
        "(`_feast_row_id` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, `ts` DATETIME(6) NOT NULL)"
    )
    assert params == []


def test_create_table_rejects_bad_names():
    with pytest.raises(InvalidIdentifier):
        sql.create_table("a.b.c", [("x", "TEXT")])
    with pytest.raises(InvalidIdentifier):
        sql.create_table("t", [("", "TEXT")])


def test_drop_table():
    assert sql.drop_table("db.t") == ("DROP TABLE IF EXISTS `db`.`t`", [])


def test_insert_golden():
    assert sql.insert("db.t", ["a", "b`", "c"]) == (
        "INSERT INTO `db`.`t` (`a`, `b```, `c`) VALUES (%s, %s, %s)"
    )


def test_insert_select_golden():
    assert sql.insert_select("t", ["k", "ts"], "SELECT 1 AS k, NOW() AS ts") == (
        "INSERT INTO `t` (`k`, `ts`) SELECT `k`, `ts` FROM (SELECT 1 AS k, NOW() AS ts) AS q"
    )


def test_insert_select_expressions_golden():
    assert sql.insert_select_expressions(
        "t", ["k", "_feast_k0"], ["q.`k`", "CAST(q.`k` AS BINARY)"], "(SELECT 1)"
    ) == (
        "INSERT INTO `t` (`k`, `_feast_k0`) SELECT q.`k`, CAST(q.`k` AS BINARY) "
        "FROM (SELECT 1) AS q",
        [],
    )


def test_small_statements():
    assert sql.select_limit_0("(SELECT 1)") == ("SELECT * FROM (SELECT 1) AS s LIMIT 0", [])
    assert sql.min_max_of_query("`t`", "ts") == (
        "SELECT MIN(q.`ts`), MAX(q.`ts`) FROM `t` AS q",
        [],
    )
    assert sql.add_column("db.t", "new col", "JSON") == (
        "ALTER TABLE `db`.`t` ADD COLUMN `new col` JSON",
        [],
    )


# --------------------------------------------------------------------------- information_schema

JSON_COLUMNS_SQL = (
    "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
    "WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = %s AND DATA_TYPE = 'json'"
)
MARIADB_JSON_SQL = (
    "SELECT c.COLUMN_NAME FROM information_schema.COLUMNS c "
    "JOIN information_schema.CHECK_CONSTRAINTS k ON k.CONSTRAINT_SCHEMA = c.TABLE_SCHEMA "
    "AND k.TABLE_NAME = c.TABLE_NAME "
    "AND k.CHECK_CLAUSE = CONCAT('json_valid(`', c.COLUMN_NAME, '`)') "
    "WHERE c.TABLE_SCHEMA = {schema} AND c.TABLE_NAME = %s"
)


def test_mariadb_json_alias_columns_golden():
    assert sql.mariadb_json_alias_columns("t") == (
        MARIADB_JSON_SQL.format(schema="DATABASE()"),
        ["t"],
    )
    assert sql.mariadb_json_alias_columns("db.t") == (
        MARIADB_JSON_SQL.format(schema="%s"),
        ["db", "t"],
    )


def test_json_columns_golden():
    assert sql.json_columns("driver_stats") == (
        JSON_COLUMNS_SQL.format(schema="DATABASE()"),
        ["driver_stats"],
    )
    assert sql.json_columns("db.driver_stats") == (
        JSON_COLUMNS_SQL.format(schema="%s"),
        ["db", "driver_stats"],
    )


def test_json_columns_is_portable_to_tidb_and_mysql():
    # CHECK_CONSTRAINTS.TABLE_NAME exists only on MariaDB (TiDB/MySQL: CONSTRAINT_CATALOG,
    # CONSTRAINT_SCHEMA, CONSTRAINT_NAME, CHECK_CLAUSE); the statement run on every server
    # must not use it. The MariaDB-only statement is run only on MariaDB (connection.json_columns).
    text, _ = sql.json_columns("t")
    assert "CHECK_CONSTRAINTS" not in text


def test_columns_info_golden():
    head = (
        "SELECT COLUMN_NAME, (IS_NULLABLE = 'YES' OR COLUMN_DEFAULT IS NOT NULL OR EXTRA <> '') "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
    )
    tail = " AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION"
    assert sql.columns_info("t") == (head + "DATABASE()" + tail, ["t"])
    assert sql.columns_info("db.t") == (head + "%s" + tail, ["db", "t"])


def test_table_exists_golden():
    assert sql.table_exists("t") == (
        "SELECT COUNT(*) FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
        ["t"],
    )
    assert sql.table_exists("db.t") == (
        "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        ["db", "t"],
    )


@pytest.mark.parametrize("build", [sql.json_columns, sql.columns_info, sql.table_exists])
def test_information_schema_names_are_bound_not_inlined(build):
    evil = "x'; DROP TABLE y; --"
    text, params = build(evil)
    assert evil not in text
    assert params[-1] == evil
    assert text.count("%s") == len(params)


# --------------------------------------------------------------------------- render


def test_render_inlines_escaped_literals_for_display():
    statement = ("SELECT %s, %s, %s, %s FROM t WHERE a LIKE 'x%%'", ["it's", 5, None, END])
    assert render(statement, for_display=True) == (
        "SELECT 'it\\'s', 5, NULL, '2024-02-01 00:00:30.123456' FROM t WHERE a LIKE 'x%'"
    )


@pytest.mark.parametrize("value", ["a' OR '1'='1", b"x", True, ["a"]])
def test_render_for_execution_inlines_only_numbers_and_timestamps(value):
    """Text is never pasted into executed SQL: its escaping depends on the server's sql_mode."""
    with pytest.raises(TypeError, match="Only numbers and timestamps"):
        render(("SELECT * FROM t WHERE k = %s", [value]))
    assert render(("SELECT %s, %s, %s", [5, 1.5, None])) == "SELECT 5, 1.5e0, NULL"


def test_render_without_params_undoubles_percent():
    assert render(("SELECT * FROM (SELECT 'a%%') AS q", [])) == "SELECT * FROM (SELECT 'a%') AS q"


def test_render_of_a_generated_statement():
    text = render(sql.pull_all("`t`", ["k"], ["f"], "ts", None, START, END))
    assert text == (
        "SELECT s.`k`, s.`f`, s.`ts` FROM `t` AS s "
        "WHERE s.`ts` >= '2024-01-01 10:00:00' AND s.`ts` <= '2024-02-01 00:00:30.123456'"
    )
    rendered_json = render(sql.json_columns("t"), for_display=True)
    assert "TABLE_NAME = 't'" in rendered_json
