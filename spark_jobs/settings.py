"""Connection and Spark settings of the jobs, from the environment and command-line flags.

The same code runs `local[*]` here and on a cluster: `--master` picks the cluster, `--conf k=v`
passes any Spark setting through, and the JDBC driver jar and class are configuration (Debian's
MariaDB Connector/J here; any MySQL/TiDB JDBC driver in production).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers.tidb.settings import TiDBConnection


def default_feature_repo() -> str:
    """The Feast repo every command uses unless told otherwise: $FEATURE_REPO (the platform image
    sets /app/feature_repo), else feature_repo/ of this source checkout."""
    return os.environ.get("FEATURE_REPO") or str(
        Path(__file__).resolve().parent.parent / "feature_repo"
    )


DEFAULT_JDBC_JAR = "/usr/share/java/mariadb-java-client.jar"
DEFAULT_JDBC_DRIVER = "org.mariadb.jdbc.Driver"


class SettingsError(ValueError):
    """A missing or malformed setting; the message says which and how to set it."""


@dataclass(frozen=True)
class Database:
    """The jobs' TiDB: the platform's one connection model (`TIDB_*`, TLS included) and the
    JDBC driver Spark loads."""

    connection: TiDBConnection
    jdbc_jar: str = DEFAULT_JDBC_JAR
    jdbc_driver: str = DEFAULT_JDBC_DRIVER
    write_batch_rows: int = 5000
    bulk_load: bool = True  # LOAD DATA LOCAL INFILE where the server takes it (spark_jobs/jdbc.py)

    @classmethod
    def from_env(
        cls,
        env: dict[str, str] | None = None,
        jdbc_jar: str | None = None,
        jdbc_driver: str | None = None,
    ) -> Database:
        from providers.tidb.errors import TiDBConfigError
        from providers.tidb.settings import TiDBSettings

        env = dict(os.environ if env is None else env)
        try:
            connection = TiDBSettings.from_env(env)
        except TiDBConfigError as exc:
            raise SettingsError(str(exc)) from exc
        bulk = env.get("SPARK_BULK_LOAD", "on").strip().lower()
        if bulk not in ("on", "off"):
            raise SettingsError(f"SPARK_BULK_LOAD must be on or off, got {bulk!r}")
        return cls(
            connection=connection,
            jdbc_jar=jdbc_jar or env.get("SPARK_JDBC_JAR", DEFAULT_JDBC_JAR),
            jdbc_driver=jdbc_driver or env.get("SPARK_JDBC_DRIVER", DEFAULT_JDBC_DRIVER),
            bulk_load=bulk == "on",
        )

    @property
    def host(self) -> str:
        return self.connection.host

    @property
    def port(self) -> int:
        return self.connection.port

    @property
    def database(self) -> str:
        return self.connection.database

    @property
    def jdbc_url(self) -> str:
        if self.connection.tls and self.jdbc_driver != DEFAULT_JDBC_DRIVER:
            # Another driver ignores MariaDB Connector/J's TLS options (MySQL Connector/J would
            # encrypt without verifying the server): refuse rather than connect unverified.
            raise SettingsError(
                f"TIDB_TLS is on and the JDBC driver is {self.jdbc_driver}: the jobs set TLS "
                f"options for {DEFAULT_JDBC_DRIVER} (MariaDB Connector/J) only. Use that driver "
                "(the image has it) for TLS connections."
            )
        return self.connection.jdbc_url()

    def jdbc_properties(self) -> dict[str, str]:
        c = self.connection
        return {"user": c.user, "password": c.password or "", "driver": self.jdbc_driver}

    def offline_store_config(self):
        from providers.tidb import TiDBOfflineStoreConfig

        return TiDBOfflineStoreConfig(
            **self.connection.connection_fields(), write_batch_rows=self.write_batch_rows
        )


def job_session(app: str, args: argparse.Namespace, db: Database):
    """The Spark session of a job: its --master and --conf, the JDBC jar, quiet logs."""
    spark = spark_session(
        app,
        args.master,
        {"spark.ui.showConsoleProgress": "false", **args.conf},
        jdbc_jar=db.jdbc_jar,
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return int(text)


def iso_date(text: str, today=None):
    """A UTC day: 2026-01-31, or `today` / `yesterday` (UTC) for scheduled runs that cannot
    template dates (a ScheduledSparkApplication, a CronJob)."""
    import datetime as dt

    today = today or dt.datetime.now(dt.UTC).date()
    relative = {"today": today, "yesterday": today - dt.timedelta(days=1)}
    if text in relative:
        return relative[text]
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date like 2026-01-31 (or today, yesterday)"
        ) from exc


def job_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """The command line of a job: its own flags are added by the caller, Spark's here."""
    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_spark_arguments(parser)
    return parser


