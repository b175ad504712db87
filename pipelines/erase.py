"""Erase a subject everywhere the platform stores it, and keep them erased.

    python -m pipelines.erase --user-id 42 --requested-by dpo@example.com --reason "ticket 123"
        [--feature-repo feature_repo/] [--broker redis://...] [--resync]

In order:
1. an `erasure_audit` record (who, why, when; never the key) and the tombstone in
   `subject_tombstones`, mirrored into the online Redis: from here on no job, stream, late event,
   push or materialization brings the subject back (providers/erasure.py lists the checks);
2. every row keyed by the subject, in bounded deletes: every table of the database with a
   `user_id` column (raw events, labels, every version of every feature table, velocity tables,
   push tables, served-feature logs, saved datasets' tables) and the dead letters whose message
   names the subject;
3. the subject's online key in Redis (one hash holds every feature view);
4. the subject's entries in the broker's event streams (Redis Streams: XDEL);
5. the stream job's window state: the mirror's version moves, and the stream job drops the
   subject's windows from every bucket at its next step (spark_jobs/stream.py);
6. the audit record completed, with counts per store.

A subject with no rows anywhere and no tombstone is a no-op (exit 0, said so; only its audit
record, `nothing_stored`, is written). A second sweep `--settle-seconds` after the first catches
what a writer whose batch was in flight wrote after the tombstone. A failed erasure (exit 1) is completed by running the same command again: the tombstone stays, the
deletes are idempotent, and a new audit record counts what the re-run removed.

What this does not reach is in docs/erasure.md: Parquet training sets written to files, Kafka
topics, backups, and state versions Spark keeps in the checkpoint until they age out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DELETE_BATCH = 5000  # rows per DELETE statement: a bounded transaction on TiDB
SCAN_BATCH = 1000  # broker entries and dead letters read per round trip


@dataclass
class Erasure:
    request_id: str
    status: str
    erased: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.erased.values())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def subject_tables(conn, scratch_database: str | None = None) -> list[tuple[str, str]]:
    """(table, column type) of every base table with a `user_id` column, except the tombstones,
    in the store's database and its scratch database (saved datasets; `database.table` there):
    found at run time, so tables added later (a new saved dataset, a new log table) are covered
    without a list to keep up to date."""
    from providers import erasure

    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.TABLE_SCHEMA, c.TABLE_NAME, c.DATA_TYPE, c.TABLE_SCHEMA = DATABASE() "
            "FROM information_schema.COLUMNS c JOIN information_schema.TABLES t "
            "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
            "WHERE c.TABLE_SCHEMA IN (DATABASE(), %s) AND c.COLUMN_NAME = %s "
            "AND t.TABLE_TYPE = 'BASE TABLE' ORDER BY c.TABLE_SCHEMA, c.TABLE_NAME",
            (scratch_database or "", erasure.SUBJECT_KEY),
        )
        return [
            (str(name) if here else f"{schema}.{name}", str(kind).lower())
            for schema, name, kind, here in cur.fetchall()
            if not (here and name == erasure.TOMBSTONES)
        ]


_INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "bigint", "decimal"}
_BINARY_TYPES = {"binary", "varbinary", "blob", "tinyblob", "mediumblob", "longblob"}


def _key_match(column_type: str, user_id: int) -> tuple[str, Any]:
    """(condition, parameter): an exact match on the key, whatever the column's collation:
    integer columns compare as numbers, text and binary ones on their UTF-8 bytes (a `_ci` or
    PAD SPACE collation would match '42 ' too; providers/tidb/keys.py says why)."""
    from providers.tidb.sql import quote_identifier

    column = quote_identifier("user_id")
    if column_type in _INTEGER_TYPES:
        return f"{column} = %s", user_id
    key = str(user_id).encode()
    if column_type in _BINARY_TYPES:
        return f"{column} = %s", key
    return f"CAST(CONVERT({column} USING utf8mb4) AS BINARY) = %s", key


def _delete_rows(conn, table: str, column_type: str, user_id: int) -> int:
    from providers.tidb.sql import quote_table

    condition, key = _key_match(column_type, user_id)
    statement = f"DELETE FROM {quote_table(table)} WHERE {condition} LIMIT {DELETE_BATCH}"  # noqa: S608 (quoted name, bound key)
    removed = 0
    with conn.cursor() as cur:
        while True:
            cur.execute(statement, (key,))  # autocommit: each batch is its own transaction
            removed += cur.rowcount
            if cur.rowcount < DELETE_BATCH:
                return removed


def _count_rows(conn, table: str, column_type: str, user_id: int) -> int:
    from providers.tidb.sql import quote_table

    condition, key = _key_match(column_type, user_id)
    statement = f"SELECT COUNT(*) FROM {quote_table(table)} WHERE {condition}"  # noqa: S608 (quoted name, bound key)
    with conn.cursor() as cur:
        cur.execute(statement, (key,))
        return int(cur.fetchone()[0])


def _dead_letters(conn, user_id: int) -> list[tuple[str, str]]:
    """(stream, entry id) of the dead letters naming the subject, read a page at a time. The LIKE
    on its digits only narrows the scan (digits match themselves under every collation);
    providers.erasure.subject_of decides."""
    from providers.erasure import subject_of

    out: list[tuple[str, str]] = []
    after = ("", "")
    with conn.cursor() as cur:
        while True:
            cur.execute(
                "SELECT stream, entry_id, message FROM dead_letter_events WHERE message LIKE %s "
                "AND (stream > %s OR (stream = %s AND entry_id > %s)) "
                "ORDER BY stream, entry_id LIMIT %s",
                (f"%{user_id}%", after[0], after[0], after[1], SCAN_BATCH),
            )
            page = cur.fetchall()
            out += [(st, entry) for st, entry, message in page if subject_of(message) == user_id]
            if len(page) < SCAN_BATCH:
                return out
            after = (page[-1][0], page[-1][1])


def _broker_entries(client, stream: str, user_id: int) -> list[bytes]:
    """The ids of the stream's entries whose event names the subject."""
    from providers.erasure import subject_of
    from providers.events import MESSAGE_FIELD

    found, start = [], "-"
    while True:
        entries = client.xrange(stream, min=start, max="+", count=SCAN_BATCH)
        for entry_id, fields in entries:
            if subject_of(fields.get(MESSAGE_FIELD)) == user_id:
                found.append(entry_id)
        if len(entries) < SCAN_BATCH:
            return found
        start = "(" + entries[-1][0].decode()


