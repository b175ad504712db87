"""Replay raw events from TiDB into the event broker, in event-time order, at a chosen rate.

    python -m spark_jobs.replay --start 2026-03-01T00:00 --end 2026-03-02T00:00
        [--rate 2000 | --rate 0 (as fast as possible)] [--kinds login,transaction,withdrawal]
        [--disorder-seconds 5] [--shift-to-now] [--broker redis://...] [--seed 7]

Each row becomes the event message serving's ingest would have put on the broker
(providers/events.py), so the stream job cannot tell a replay from live traffic.

- `--rate` paces the appends (events per second, in batches of `--batch`); 0 is unpaced.
- `--disorder-seconds N` delays each event's arrival by up to N seconds of event time (seeded),
  so events arrive out of order as they do from real producers.
- `--shift-to-now` moves every event time by the same amount so that replaying at the historical
  pace looks live (the demo, the freshness benchmark); without it events keep their times.
"""

from __future__ import annotations

import argparse
import datetime as dt
import heapq
import os
import random
import sys
import time
from collections.abc import Iterator

from providers.events import KINDS, MESSAGE_FIELD, EventKind, encode, from_row


def _utc(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date or time") from exc
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m spark_jobs.replay", description=__doc__)
    parser.add_argument("--start", type=_utc, required=True)
    parser.add_argument("--end", type=_utc, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="Events/s (0: unpaced).")
    parser.add_argument("--batch", type=int, default=200, help="Events per broker round trip.")
    parser.add_argument("--kinds", default=",".join(KINDS), help="Comma-separated event kinds.")
    parser.add_argument("--disorder-seconds", type=float, default=0.0)
    parser.add_argument("--shift-to-now", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--broker", default=os.environ.get("BROKER_URL"), help="redis://... ($BROKER_URL)."
    )
    args = parser.parse_args(argv)
    if args.end <= args.start:
        parser.error("--end must be after --start")
    if args.rate < 0 or args.batch < 1 or args.disorder_seconds < 0:
        parser.error("--rate, --disorder-seconds must be >= 0 and --batch >= 1")
    unknown = [k for k in args.kinds.split(",") if k not in KINDS]
    if unknown:
        parser.error(f"unknown kinds {unknown}; choose from {sorted(KINDS)}")
    if not args.broker or not args.broker.startswith(("redis://", "rediss://")):
        parser.error("--broker (or $BROKER_URL) must be a redis:// URL")
    return args


def _rows(
    conn, kind: EventKind, start: dt.datetime, end: dt.datetime, skip_erased: bool = False
) -> Iterator[tuple]:
    """(event_ts, kind, row) in event-time order, streamed (server-side cursor); with
    `skip_erased`, none of an erased subject's (providers/erasure.py)."""
    import pymysql.cursors

    from providers import erasure
    from providers.tidb import sql

    columns = ", ".join(f"s.{sql.quote_identifier(c)}" for c in kind.columns)
    erased = (
        f" AND NOT EXISTS (SELECT 1 FROM {sql.quote_table(erasure.TOMBSTONES)} t "  # noqa: S608
        "WHERE t.user_id = s.user_id)"
        if skip_erased
        else ""
    )
    with conn.cursor(pymysql.cursors.SSDictCursor) as cur:
        cur.execute(
            f"SELECT {columns} FROM {sql.quote_table(kind.table)} s "  # noqa: S608 (quoted names)
            f"WHERE s.event_ts >= %s AND s.event_ts < %s{erased} "
            f"ORDER BY s.event_ts, s.{sql.quote_identifier(kind.id_column)}",
            (start.replace(tzinfo=None), end.replace(tzinfo=None)),
        )
        for row in cur:
            yield row["event_ts"], kind.name, row


def events(args: argparse.Namespace, connect) -> Iterator[tuple[float, EventKind, bytes]]:
    """(arrival key, kind, message) in arrival order."""
    kinds = [KINDS[k] for k in args.kinds.split(",")]
    connections = [connect() for _ in kinds]
    from providers import erasure
    from providers.tidb import connection

    skip_erased = connection.table_exists(connections[0], erasure.TOMBSTONES)
    shift = dt.timedelta(0)
    if args.shift_to_now:
        shift = dt.datetime.now(dt.UTC).replace(tzinfo=None) - args.end.replace(tzinfo=None)
    rnd = random.Random(args.seed)
    merged = heapq.merge(
        *(
            _rows(c, k, args.start, args.end, skip_erased)
            for c, k in zip(connections, kinds, strict=True)
        ),
        key=lambda item: (item[0], item[1]),
    )
    # Disorder: hold events in a heap keyed by event time + a random delay; release in key order
    # once no later event can come before them (event time has moved past the key).
    held: list[tuple[float, int, EventKind, bytes]] = []
    serial = 0
    epoch = dt.datetime(1970, 1, 1)
    try:
        for event_ts, name, row in merged:
            kind = KINDS[name]
            message = encode(from_row(kind, {**row, "event_ts": event_ts + shift}))
            seconds = (event_ts + shift - epoch).total_seconds()
            arrival = seconds + rnd.uniform(0, args.disorder_seconds)
            heapq.heappush(held, (arrival, serial, kind, message))
            serial += 1
            while held and held[0][0] <= seconds:
                arrival, _, k, m = heapq.heappop(held)
                yield arrival, k, m
        while held:
            arrival, _, k, m = heapq.heappop(held)
            yield arrival, k, m
    finally:
        for conn in connections:
            conn.close()


def replay(args: argparse.Namespace, connect) -> int:
    import redis

    client = redis.Redis.from_url(args.broker, socket_timeout=10)
    sent = 0
    started = time.monotonic()
    pipe = client.pipeline(transaction=False)
    pending = 0
    for _, kind, message in events(args, connect):
        pipe.xadd(kind.stream, {MESSAGE_FIELD: message})
        pending += 1
        if pending >= args.batch:
            pipe.execute()
            sent += pending
            pending = 0
            if args.rate:
                ahead = sent / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
    if pending:
        pipe.execute()
        sent += pending
    client.close()
    return sent


def run(args: argparse.Namespace) -> int:
    """Replay with the TIDB_* settings of the environment; events sent."""
    from providers.tidb import connection
    from spark_jobs.settings import Database

    db = Database.from_env()
    return replay(args, lambda: connection.connect_raw(db.offline_store_config()))


def main(argv: list[str] | None = None) -> int:
    from spark_jobs.settings import SettingsError

    args = parse_args(argv)
    started = time.monotonic()
    try:
        sent = run(args)
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    print(f"Replayed {sent:,} events in {elapsed:.1f}s ({sent / max(elapsed, 1e-9):,.0f}/s).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
