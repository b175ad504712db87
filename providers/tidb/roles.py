"""Least-privilege database roles: one account per role, each granted only what its processes do.

| role       | who                                                 | data database `D`                                      | `D_registry`           | `D_scratch`    |
|------------|-----------------------------------------------------|--------------------------------------------------------|------------------------|----------------|
| `registry` | `feast apply`, `feast materialize`                  | SELECT (apply validates the sources; materialize reads) | all                    | -              |
| `writer`   | Spark jobs, the stream job, `spark_jobs.schema`, erasure | SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER | SELECT, INSERT, UPDATE | SELECT, DELETE |
| `reader`   | training, the skew report (the offline store's reads) | SELECT                                               | SELECT, INSERT, UPDATE | all            |
| `serving`  | `python -m serving` and its log writer               | push tables: SELECT, INSERT, CREATE; served-feature logs: SELECT, INSERT, CREATE, ALTER | SELECT | -              |

- No role but the admin's drops tables or databases (a database-level DROP grant would let its
  holder drop the database itself): `spark_jobs.generate --replace`, which truncates the raw
  tables, is an admin's operation.
- The registry lives in its own database, `D_registry`; roles other than `registry` cannot drop
  or delete definitions. `writer` and `reader` update it where Feast does as a side effect:
  `feast materialize` from `backfill --materialize` records the interval, and training registers
  its saved dataset.
- The offline reader only reads the data: a point-in-time join's scratch tables and saved
  datasets go to `D_scratch` (`scratch_database` in feature_store.yaml). `TiDBSource(query=...)`
  and SQL entity rows run with its privileges, so they can read the data database and write
  nothing there.
- Serving cannot read raw events, features or labels, nor drop anything: it writes push rows and
  its log, and reads the registry (online values come from Redis). Its log tables are named one by
  one: a new feature service's `served_<name>` is granted before serving serves it
  (`--log-table`).
- `subject_tombstones` and `erasure_audit` live in the data database, so the writer role, which
  runs the erasure, can also change them. Not done: a database of their own that only an eraser
  role writes.

`statements(role, ...)` gives the CREATE USER and GRANT statements, values bound (never spliced
into the text) and names quoted; `python -m providers.tidb.roles D` prints them for a DBA.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from providers.tidb.sql import Statement, quote_identifier, quote_table

ROLES = ("registry", "writer", "reader", "serving")
PUSH_TABLES = ("login_push_events", "transaction_push_events")
LOG_TABLES = ("served_account_takeover", "served_withdrawal_fraud")


def registry_database(database: str) -> str:
    return f"{database}_registry"


def scratch_database(database: str) -> str:
    return f"{database}_scratch"


def databases(database: str) -> list[str]:
    """The data, registry and scratch databases of a deployment."""
    return [database, registry_database(database), scratch_database(database)]


def _on(database: str) -> str:
    return f"{quote_identifier(database)}.*"


def grants(
    role: str,
    database: str,
    push_tables: Iterable[str] = PUSH_TABLES,
    log_tables: Iterable[str] = LOG_TABLES,
) -> list[tuple[str, str]]:
    """(privileges, object) pairs of a role."""
    data, registry, scratch = (_on(d) for d in databases(database))
    if role == "registry":
        return [("ALL PRIVILEGES", registry), ("SELECT", data)]
    if role == "writer":
        return [
            ("SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER", data),
            ("SELECT, INSERT, UPDATE", registry),
            ("SELECT, DELETE", scratch),
        ]
    if role == "reader":
        return [("SELECT", data), ("SELECT, INSERT, UPDATE", registry), ("ALL PRIVILEGES", scratch)]
    if role == "serving":
        out = [("SELECT", registry)]
        # CREATE: a table-level grant needs the table to exist unless it includes CREATE, and
        # the store creates a push table that is missing.
        out += [("SELECT, INSERT, CREATE", quote_table(f"{database}.{t}")) for t in push_tables]
        out += [
            ("SELECT, INSERT, CREATE, ALTER", quote_table(f"{database}.{t}")) for t in log_tables
        ]
        return out
    raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")


def statements(
    role: str,
    database: str,
    user: str,
    password: str,
    host: str = "%",
    push_tables: Iterable[str] = PUSH_TABLES,
    log_tables: Iterable[str] = LOG_TABLES,
) -> list[Statement]:
    """Create (or re-key) the role's account and grant it the role's privileges: idempotent."""
    account = [user, host]
    out: list[Statement] = [
        ("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", [*account, password]),
        ("ALTER USER %s@%s IDENTIFIED BY %s", [*account, password]),
    ]
    for privileges, target in grants(role, database, push_tables, log_tables):
        out.append((f"GRANT {privileges} ON {target} TO %s@%s", list(account)))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m providers.tidb.roles",
        description="Print the statements that create the platform's role accounts (values as "
        "placeholders: bind your own users and passwords, or run them from a client that does).",
    )
    parser.add_argument("database", help="The data database (TIDB_DATABASE).")
    parser.add_argument("--host", default="%", help="The accounts' host part (default: %%).")
    parser.add_argument(
        "--log-table",
        action="append",
        default=[],
        help="A further served-feature log table serving writes (a new feature service's "
        "`served_<name>`); repeatable.",
    )
    args = parser.parse_args(argv)
    quote_identifier(args.database)
    logs = [*LOG_TABLES, *args.log_table]
    for role in ROLES:
        print(f"-- {role}: user and password are yours to choose")
        for text, params in statements(
            role, args.database, f"<{role} user>", "<password>", args.host, log_tables=logs
        ):
            shown = text.replace("%%", "%")
            for value in params:
                shown = shown.replace("%s", f"'{value}'", 1)
            print(shown + ";")
    return 0


if __name__ == "__main__":
    sys.exit(main())
