"""The event broker serving appends to (`POST /v1/events/{kind}`, serving/routes/events.py).

A batch is validated whole first (a malformed event is a 422 naming it, and nothing of the batch
reaches the broker), then appended by one script that Redis runs atomically, so the broker holds
all of it or none. The script appends an event only if its (kind, event_id) was not appended in
the last `DEDUP_SECONDS`: a producer that retries after a 503 whose batch did reach the broker
(the answer was lost) does not put its events on the stream twice. The local broker (devstack)
fsyncs each write before answering (`appendfsync always`), so a 200 means the events are on the
broker's disk. A broker that does not answer within `SERVING_BROKER_TIMEOUT_SECONDS`, or refuses
the write (out of memory under `noeviction`, a failed disk), is a 503.

Events for users the online store does not know are accepted and counted
(`serving_ingest_unknown_user_events_total`): a new account's first login is such an event.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from providers.events import MESSAGE_FIELD

log = logging.getLogger(__name__)
MAX_EVENTS = 1000
DEDUP_SECONDS = 86_400  # how long an appended event id is remembered against retries
# KEYS[1]: the stream. ARGV: the dedup TTL, then (event id, message) pairs. Returns per event the
# entry id, or "" for an event id appended before.
APPEND_ONCE = """
local seen_prefix = 'events:seen:' .. KEYS[1] .. ':'
local out = {}
for i = 2, #ARGV, 2 do
  if redis.call('SET', seen_prefix .. ARGV[i], '1', 'NX', 'EX', tonumber(ARGV[1])) then
    out[#out + 1] = redis.call('XADD', KEYS[1], '*', 'e', ARGV[i + 1])
  else
    out[#out + 1] = ''
  end
end
return out
"""


class Broker:
    """The asyncio Redis Streams client serving appends events with (one per event loop)."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client: Any = None
        self._loop: Any = None

    def client(self):
        import asyncio

        import redis.asyncio as aioredis

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                retry_on_timeout=False,
            )
        return self._client

    async def append(self, stream: str, events: list[tuple[int, bytes]]) -> list[str]:
        """Append (event id, message) pairs atomically, each id once; entry ids ("" for repeats)."""
        assert MESSAGE_FIELD == b"e"  # the field APPEND_ONCE writes
        args: list = [DEDUP_SECONDS]
        for event_id, message in events:
            args += [event_id, message]
        ids = await self.client().eval(APPEND_ONCE, 1, stream, *args)
        return [i.decode() if isinstance(i, bytes) else str(i) for i in ids]

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class KnownUsers:
    """Counts users without a key in the online store (best effort: never fails an ingest), and
    finds erased ones (providers/erasure.py)."""

    def __init__(self, reader, timeout_s: float = 0.1) -> None:
        self.reader = reader  # serving.features.OnlineReader: its Redis client and project
        self.timeout_s = timeout_s  # the events are acknowledged already: never wait long

    async def count_unknown(self, user_ids: list[int]) -> int:
        import pyarrow as pa
        from feast.value_type import ValueType

        from providers.feast_redis import entity_keys

        store = self.reader.store
        try:
            keys = entity_keys(
                [pa.array(user_ids, pa.int64())],
                [("user_id", ValueType.INT64)],
                store.project,
                store.config.entity_key_serialization_version,
            )
            client = await self.reader._redis()
            async with asyncio.timeout(self.timeout_s), client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(key)
                found = await pipe.execute()
        except Exception as exc:  # the count is a metric; the event is already acknowledged
            log.warning("could not check users against the online store: %s", exc)
            return 0
        return sum(1 for f in found if not f)

    async def erased(self, user_ids: list[int]) -> set[int]:
        """The erased among `user_ids`, from the online Redis mirror. Best effort: when Redis does
        not answer in time the events are appended, and the stream job, which checks the same
        mirror and fails closed, drops them before they reach any table or window."""
        from providers.erasure import erased_among_async

        try:
            client = await self.reader._redis()
            async with asyncio.timeout(self.timeout_s):
                return await erased_among_async(client, self.reader.store.project, user_ids)
        except Exception as exc:
            log.warning("could not check users against the erased subjects: %s", exc)
            return set()
