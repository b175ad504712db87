"""Helpers that put test data into the database, with plain SQL (not through the store)."""

from __future__ import annotations

import pandas as pd


def create_table(conn, table: str, ddl: str, df: pd.DataFrame | None = None) -> None:
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE `{table}` ({ddl})")
        if df is not None and len(df):
            cols = ", ".join("`" + c.replace("%", "%%") + "`" for c in df.columns)
            marks = ", ".join(["%s"] * len(df.columns))
            rows = [tuple(_py(v) for v in row) for row in df.itertuples(index=False, name=None)]
            cur.executemany(f"INSERT INTO `{table}` ({cols}) VALUES ({marks})", rows)


def _py(v):
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, pd.Timestamp):
        if v.tzinfo is not None:
            v = v.tz_convert("UTC").tz_localize(None)
        return v.to_pydatetime()
    if isinstance(v, float) and v != v:
        return None
    if hasattr(v, "item"):
        return v.item()
    return v


def rows(conn, sql: str, params=None) -> list[tuple]:
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


def create_database(mariadb, charset: str | None = None) -> tuple[str, object]:
    """A fresh, empty database on the test server; returns its name and an admin connection.

    `charset` is `CHARACTER SET x COLLATE y` for the database's defaults (its tables' and the
    store's scratch tables'), e.g. to run the same test under a case-insensitive collation."""
    import uuid

    import pymysql

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = pymysql.connect(
        host="127.0.0.1",
        port=mariadb.port,
        user=mariadb.user,
        password=mariadb.password,
        autocommit=True,
    )
    with admin.cursor() as cur:
        for each in _databases(name):
            cur.execute(f"CREATE DATABASE `{each}` {charset or ''}")
    return name, admin


def _databases(name: str) -> list[str]:
    """providers.tidb.roles.databases, spelled out: the Airflow suite's environment creates
    databases too, and has no pandas for providers.tidb's package to import."""
    return [name, f"{name}_registry", f"{name}_scratch"]


def drop_database(admin, name: str) -> None:
    with admin.cursor() as cur:
        for each in _databases(name):
            cur.execute(f"DROP DATABASE IF EXISTS `{each}`")
    admin.close()
