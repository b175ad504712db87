import os
import time

import pytest

# Spark jobs run in UTC; so do their tests, whatever the machine's zone.
os.environ["TZ"] = "UTC"
time.tzset()


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession (no JDBC, no servers), in UTC like the jobs."""
    from spark_jobs.settings import DEFAULT_JDBC_JAR, spark_session

    # The JVM is shared by the whole pytest process and jars cannot be added later: start it the way
    # the jobs do (with the JDBC jar), or integration tests run after these would find no driver.
    session = spark_session("unit-tests", master="local[2]", jdbc_jar=DEFAULT_JDBC_JAR)
    yield session
    session.stop()
