"""Measure 6, stream: event-to-online freshness of the velocity stream job at rising event rates,
next to Feast's own stream path (`store.push` per micro-batch) on the same events.

    python -m benchmarks.stream [--rates 500 1000 2000 4000] [--seconds 30] [--users 20000]

A fresh MariaDB, Redis (online) and durable Redis (broker) from devstack; `feast apply` of the
shipped repo. A producer thread appends live events (event time = now; 60% logins, 35%
transactions, 5% withdrawals over `--users` users) to the broker at each rate for `--seconds`.

- platform: `python -m spark_jobs.stream` (local[2], RocksDB state, trigger 0.5 s) computes the
  velocity views and writes TiDB and Redis; its per-batch file gives, for every event, the time
  from the broker taking it to its window values being in Redis.
- feast push: a consumer reads the same streams in micro-batches (XREAD, 0.5 s) and calls Feast's
  `store.push(..., to=ONLINE)` with each login's values for the `login_push` source (Feast has
  no windowed aggregation to run, so this is the cheapest thing its stream path can do with the
  events); the lag is from the broker to the push returning.

For each rate: events consumed per second, lag p50/p95/p99/max over the events of that phase, and
whether the system kept up (consumed >= 95% of offered and no backlog left 10 s after the phase).
The knee is the highest rate kept up with p99 <= 3 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, header, python, stack

MEASURE = "stream"
STREAMS = ("events.login", "events.transaction", "events.withdrawal")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.stream", description=__doc__)
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 1000, 2000, 4000])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args(argv)


class Producer:
    """Live events at a target rate, appended in pipelined batches of 50."""

    def __init__(self, url: str, users: int, seed: int) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.users = users
        self.rnd = random.Random(seed)
        self.next_id = 1

    def _event(self):
        from providers.events import KINDS

        now = dt.datetime.now(dt.UTC)
        user = self.rnd.randint(1, self.users)
        self.next_id += 1
        draw = self.rnd.random()
        common = {"event_id": self.next_id, "user_id": user, "event_ts": now}
        if draw < 0.60:
            kind = KINDS["login"]
            fields = {
                "ip": f"10.{user % 250}.{self.rnd.randint(0, 3)}.{self.rnd.randint(1, 250)}",
                "device_id": f"dev-{user}-{self.rnd.randint(0, 1)}",
                "country": "DE",
                "success": self.rnd.random() > 0.05,
            }
        elif draw < 0.95:
            kind = KINDS["transaction"]
            fields = {
                "merchant_id": f"m{self.rnd.randint(1, 3000)}",
                "amount": f"{self.rnd.uniform(1, 300):.2f}",
                "currency": "EUR",
            }
        else:
            kind = KINDS["withdrawal"]
            fields = {
                "amount": f"{self.rnd.uniform(10, 3000):.2f}",
                "destination_account": f"IBAN{user}",
            }
        return kind, kind.model(**common, **fields)

    def run(self, rate: float, seconds: float) -> int:
        from providers.events import MESSAGE_FIELD, encode

        sent, batch = 0, 50
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            pipe = self.client.pipeline(transaction=False)
            for _ in range(batch):
                kind, event = self._event()
                pipe.xadd(kind.stream, {MESSAGE_FIELD: encode(event)})
            pipe.execute()
            sent += batch
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        return sent


def stats(lags_ms: list[float]) -> dict:
    if not lags_ms:
        return {"p50_ms": None, "p95_ms": None, "p99_ms": None, "max_ms": None}
    a = np.array(lags_ms)
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "max_ms": float(a.max()),
    }


def platform_phases(env, args, workdir: Path) -> list[dict]:
    """The stream job running throughout; one producer phase per rate."""
    metrics = workdir / "stream-metrics.jsonl"
    log = (workdir / "stream.log").open("w")
    job = subprocess.Popen(
        [
            python(),
            "-m",
            "spark_jobs.stream",
            "--checkpoint",
            str(workdir / "checkpoint"),
            "--master",
            "local[2]",
            "--trigger-seconds",
            "0.5",
            "--starting-offsets",
            "latest",
            "--metrics-file",
            str(metrics),
        ],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    producer = Producer(env["BROKER_URL"], args.users, args.seed)
    try:
        # Warm up: the job is up once it has written a batch of a trickle of events.
        deadline = time.monotonic() + 180
        while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline:
            producer.run(20, 1.0)
            if job.poll() is not None:
                raise RuntimeError(f"the stream job exited; see {workdir / 'stream.log'}")
        time.sleep(15)  # let it work off the warm-up's first (slow) batches before measuring
        return _phases(args, producer, lambda since, until: _job_lags(metrics, since, until))
    finally:
        job.terminate()
        job.wait(timeout=60)
        log.close()


def _job_lags(metrics: Path, since: float, until: float) -> tuple[list[float], int]:
    lags, events = [], 0
    for line in metrics.read_text().splitlines():
        batch = json.loads(line)
        if since * 1000 <= batch["online_at_ms"] <= until * 1000:
            lags += batch["lags_ms"]
            events += batch["events"]
    return lags, events


def _phases(args, producer: Producer, lags_between) -> list[dict]:
    out = []
    for rate in args.rates:
        started = time.time()
        sent = producer.run(rate, args.seconds)
        ended = time.time()
        time.sleep(10)  # drain: what is still queued after this is a backlog
        lags, consumed = lags_between(started, time.time())
        kept_up = consumed >= 0.95 * sent and (not lags or max(lags) < 10_000 + args.seconds * 50)
        out.append(
            {
                "rate": rate,
                "offered_per_s": sent / (ended - started),
                "consumed_events": consumed,
                "sent_events": sent,
                "kept_up": bool(kept_up),
                **stats(lags),
            }
        )
    return out


def feast_push_phases(env, args) -> list[dict]:
    """Feast's path: micro-batches of the same streams pushed with store.push (online)."""
    import pandas as pd
    import redis
    from feast import FeatureStore
    from feast.data_source import PushMode

    from providers.events import KINDS, MESSAGE_FIELD, decode

    os.environ.update(env)
    store = FeatureStore(repo_path=str(ROOT / "feature_repo"))
    client = redis.Redis.from_url(env["BROKER_URL"])
    # From each stream's current tip. Not "$": XREAD reads "$" as "from now" on every call, so a
    # stream with nothing new during one call would never be read.
    offsets = {}
    for name in STREAMS:
        tip = client.xrevrange(name, count=1)
        offsets[name] = tip[0][0].decode() if tip else "0-0"
    records: list[tuple[float, float, int]] = []  # (online time, lag ms, events)
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            got = client.xread(offsets, count=20000, block=500)
            batch_events, rows, broker_ms = 0, [], []
            for stream, entries in got or []:
                name = stream.decode()
                for entry_id, fields in entries:
                    offsets[name] = entry_id.decode()
                    broker_ms.append(int(entry_id.split(b"-")[0]))
                    batch_events += 1
                    if name != "events.login":
                        continue
                    e = decode(KINDS["login"], fields[MESSAGE_FIELD])
                    rows.append(
                        {
                            "user_id": e.user_id,
                            "last_login_ip": e.ip,
                            "last_login_device": e.device_id,
                            "last_login_country": e.country,
                            "recent_ips": [e.ip],
                            "event_ts": e.event_ts,
                        }
                    )
            if rows:
                frame = (
                    pd.DataFrame(rows)
                    .sort_values("event_ts")
                    .drop_duplicates("user_id", keep="last")
                )
                store.push("login_push", frame, to=PushMode.ONLINE)
            if batch_events:
                now = time.time()
                records.extend((now, now * 1000 - ms, 1) for ms in broker_ms)
            time.sleep(0.5)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(2)  # the consumer's first XREAD has set its offsets
    producer = Producer(env["BROKER_URL"], args.users, args.seed + 1)
    try:

        def lags_between(since: float, until: float):
            chosen = [lag for t, lag, _ in records if since <= t <= until]
            return chosen, len(chosen)

        return _phases(args, producer, lags_between)
    finally:
        stop.set()
        thread.join(timeout=30)