def _scratch(store) -> str | None:
    return getattr(store.config.offline_store, "scratch_database", None)


def online_key(store, user_id: int) -> bytes:
    import pyarrow as pa
    from feast.value_type import ValueType

    from providers.feast_redis import entity_keys

    return entity_keys(
        [pa.array([user_id], pa.int64())],
        [("user_id", ValueType.INT64)],
        store.project,
        store.config.entity_key_serialization_version,
    )[0]


def _online_client(store):
    from feast.infra.online_stores.redis import RedisOnlineStore

    return RedisOnlineStore()._get_client(store.config.online_store)


def _broker_client(broker_url: str | None):
    if not broker_url:
        return None
    if not broker_url.startswith(("redis://", "rediss://")):
        log.warning(
            "broker %s is not Redis Streams: its records cannot be deleted one by one; they "
            "age out with the topic's retention, and the stream job drops them on read",
            broker_url.split("@")[-1],
        )
        return None
    import redis

    return redis.Redis.from_url(broker_url, socket_timeout=30)


def is_stored(conn, online, broker, store, user_id: int) -> bool:
    """Whether any store holds something of the subject (stops at the first that does)."""
    from providers.events import KINDS

    if any(
        _count_rows(conn, t, kind, user_id) for t, kind in subject_tables(conn, _scratch(store))
    ):
        return True
    if _dead_letters(conn, user_id) or online.exists(online_key(store, user_id)):
        return True
    return broker is not None and any(
        _broker_entries(broker, kind.stream, user_id) for kind in KINDS.values()
    )


