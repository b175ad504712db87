"""Command-line values of the Spark jobs that schedulers pass (no Spark needed)."""

from __future__ import annotations

import argparse
import datetime as dt

import pytest

from spark_jobs.settings import iso_date


def test_dates_and_relative_days():
    today = dt.date(2026, 3, 2)
    assert iso_date("2026-01-31") == dt.date(2026, 1, 31)
    assert iso_date("today", today=today) == today
    assert iso_date("yesterday", today=today) == dt.date(2026, 3, 1)


def test_relative_days_default_to_utc_today():
    before = dt.datetime.now(dt.UTC).date()
    today = iso_date("today")
    assert today in (before, dt.datetime.now(dt.UTC).date())  # the call may straddle midnight


def test_feature_repo_comes_from_the_environment_else_the_checkout(monkeypatch):
    from pathlib import Path

    from spark_jobs.settings import default_feature_repo

    monkeypatch.setenv("FEATURE_REPO", "/app/feature_repo")
    assert default_feature_repo() == "/app/feature_repo"
    monkeypatch.delenv("FEATURE_REPO")
    assert (Path(default_feature_repo()) / "feature_store.yaml").is_file()


@pytest.mark.parametrize("bad", ["2026-13-01", "tomorrow", "", "01/02/2026"])
def test_bad_dates_say_what_is_accepted(bad):
    with pytest.raises(argparse.ArgumentTypeError, match="today, yesterday"):
        iso_date(bad)


def test_backfill_accepts_scheduled_arguments():
    from spark_jobs.backfill import parse_args

    args = parse_args(["--master", "submit", "--start", "yesterday", "--end", "yesterday"])
    assert args.master == "submit" and args.start == args.end


def test_tls_with_a_driver_whose_tls_options_are_unknown_is_refused():
    from spark_jobs.settings import Database, SettingsError

    env = {
        "TIDB_HOST": "h",
        "TIDB_USER": "u",
        "TIDB_PASSWORD": "p",
        "TIDB_DATABASE": "d",
        "TIDB_TLS": "true",
    }
    assert "useSsl=true" in Database.from_env(env).jdbc_url
    mysql_driver = Database.from_env(env, jdbc_driver="com.mysql.cj.jdbc.Driver")
    with pytest.raises(SettingsError, match="MariaDB Connector/J"):
        _ = mysql_driver.jdbc_url
    plain = {k: v for k, v in env.items() if k != "TIDB_TLS"}
    assert Database.from_env(plain, jdbc_driver="com.mysql.cj.jdbc.Driver").jdbc_url
