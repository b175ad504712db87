"""Erased subjects: the tombstones that keep a subject erased, and the checks every writer makes.

The subject is the `user` entity (join key `user_id`, INT64): every per-person row of the platform
is keyed by it. `pipelines.erase` removes a subject's rows everywhere and records a tombstone
first; from then on every path that could bring the subject back drops their rows:

| path                                   | checks                                 |
|----------------------------------------|----------------------------------------|
| batch and velocity backfills (raw reads) | `subject_tombstones` (spark_jobs.jdbc) |
| materialization into Redis             | `subject_tombstones`                   |
| stream job (input, window state, landing) | the Redis mirror, fail closed       |
| serving (ingest, push, served-feature log) | the Redis mirror                   |
| `as_of` retrieval                      | `subject_tombstones` (refuses)         |

`subject_tombstones` in TiDB is the record: the bare key, when, and the erasure request that wrote
it (a suppression list holds the key and nothing else). The online Redis keeps a mirror of the
keys in one set, for the paths that must not query TiDB per event; `pipelines.erase` rewrites the
whole mirror from the table on every run, so a lost mirror is repaired by running any erasure
again (`--resync`). `erasure_audit` says which request erased what, when and by whom, with counts
per store and without the key.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

SUBJECT_KEY = "user_id"
TOMBSTONES = "subject_tombstones"
AUDIT = "erasure_audit"

TABLES = {
    TOMBSTONES: """
        user_id BIGINT NOT NULL PRIMARY KEY,
        request_id VARCHAR(36) NOT NULL COMMENT 'the erasure_audit request that first erased it',
        erased_at DATETIME(6) NOT NULL COMMENT 'UTC; data known before it may have held the subject'""",
    AUDIT: """
        request_id VARCHAR(36) NOT NULL PRIMARY KEY,
        requested_by VARCHAR(128) NOT NULL,
        reason VARCHAR(255) NOT NULL,
        status VARCHAR(16) NOT NULL COMMENT 'running | completed | failed | nothing_stored',
        started_at DATETIME(6) NOT NULL,
        finished_at DATETIME(6) NULL,
        erased JSON NULL COMMENT 'rows or entries removed per store (never the key)',
        error TEXT NULL""",
}


def erased_set_key(project: str) -> bytes:
    """The online Redis set mirroring `subject_tombstones` (decimal keys)."""
    return f"{{feature_platform:{project}}}:erased".encode()


def erased_version_key(project: str) -> bytes:
    """A counter raised by every erasure: the stream job purges window state when it moves."""
    return f"{{feature_platform:{project}}}:erased:version".encode()


def subject_of(message: str | bytes | None) -> int | None:
    """The subject an event message names, as ingest would read its `user_id` ("42", " 42 ",
    "+42", "042", 42.0 are 42), also for a message that failed validation or was cut short (a
    dead letter); None when it names none."""
    if message is None:
        return None
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    try:
        data = json.loads(text)
        value = data.get(SUBJECT_KEY) if isinstance(data, dict) else None
    except ValueError:
        found = _USER_ID.search(text)  # not JSON (cut at 65,000 characters, or garbage)
        value = found.group(1) if found else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except ArithmeticError:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


_USER_ID = re.compile(r'"user_id"\s*:\s*"?\s*([+-]?[0-9]+(?:\.[0-9]*)?)')


# ----------------------------------------------------------------------------- TiDB


def erased_in_db(conn, since: dt.datetime | None = None) -> dict[int, dt.datetime]:
    """Every erased key with its erasure time (those erased after `since`, when given)."""
    from providers.tidb.sql import quote_table

    statement = f"SELECT user_id, erased_at FROM {quote_table(TOMBSTONES)}"  # noqa: S608
    params: list[Any] = []
    if since is not None:
        statement += " WHERE erased_at > %s"
        params.append(since.astimezone(dt.UTC).replace(tzinfo=None) if since.tzinfo else since)
    with conn.cursor() as cur:
        cur.execute(statement, params)
        return {int(k): t for k, t in cur.fetchall()}


def erased_keys(cfg) -> set[int]:
    """The erased keys, read from TiDB with the store's settings (empty when the platform's
    schema has not been created: nothing was ever erased there)."""
    from providers.tidb import connection

    with connection.connect(cfg) as conn:
        if not connection.table_exists(conn, TOMBSTONES):
            return set()
        return set(erased_in_db(conn))


# ----------------------------------------------------------------------------- Redis mirror


class MirrorMissing(RuntimeError):
    """The online Redis has no mirror of the tombstones (it restarted empty, or was never
    written): checks refuse to answer rather than answer "not erased"."""


_MISSING = (
    "the online Redis holds no list of erased subjects (restarted empty?); it is rewritten from "
    "TiDB by the stream job's start, every materialization, and `python -m pipelines.erase "
    "--resync`"
)


def _hits(wanted: list[int], version: Any, found: list) -> set[int]:
    if version is None:
        raise MirrorMissing(_MISSING)
    return {k for k, hit in zip(wanted, found, strict=True) if hit}


@dataclass(frozen=True)
class MirrorCheck:
    """The mirror, as Spark's Python workers check it (picklable: the online store's settings;
    each worker process opens one client and keeps it)."""

    online: Any  # the online store's RedisOnlineStoreConfig
    project: str

    def client(self):
        key = (self.online.connection_string, str(self.online.redis_type))
        client = _CLIENTS.get(key)
        if client is None:
            from feast.infra.online_stores.redis import RedisOnlineStore

            client = _CLIENTS[key] = RedisOnlineStore()._get_client(self.online)
        return client

    def among(self, keys: Iterable[int]) -> set[int]:
        return erased_among(self.client(), self.project, keys)

    def version(self) -> str:
        return erased_version(self.client(), self.project)


_CLIENTS: dict[tuple[str, str], Any] = {}


def erased_among(client, project: str, keys: Iterable[int]) -> set[int]:
    """The erased ones among `keys`, from the mirror, in one round trip. Raises MirrorMissing
    when there is no mirror, and Redis's own errors when Redis fails: never "not erased"."""
    wanted = sorted({int(k) for k in keys})
    pipe = client.pipeline(transaction=False)
    pipe.get(erased_version_key(project))
    if wanted:
        pipe.smismember(erased_set_key(project), [str(k) for k in wanted])
    version, *found = pipe.execute()
    return _hits(wanted, version, found[0] if found else [])