def main(argv: list[str] | None = None) -> int:
    from devstack import Redis, feast_redis_connection_string

    args = parse_args(argv)
    result = header(MEASURE, vars(args))
    workdir = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    print(f"   logs in {workdir}", flush=True)
    broker = Redis(workdir / "broker", durable=True).start()
    try:
        with stack() as services:
            env = {
                **os.environ,
                **services,
                "REDIS_CONNECTION_STRING": feast_redis_connection_string(services["REDIS_URL"]),
                "BROKER_URL": broker.url,
            }
            for cmd in (
                [python(), "-m", "spark_jobs.schema"],
                [str(Path(python()).parent / "feast"), "-c", "feature_repo", "apply"],
            ):
                subprocess.run(cmd, env=env, cwd=ROOT, check=True, capture_output=True, timeout=300)
            for system, phases in (
                ("platform stream job", platform_phases(env, args, workdir)),
                ("feast store.push", feast_push_phases(env, args)),
            ):
                for phase in phases:
                    result.add(f"{system} @ {phase['rate']}/s", **phase)
                knee = [p["rate"] for p in phases if p["kept_up"] and (p["p99_ms"] or 1e9) <= 3000]
                result.note(
                    f"{system}: knee (kept up, p99 <= 3 s) = {max(knee) if knee else 'none'}"
                )
            ours = {r["rate"]: r for r in result.rows if r["system"].startswith("platform")}
            feast_rows = {r["rate"]: r for r in result.rows if r["system"].startswith("feast")}
            for rate in args.rates:
                a, b = ours.get(rate), feast_rows.get(rate)
                if a and b and a["p99_ms"] and b["p99_ms"]:
                    result.ratio(
                        f"p99 lag platform / feast push @ {rate}/s", a["p99_ms"] / b["p99_ms"]
                    )
            top = max(
                (r for r in ours.values() if r["kept_up"]), key=lambda r: r["rate"], default=None
            )
            if top is not None:
                result.ratio(
                    "platform sustained events/s (kept up, highest rate)",
                    top["offered_per_s"],
                    target=">= 2000 with p99 <= 3 s",
                    met=top["offered_per_s"] >= 2000 and (top["p99_ms"] or 1e9) <= 3000,
                )
    finally:
        broker.stop()
    result.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