def finish_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Turn `--conf k=v` pairs into a dict, or exit with a usage error."""
    try:
        args.conf = parse_conf(args.conf)
    except SettingsError as exc:
        parser.error(str(exc))
    return args


def add_spark_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Spark")
    group.add_argument(
        "--master",
        default=os.environ.get("SPARK_MASTER", "local[*]"),
        help="Spark master URL (default: local[*], or $SPARK_MASTER). `submit` keeps the master "
        "spark-submit was given (the Spark Operator's SparkApplication).",
    )
    group.add_argument(
        "--conf",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Any Spark setting, passed through; repeatable.",
    )
    group.add_argument(
        "--jdbc-jar",
        default=None,
        help=f"JDBC driver jar (default: $SPARK_JDBC_JAR or {DEFAULT_JDBC_JAR}).",
    )
    group.add_argument(
        "--jdbc-driver", default=None, help=f"JDBC driver class (default: {DEFAULT_JDBC_DRIVER})."
    )


def parse_conf(pairs: list[str]) -> dict[str, str]:
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise SettingsError(f"--conf takes KEY=VALUE, got {pair!r}")
        conf[key.strip()] = value
    return conf


def spark_session(
    app: str,
    master: str = "local[*]",
    conf: dict[str, str] | None = None,
    jdbc_jar: str | None = None,
):
    """A SparkSession in UTC, with the JDBC driver jar on the classpath when it exists."""
    from pyspark.sql import SparkSession

    # Python workers (pandas UDFs, the stream's state processor) run this interpreter, which has
    # the project and its dependencies; PATH's python3 may not.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = dict(conf or {})
    for key in ("spark.driver.extraJavaOptions", "spark.executor.extraJavaOptions"):
        # JDBC converts timestamps in the JVM's default zone: UTC, appended to the user's options.
        conf[key] = " ".join(filter(None, [conf.get(key, ""), "-Duser.timezone=UTC"]))
    builder = SparkSession.builder.appName(app)
    if master != "submit":  # under spark-submit (Spark Operator) the master is already set
        builder = builder.master(master)
    builder = (
        builder.config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.adaptive.enabled", "true")
    )
    if master.startswith("local"):
        builder = builder.config("spark.sql.shuffle.partitions", "8")  # small data, 2 cores
    if jdbc_jar:
        if "://" not in jdbc_jar and not os.path.exists(jdbc_jar):
            raise SettingsError(
                f"JDBC driver jar {jdbc_jar} not found. Install Debian's libmariadb-java (`make deps`) "
                "or pass --jdbc-jar / set SPARK_JDBC_JAR."
            )
        builder = builder.config("spark.jars", jdbc_jar)
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    jvm_tz = spark.sparkContext._jvm.java.util.TimeZone
    if jvm_tz.getDefault().getID() != "UTC":
        # An existing JVM (spark-submit, a notebook) ignores extraJavaOptions: set it here.
        jvm_tz.setDefault(jvm_tz.getTimeZone("UTC"))
    return spark


def job_main(parse_args, run, argv: list[str] | None = None) -> int:
    """A job's `main`: its flags parsed, then `run(args)`; a settings error is exit code 2."""
    args = parse_args(argv)
    try:
        return run(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
