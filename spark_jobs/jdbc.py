"""Read raw events from TiDB and write feature rows back, over JDBC.

Reads are partitioned on a numeric column (user_id) with the time filter pushed down by Spark.
Writes append in batches of `write_batch_rows`, each batch committed on its own
(`isolationLevel=NONE`: Spark otherwise wraps a whole partition in one transaction, which can
exceed TiDB's transaction size limit).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from spark_jobs.settings import Database


def _bounds(db: Database, table: str, column: str) -> tuple[int, int] | None:
    from providers.tidb import connection, sql

    with connection.connect(db.offline_store_config()) as conn:
        row = connection.fetch_one(conn, sql.min_max_of_query(sql.quote_table(table), column))
    if not row or row[0] is None:
        return None
    return int(row[0]), int(row[1])


def read_events(
    spark: SparkSession,
    db: Database,
    table: str,
    start: dt.datetime,
    end: dt.datetime,
    partition_column: str = "user_id",
    partitions: int | None = None,
) -> DataFrame:
    """Rows of `table` with start <= event_ts < end, read in parallel ranges of `partition_column`."""
    options = {"url": db.jdbc_url, "dbtable": table, "fetchsize": "10000", **db.jdbc_properties()}
    bounds = _bounds(db, table, partition_column)
    if bounds is not None:
        options.update(
            partitionColumn=partition_column,
            lowerBound=str(bounds[0]),
            upperBound=str(bounds[1] + 1),
            numPartitions=str(partitions or max(2, spark.sparkContext.defaultParallelism)),
        )
    frame = spark.read.format("jdbc").options(**options).load()
    start, end = (t if t.tzinfo else t.replace(tzinfo=dt.UTC) for t in (start, end))
    # Spark pushes these predicates down to the database (as bound JDBC filters).
    return frame.where((F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end)))


def write_rows(df: DataFrame, db: Database, table: str) -> None:
    (
        df.write.format("jdbc")
        .option("url", db.jdbc_url)
        .option("dbtable", table)
        .option("batchsize", str(db.write_batch_rows))
        .option("isolationLevel", "NONE")
        .options(**db.jdbc_properties())
        .mode("append")
        .save()
    )
