import pytest


@pytest.fixture(scope="session")
def spark():
    """A local SparkSession (no JDBC, no servers), in UTC like the jobs."""
    from spark_jobs.settings import spark_session

    session = spark_session("unit-tests", master="local[2]")
    yield session
    session.stop()
