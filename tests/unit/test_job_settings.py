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
    assert iso_date("today") == dt.datetime.now(dt.UTC).date()


@pytest.mark.parametrize("bad", ["2026-13-01", "tomorrow", "", "01/02/2026"])
def test_bad_dates_say_what_is_accepted(bad):
    with pytest.raises(argparse.ArgumentTypeError, match="today, yesterday"):
        iso_date(bad)


def test_backfill_accepts_scheduled_arguments():
    from spark_jobs.backfill import parse_args

    args = parse_args(["--master", "submit", "--start", "yesterday", "--end", "yesterday"])
    assert args.master == "submit" and args.start == args.end