def _remove(conn, online, broker, store, user_id: int, removed: dict[str, int], prefix: str = ""):
    """One pass over every store (idempotent), counting into `removed` as it goes: a pass that
    fails half-way leaves the counts of what it did remove for the audit record."""
    from providers.events import KINDS

    for table, kind in subject_tables(conn, _scratch(store)):
        n = _delete_rows(conn, table, kind, user_id)
        if n:
            removed[f"{prefix}tidb:{table}"] = n
    dead = _dead_letters(conn, user_id)
    with conn.cursor() as cur:
        for start in range(0, len(dead), DELETE_BATCH):
            part = dead[start : start + DELETE_BATCH]
            cur.execute(
                "DELETE FROM dead_letter_events WHERE "  # noqa: S608 (placeholders only)
                + " OR ".join(["(stream = %s AND entry_id = %s)"] * len(part)),
                [v for pair in part for v in pair],
            )
    if dead:
        removed[f"{prefix}tidb:dead_letter_events"] = len(dead)
    if online.delete(online_key(store, user_id)):
        removed[f"{prefix}redis:online"] = 1
    if broker is not None:
        for kind in KINDS.values():
            ids = _broker_entries(broker, kind.stream, user_id)
            for start in range(0, len(ids), SCAN_BATCH):
                broker.xdel(kind.stream, *ids[start : start + SCAN_BATCH])
            if ids:
                removed[f"{prefix}broker:{kind.stream}"] = len(ids)


def _audit(conn, request_id: str, **values: Any) -> None:
    from providers import erasure
    from providers.tidb.sql import quote_identifier, quote_table

    if "erased" in values:
        values["erased"] = json.dumps(values["erased"], sort_keys=True)
    sets = ", ".join(f"{quote_identifier(k)} = %s" for k in values)
    with conn.cursor() as cur:
        cur.execute(
            f"UPDATE {quote_table(erasure.AUDIT)} SET {sets} WHERE request_id = %s",  # noqa: S608 (quoted names)
            (*values.values(), request_id),
        )


def _scrub(text: str, user_id: int) -> str:
    """An error message for the audit record, without the key."""
    return text.replace(str(user_id), "<subject>")[:4000]


def erase(
    store,
    user_id: int,
    requested_by: str,
    reason: str,
    broker_url: str | None = None,
    settle_seconds: float = 0.0,
) -> Erasure:
    """Erase `user_id` (see the module docstring); the audit record says what was removed.
    With `settle_seconds`, every store is swept again that long after the first pass."""
    from providers import erasure
    from providers.tidb import connection
    from providers.tidb.sql import quote_table
    from spark_jobs.schema import ensure_tables

    cfg = store.config.offline_store
    online = _online_client(store)
    broker = _broker_client(broker_url)
    request_id = str(uuid.uuid4())
    with connection.connect(cfg) as conn:
        ensure_tables(conn, erasure.TABLES)
        tombstoned = user_id in erasure.erased_in_db(conn)
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {quote_table(erasure.AUDIT)} (request_id, requested_by, reason, "  # noqa: S608
                "status, "
                "started_at) VALUES (%s, %s, %s, 'running', %s)",
                (request_id, requested_by, reason, _now()),
            )
        result = Erasure(request_id, "running")
        try:
            if not tombstoned and not is_stored(conn, online, broker, store, user_id):
                _audit(conn, request_id, status="nothing_stored", finished_at=_now(), erased={})
                return Erasure(request_id, "nothing_stored")
            with conn.cursor() as cur:
                # The first erasure's time stays: data known before it may have held the subject.
                cur.execute(
                    f"INSERT IGNORE INTO {quote_table(erasure.TOMBSTONES)} "  # noqa: S608
                    "(user_id, request_id, erased_at) "
                    "VALUES (%s, %s, %s)",
                    (user_id, request_id, _now()),
                )
            erasure.write_mirror(online, store.project, erasure.erased_in_db(conn))
            if broker is None:
                result.erased["broker:not_scanned"] = 1
            _remove(conn, online, broker, store, user_id, result.erased)
            if settle_seconds > 0:
                # A writer that checked before the tombstone and writes after it (a batch in
                # flight) is caught by a second pass once its batch has had time to land.
                time.sleep(settle_seconds)
                _remove(conn, online, broker, store, user_id, result.erased, prefix="again:")
            result.status = "completed"
            _audit(conn, request_id, status="completed", finished_at=_now(), erased=result.erased)
            return result
        except Exception as exc:
            _audit(
                conn,
                request_id,
                status="failed",
                finished_at=_now(),
                erased=result.erased,
                error=_scrub(f"{type(exc).__name__}: {exc}", user_id),
            )
            raise


