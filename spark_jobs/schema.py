"""The tables of the platform, created idempotently (`CREATE TABLE IF NOT EXISTS`).

Raw events (written by the generator, or by the product in production), versioned feature tables
(written by the jobs: every row carries `created_ts` and `run_id`, nothing is updated in place),
the run bookkeeping, and the batch tables behind Feast's push sources (Feast requires them to
exist with exactly the pushed columns).

Column types keep to what TiDB, MySQL 8 and MariaDB share. Timestamps are DATETIME(6) in UTC.
"""

from __future__ import annotations

import argparse
import sys
import time

from providers import erasure

RAW_TABLES = {
    "logins": """
        login_id BIGINT NOT NULL PRIMARY KEY,
        user_id BIGINT NOT NULL,
        ip VARCHAR(45) NOT NULL,
        device_id VARCHAR(64) NOT NULL,
        country CHAR(2) NOT NULL,
        success BOOLEAN NOT NULL,
        event_ts DATETIME(6) NOT NULL,
        KEY idx_logins_ts (event_ts),
        KEY idx_logins_user_ts (user_id, event_ts)""",
    "transactions": """
        txn_id BIGINT NOT NULL PRIMARY KEY,
        user_id BIGINT NOT NULL,
        merchant_id VARCHAR(32) NOT NULL,
        amount DECIMAL(14, 2) NOT NULL,
        currency CHAR(3) NOT NULL,
        event_ts DATETIME(6) NOT NULL,
        KEY idx_txn_ts (event_ts),
        KEY idx_txn_user_ts (user_id, event_ts)""",
    "withdrawals": """
        withdrawal_id BIGINT NOT NULL PRIMARY KEY,
        user_id BIGINT NOT NULL,
        amount DECIMAL(14, 2) NOT NULL,
        destination_account VARCHAR(34) NOT NULL,
        event_ts DATETIME(6) NOT NULL,
        KEY idx_wd_ts (event_ts),
        KEY idx_wd_user_ts (user_id, event_ts)""",
    "labels": """
        label_id BIGINT NOT NULL PRIMARY KEY,
        user_id BIGINT NOT NULL,
        label VARCHAR(32) NOT NULL COMMENT 'account_takeover | withdrawal_fraud',
        event_ts DATETIME(6) NOT NULL COMMENT 'when the fraudulent event happened',
        reported_ts DATETIME(6) NOT NULL COMMENT 'when the outcome became known',
        KEY idx_labels_user_ts (user_id, event_ts)""",
}

_VERSION_COLUMNS = """
        event_ts DATETIME(6) NOT NULL COMMENT 'the features hold from this instant (end of the day computed)',
        created_ts DATETIME(6) NOT NULL COMMENT 'when this version became known',
        run_id VARCHAR(36) NOT NULL,
        KEY idx_user_ts (user_id, event_ts, created_ts),
        KEY idx_run (run_id, event_ts)"""

FEATURE_TABLES = {
    "user_transaction_features": """
        user_id BIGINT NOT NULL,
        txn_count_1d BIGINT NOT NULL, txn_sum_1d DOUBLE NOT NULL, txn_merchants_1d BIGINT NOT NULL,
        txn_count_7d BIGINT NOT NULL, txn_sum_7d DOUBLE NOT NULL, txn_merchants_7d BIGINT NOT NULL,
        txn_count_30d BIGINT NOT NULL, txn_sum_30d DOUBLE NOT NULL, txn_merchants_30d BIGINT NOT NULL,"""
    + _VERSION_COLUMNS,
    "user_withdrawal_features": """
        user_id BIGINT NOT NULL,
        withdrawal_count_1d BIGINT NOT NULL, withdrawal_sum_1d DOUBLE NOT NULL,
        withdrawal_count_7d BIGINT NOT NULL, withdrawal_sum_7d DOUBLE NOT NULL,"""
    + _VERSION_COLUMNS,
    "user_login_features": """
        user_id BIGINT NOT NULL,
        failed_logins_1d BIGINT NOT NULL, logins_1d BIGINT NOT NULL,"""
    + _VERSION_COLUMNS,
    "user_profile_features": """
        user_id BIGINT NOT NULL,
        common_ips_365d JSON NOT NULL, common_devices_365d JSON NOT NULL,"""
    + _VERSION_COLUMNS,
}

