"""Read raw events from TiDB over JDBC and write rows back, in bulk where the server allows it.

Reads are partitioned on a numeric column (user_id) with the time filter pushed down by Spark.
Writes append in batches of `write_batch_rows`, each batch committed on its own (a whole
partition in one transaction can exceed TiDB's transaction size limit):
- with `LOAD DATA LOCAL INFILE` (providers/tidb/bulk.py) from each partition's Python worker,
  when the server takes it (an empty load checks it before each write);
- else, or with SPARK_BULK_LOAD=off, as JDBC batched INSERTs (`isolationLevel=NONE`), with a
  warning saying why.
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
    frame = frame.where((F.col("event_ts") >= F.lit(start)) & (F.col("event_ts") < F.lit(end)))
    return without_erased(spark, db, frame)


def without_erased(spark: SparkSession, db: Database, frame: DataFrame) -> DataFrame:
    """`frame` without the rows of erased subjects (providers/erasure.py): an erasure removed
    their events, and this keeps any that arrived since from bringing them back."""
    from providers import erasure

    if erasure.SUBJECT_KEY not in frame.columns:
        return frame
    erased = erasure.erased_keys(db.offline_store_config())
    if not erased:
        return frame
    keys = spark.createDataFrame([(k,) for k in sorted(erased)], f"{erasure.SUBJECT_KEY} long")
    return frame.join(F.broadcast(keys), erasure.SUBJECT_KEY, "left_anti").select(*frame.columns)


_warned: set[tuple[str, int, str]] = set()  # servers whose refusal was reported


def bulk_refused(db: Database, table: str, columns: list[str]) -> str | None:
    """Why rows cannot be bulk-loaded into `table` on this server, or None when they can.

    Asked before every write (an empty load: milliseconds), so a server reconfigured between
    writes is followed; the warning is printed once per server.
    """
    import sys

    from providers.tidb import bulk

    if not db.bulk_load:
        return "SPARK_BULK_LOAD=off"
    reason = bulk.probe(db.connection, table, columns)
    key = (db.host, db.port, db.database)
    if reason and key not in _warned:
        _warned.add(key)
        print(
            f"warning: {db.host}:{db.port} refuses LOAD DATA LOCAL INFILE ({reason}); "
            "writing with batched INSERTs, which is slower. Enable it on the server "
            "(SET GLOBAL local_infile = 1 on MySQL and MariaDB) for bulk loads.",
            file=sys.stderr,
            flush=True,
        )
    return reason


def _load_partitions(cfg, table: str, columns: list[str], batch_rows: int):
    """mapInArrow: load each partition's rows, `batch_rows` per statement; yields the count."""

    def run(batches):
        import pyarrow as pa

        from providers.tidb import bulk

        stored = 0
        with bulk.connect(cfg) as conn:
            for batch in batches:
                for start in range(0, batch.num_rows, batch_rows):
                    part = batch.slice(start, batch_rows)
                    data = bulk.rows_text(part, columns)
                    stored += bulk.load(conn, table, columns, data, part.num_rows)
        yield pa.RecordBatch.from_pydict({"rows": pa.array([stored], pa.int64())})

    return run


def write_rows(df: DataFrame, db: Database, table: str) -> None:
    """Append `df`'s rows to `table` (its columns by name), in bounded batches; none of a
    subject erased since the rows were read (the tombstones are read again here)."""
    df = without_erased(df.sparkSession, db, df)
    if bulk_refused(db, table, df.columns) is None:
        loader = _load_partitions(db.connection, table, df.columns, db.write_batch_rows)
        df.mapInArrow(loader, "rows long").agg(F.sum("rows")).collect()
        return
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
