import os
import time

import pytest

# Spark jobs run in UTC; so do their tests, whatever the machine's zone.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession (no JDBC, no servers), in UTC like the jobs."""
    from spark_jobs.settings import spark_session

    session = spark_session("unit-tests", master="local[2]")
    yield session
    session.stop()