RUN_TABLES = {
    "feature_runs": """
        run_id VARCHAR(36) NOT NULL PRIMARY KEY,
        job VARCHAR(64) NOT NULL,
        feature_sets VARCHAR(255) NOT NULL,
        code_version VARCHAR(64) NOT NULL,
        definition_hash VARCHAR(64) NOT NULL COMMENT 'hash of the feature sets definitions (code + columns)',
        parameters JSON NOT NULL,
        range_start DATE NOT NULL,
        range_end DATE NOT NULL,
        status VARCHAR(16) NOT NULL COMMENT 'running | succeeded | failed',
        rows_written BIGINT NOT NULL DEFAULT 0,
        started_at DATETIME(6) NOT NULL,
        finished_at DATETIME(6) NULL,
        error TEXT NULL,
        KEY idx_runs_lookup (job, definition_hash, status)""",
    "feature_run_partitions": """
        run_id VARCHAR(36) NOT NULL,
        feature_set VARCHAR(64) NOT NULL,
        partition_day DATE NOT NULL,
        status VARCHAR(16) NOT NULL COMMENT 'succeeded (written whole)',
        rows_written BIGINT NOT NULL,
        created_ts DATETIME(6) NOT NULL COMMENT 'the created_ts of the rows written',
        finished_at DATETIME(6) NOT NULL,
        PRIMARY KEY (run_id, feature_set, partition_day)""",
}

# The velocity views' own tables are created from their registry declarations
# (spark_jobs/velocity.py); these record what the stream job and the velocity backfill committed.
VELOCITY_TABLES = {
    "velocity_commits": """
        run_id VARCHAR(36) NOT NULL,
        commit_id BIGINT NOT NULL COMMENT 'micro-batch id (stream) or chunk number (backfill)',
        rows_written BIGINT NOT NULL,
        committed_at DATETIME(6) NOT NULL COMMENT 'the created_ts of the rows written',
        PRIMARY KEY (run_id, commit_id)""",
    "dead_letter_events": """
        stream VARCHAR(64) NOT NULL,
        entry_id VARCHAR(64) NOT NULL,
        message MEDIUMTEXT NOT NULL,
        error TEXT NOT NULL,
        received_at DATETIME(6) NOT NULL,
        PRIMARY KEY (stream, entry_id)""",
}

# Batch tables of Feast push sources: real-time events pushed by serving land here too.
PUSH_TABLES = {
    "login_push_events": """
        user_id BIGINT NOT NULL,
        last_login_ip VARCHAR(45) NULL,
        last_login_device VARCHAR(64) NULL,
        last_login_country CHAR(2) NULL,
        recent_ips JSON NULL,
        event_ts DATETIME(6) NOT NULL,
        KEY idx_user_ts (user_id, event_ts)""",
    "transaction_push_events": """
        user_id BIGINT NOT NULL,
        last_txn_amount DOUBLE NULL,
        last_txn_merchant VARCHAR(32) NULL,
        event_ts DATETIME(6) NOT NULL,
        KEY idx_user_ts (user_id, event_ts)""",
}

# Erased subjects and the audit of erasures (providers/erasure.py).
ERASURE_TABLES = erasure.TABLES

ALL_TABLES = {
    **RAW_TABLES,
    **FEATURE_TABLES,
    **RUN_TABLES,
    **VELOCITY_TABLES,
    **PUSH_TABLES,
    **ERASURE_TABLES,
}


class SchemaMismatch(RuntimeError):
    """An existing table lacks columns this version of the platform writes."""