async def erased_among_async(client, project: str, keys: Iterable[int]) -> set[int]:
    """`erased_among` for redis.asyncio clients."""
    wanted = sorted({int(k) for k in keys})
    async with client.pipeline(transaction=False) as pipe:
        pipe.get(erased_version_key(project))
        if wanted:
            pipe.smismember(erased_set_key(project), [str(k) for k in wanted])
        version, *found = await pipe.execute()
    return _hits(wanted, version, found[0] if found else [])


def erased_members(client, project: str) -> set[int]:
    """Every erased key in the mirror (raises MirrorMissing without one)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(erased_version_key(project))
    pipe.smembers(erased_set_key(project))
    version, members = pipe.execute()
    if version is None:
        raise MirrorMissing(_MISSING)
    return {int(m) for m in members}


def erased_version(client, project: str) -> str:
    """A token that changes whenever a key joins the mirror (raises MirrorMissing without one)."""
    version = client.get(erased_version_key(project))
    if version is None:
        raise MirrorMissing(_MISSING)
    return version.decode() if isinstance(version, bytes) else str(version)


def write_mirror(client, project: str, keys: Iterable[int]) -> int:
    """Add `keys` to the mirror; a new version token when any is new or there was none. Only
    adds: tombstones are never removed, so concurrent writers cannot drop each other's keys.
    Returns how many keys were new."""
    import uuid

    members = [str(k) for k in sorted(set(keys))]
    name = erased_set_key(project)
    added = 0
    for start in range(0, len(members), 10_000):  # bounded commands
        added += int(client.sadd(name, *members[start : start + 10_000]))
    if added:
        client.set(erased_version_key(project), uuid.uuid4().hex)
    else:
        client.set(erased_version_key(project), uuid.uuid4().hex, nx=True)
    return added


def sync_mirror(cfg, client, project: str) -> int:
    """Rewrite the mirror from `subject_tombstones` (adds what it lacks); keys it holds."""
    keys = erased_keys(cfg)
    write_mirror(client, project, keys)
    return len(keys)