def resync(store) -> int:
    """Add what `subject_tombstones` holds to the online Redis's mirror (after Redis lost data;
    the stream job and materialization do it too)."""
    from providers import erasure
    from providers.tidb import connection
    from spark_jobs.schema import ensure_tables

    with connection.connect(store.config.offline_store) as conn:
        ensure_tables(conn, erasure.TABLES)
    client = _online_client(store)
    return erasure.sync_mirror(store.config.offline_store, client, store.project)


def _user_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer user id") from None
    if not 1 <= value <= 2**63 - 1:
        raise argparse.ArgumentTypeError(f"{value} is outside user ids' range 1 .. 2**63 - 1")
    return value


def _text(limit: int):
    def parse(text: str) -> str:
        text = text.strip()
        if not text or len(text) > limit:
            raise argparse.ArgumentTypeError(f"give 1 to {limit} characters")
        return text

    return parse


def main(argv: list[str] | None = None) -> int:
    from feast import FeatureStore

    from spark_jobs.settings import default_feature_repo

    parser = argparse.ArgumentParser(
        prog="python -m pipelines.erase",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--user-id", type=_user_id, help="The subject to erase.")
    target.add_argument(
        "--resync",
        action="store_true",
        help="Only add what TiDB's tombstones hold to the online Redis's mirror of them.",
    )
    parser.add_argument(
        "--requested-by",
        type=_text(128),
        default=None,
        help="Who asked (recorded in the audit; required with --user-id).",
    )
    parser.add_argument(
        "--reason",
        type=_text(255),
        default=None,
        help="Why: a ticket or request reference, not personal data (required with --user-id).",
    )
    parser.add_argument(
        "--broker",
        default=os.environ.get("BROKER_URL"),
        help="The event broker, redis://... ($BROKER_URL); omitted: the broker is not scanned.",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=60.0,
        help="Sweep every store again this long after the first pass, for writers whose batch "
        "was in flight (default: 60; longer than your longest materialization or stream batch).",
    )
    parser.add_argument("--feature-repo", default=None, help="Feast repo (default: feature_repo/).")
    args = parser.parse_args(argv)
    if not 0 <= args.settle_seconds <= 3600:
        parser.error("--settle-seconds must be between 0 and 3600")
    if args.user_id is not None and (args.requested_by is None or args.reason is None):
        parser.error("--requested-by and --reason are required with --user-id")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    store = FeatureStore(repo_path=args.feature_repo or default_feature_repo())
    if args.resync:
        n = resync(store)
        print(f"Online mirror rewritten: {n} erased subject(s).")
        return 0
    started = time.monotonic()
    if not args.broker:
        print(
            "warning: no --broker (or $BROKER_URL): events of the subject still on the broker "
            "are not deleted (the stream job drops them; the audit records `broker:not_scanned`).",
            file=sys.stderr,
        )
    try:
        result = erase(
            store, args.user_id, args.requested_by, args.reason, args.broker, args.settle_seconds
        )
    except Exception as exc:  # the audit record says failed; the same command completes it
        print(
            f"error: the erasure failed ({type(exc).__name__}: {_scrub(str(exc), args.user_id)}). "
            "The tombstone, if written, holds; run the same command again to complete it.",
            file=sys.stderr,
        )
        return 1
    if result.status == "nothing_stored":
        print(
            f"user_id {args.user_id}: nothing is stored for this subject and it was never erased; "
            f"nothing was erased and no tombstone was written (audit {result.request_id})."
        )
        return 0
    for store_name, n in sorted(result.erased.items()):
        print(f"  {store_name}: {n}")
    print(
        f"Erased user_id {args.user_id}: {result.total} rows or entries removed in "
        f"{time.monotonic() - started:.1f} s (audit {result.request_id}). It stays erased: "
        "later backfills, replays, late events and materializations drop it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