def declared_columns(ddl: str) -> list[str]:
    """Column names of a DDL body (lines that start with a name; keys are skipped)."""
    parts, depth, current = [], 0, []
    for ch in ddl:  # split at commas outside parentheses: DECIMAL(14, 2) and KEY (a, b) stay whole
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    names = []
    for part in parts:
        word = part.strip().split(" ", 1)[0]
        if word and word.upper() not in ("KEY", "PRIMARY", "UNIQUE", "INDEX", "CONSTRAINT"):
            names.append(word)
    return names


def ensure_schema(db) -> None:
    """Create every table that does not exist yet. Safe to run any number of times."""
    from providers.tidb import connection

    with connection.connect(db.offline_store_config()) as conn:
        ensure_tables(conn, ALL_TABLES)


def ensure_tables(conn, tables: dict[str, str]) -> None:
    """Create those of `tables` (name -> DDL body) that do not exist; refuse ones that lack a
    column this version writes."""
    from providers.tidb import connection
    from providers.tidb.sql import quote_table

    for name, ddl in tables.items():
        connection.execute(conn, (f"CREATE TABLE IF NOT EXISTS {quote_table(name)} ({ddl}\n)", []))
    for table, ddl in tables.items():
        missing = [
            c for c in declared_columns(ddl) if c not in connection.columns_info(conn, table)
        ]
        if missing:
            raise SchemaMismatch(
                f"Table {table} exists without the column(s) {missing} this version writes. "
                "Migrate it (ALTER TABLE ... ADD COLUMN), or, for local data, drop it and run again."
            )


def create_database(db) -> None:
    """CREATE DATABASE IF NOT EXISTS for the configured database, and the registry's and the
    scratch tables' next to it (providers/tidb/roles.py; connects without a database)."""
    from providers.tidb import connection, roles, sql

    server = db.offline_store_config().model_copy(update={"database": None})
    with connection.connect(server) as conn:
        for name in roles.databases(db.database):
            connection.execute(conn, sql.create_database(name))


def main(argv: list[str] | None = None) -> int:
    """`python -m spark_jobs.schema [--create-database]`: the platform's tables, idempotently.

    Run once per environment before `feast apply` (the compose `init` service and the Kubernetes
    `feast-apply` Job do). Settings come from TIDB_*.
    """
    import pymysql

    from spark_jobs.settings import Database, SettingsError

    parser = argparse.ArgumentParser(prog="python -m spark_jobs.schema", description=main.__doc__)
    parser.add_argument(
        "--create-database",
        action="store_true",
        help="Create TIDB_DATABASE, and its _registry and _scratch databases, first when they do "
        "not exist (needs the CREATE privilege).",
    )
    parser.add_argument(
        "--wait-seconds",
        type=float,
        default=0.0,
        help="Retry connecting this long while TiDB starts (compose, Kubernetes init).",
    )
    args = parser.parse_args(argv)
    if args.wait_seconds < 0:
        parser.error("--wait-seconds must be >= 0")
    import providers.tidb  # noqa: F401 - loads Feast (seconds): not part of the wait

    try:
        db = Database.from_env()
        deadline = time.monotonic() + args.wait_seconds
        while True:
            try:
                if args.create_database:
                    create_database(db)
                ensure_schema(db)
                break
            except pymysql.err.OperationalError as exc:
                # Only "cannot connect / connection lost" means not up yet; a wrong password or a
                # missing database fails at once.
                if exc.args[0] not in (2003, 2006, 2013) or time.monotonic() >= deadline:
                    raise
                print(f"waiting for TiDB at {db.host}:{db.port}: {exc}", file=sys.stderr)
                time.sleep(2)
    except (SettingsError, SchemaMismatch) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except pymysql.err.MySQLError as exc:
        print(f"error: TiDB at {db.host}:{db.port} refused: {exc}", file=sys.stderr)
        return 1
    print(f"Schema ready in {db.database}: {len(ALL_TABLES)} tables.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
