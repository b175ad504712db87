"""Measure 1, online serving: our predict endpoint vs `feast serve` vs raw pipelined HMGETs.

Same feature service (`withdrawal_fraud`: 4 feature views, 3 velocity (stream) views and the
`amount_context` on-demand view),
same Redis, same entities, for each concurrency (default 1, 8, 32):
  (a) ours    POST /v1/models/withdrawal_fraud/predict   features + model score + served-feature log
  (b) feast   POST /get-online-features (feast serve, tuned as Feast's docs advise:
              --workers -1 (2 x cores + 1) --worker-connections 1000 --registry_ttl_sec 60, access
              log off; and worker recycling off (--max-requests 0): the docs' 1000 restarts a
              worker mid-run, which only adds tail latency and dropped connections to Feast)
  (c) floor   redis-py pipelined HMGET of the same 7 keys per entity, asyncio, in one process
The load generator for (a) and (b) is `wrk` (C, its own process, keep-alive connections), one
connection per unit of concurrency; each run lasts until at least --requests requests completed.

Data: the project's own generator and Spark backfill (events of --users users over 35 days),
`feast apply`, the velocity backfill, `feast materialize-incremental`, `python -m pipelines.train
withdrawal_fraud`.
Before the load, both servers' feature values for the same entities are compared (checked, not
assumed); every wrk run must end with zero non-2xx responses and zero socket errors.

    python -m benchmarks.online [--users 2000] [--requests 20000] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import ROOT, header, stack
from devstack import free_port
from serving.keys import digest

PY = sys.executable
FEAST = str(Path(PY).parent / "feast")
REPO = ROOT / "feature_repo"
SERVICE = "withdrawal_fraud"
KEY = secrets.token_urlsafe(32)  # our endpoint's API key for this run (feast serve ignores it)
HANG_SECONDS = 8
END = "2026-03-01"

WRK_SCRIPT = """
local bodies = {%(bodies)s}
local i = math.random(#bodies)
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer %(key)s"}, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %%d, "duration_us": %%d, "p50_us": %%d, "p95_us": %%d, "p99_us": %%d, ' ..
    '"max_us": %%d, "status_errors": %%d, "socket_errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.status, e.connect + e.read + e.write + e.timeout))
end
"""


def run(env: dict[str, str], log: Path, *cmd: str) -> None:
    with open(log, "ab") as out:
        result = subprocess.run(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}\n{log.read_text()[-2000:]}")


def prepare(env: dict[str, str], work: Path, users: int) -> None:
    """Events -> Spark features -> registry -> Redis -> a trained model, through the project's CLIs."""
    log = work / "setup.log"
    started = time.perf_counter()
    run(
        env,
        log,
        PY,
        "-m",
        "spark_jobs.generate",
        "--users",
        str(users),
        "--days",
        "35",
        "--end",
        END,
    )
    run(
        env,
        log,
        PY,
        "-m",
        "spark_jobs.backfill",
        "--start",
        "2026-02-10",
        "--end",
        "2026-02-28",
        "--no-progress",
    )
    run(env, log, FEAST, "-c", str(REPO), "apply")
    run(
        env,
        log,
        PY,
        "-m",
        "spark_jobs.velocity_backfill",
        "--start",
        "2026-02-10",
        "--end",
        "2026-02-28",
    )
    run(env, log, FEAST, "-c", str(REPO), "materialize-incremental", "2026-03-02T00:00:00")
    run(
        env,
        log,
        PY,
        "-m",
        "pipelines.train",
        SERVICE,
        "--since",
        "2026-02-11T00:00:00Z",
        "--until",
        "2026-03-01T00:00:00Z",
        "--out",
        str(work / "models"),
    )
    print(
        f"  setup (generate, backfill, apply, materialize, train): "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )


class Server:
    """A server process on a free port; waits for `ready_path`, stops with SIGTERM."""

    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], port: int, ready: str, log: Path
    ):
        self.name, self.url, self.log = name, f"http://127.0.0.1:{port}", log
        self._out = open(log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True
        )
        import httpx

        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{name} exited early:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + ready, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise SystemExit(f"{name} did not become ready:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def entities(users: int, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"user_id": rng.randint(1, users), "amount": round(rng.uniform(5, 900), 2)}
        for _ in range(n)
    ]


def ours_body(entity: dict) -> dict:
    return {"entities": [entity]}


def feast_body(entity: dict) -> dict:
    return {"feature_service": SERVICE, "entities": {k: [v] for k, v in entity.items()}}


def cross_check(ours: Server, feast: Server, sample: list[dict]) -> int:
    """Both servers return the same value for every feature of every sampled entity."""
    import httpx

    def post(url: str, body: dict) -> httpx.Response:
        # feast serve's workers can die while booting (seen: "Command Out of Sync" from its SQL
        # registry's pymysql connection as several workers start at once); gunicorn restarts them.
        for _ in range(9):
            try:
                return httpx.post(url, json=body, timeout=30, headers=AUTH)
            except httpx.TransportError:
                time.sleep(1)
        return httpx.post(url, json=body, timeout=30, headers=AUTH)

    checked = 0
    for entity in sample:
        a = post(f"{ours.url}/v1/models/{SERVICE}/predict", ours_body(entity))
        b = post(f"{feast.url}/get-online-features", feast_body(entity))
        a.raise_for_status()
        b.raise_for_status()
        served = a.json()["predictions"][0]["features"]
        theirs = b.json()
        names = theirs["metadata"]["feature_names"]
        for name, result in zip(names, theirs["results"], strict=True):
            if name in entity:
                continue
            mine, other = served[name]["value"], result["values"][0]
            same = (mine == other) or (
                isinstance(mine, float)
                and isinstance(other, float)
                and (math.isclose(mine, other, rel_tol=1e-9) or (mine != mine and other != other))
            )
            if not same:
                raise SystemExit(f"mismatch for {entity} {name}: ours {mine!r}, feast {other!r}")
            checked += 1
        if set(served) != set(names) - set(entity):
            raise SystemExit(f"feature sets differ: {sorted(served)} vs {names}")
    return checked


AUTH = {"Authorization": f"Bearer {KEY}"}


def _wrk_script(url: str, path: str, bodies: list[dict], work: Path) -> Path:
    lua = work / f"wrk_{abs(hash((url, path)))}.lua"
    lua.write_text(
        WRK_SCRIPT
        % {
            "bodies": ", ".join(json.dumps(json.dumps(b)) for b in bodies),
            "path": path,
            "key": KEY,
        }
    )
    return lua


def outage(url: str, path: str, bodies: list[dict], pid_file: str, work: Path) -> dict:
    """wrk at concurrency 8 for 20 s while Redis hangs (SIGSTOP: connections accepted, nothing
    answered) from 4 s to 4 + HANG_SECONDS s: the latency of every request, 503s included."""
    import threading

    lua = _wrk_script(url, path, bodies, work)
    pid = int(Path(pid_file).read_text())

    def hang() -> None:
        time.sleep(4)
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(HANG_SECONDS)
        finally:
            os.kill(pid, signal.SIGCONT)

    hanger = threading.Thread(target=hang)
    hanger.start()
    try:
        out = subprocess.run(
            ["wrk", "-t", "2", "-c", "8", "-d", "20s", "--timeout", "10s", "-s", str(lua), url],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        hanger.join()
    return json.loads(out.strip().splitlines()[-1])


def logged_rows(env: dict[str, str]) -> int:
    """Rows in the service's served-feature log table (absent: 0)."""
    import pymysql

    from providers.tidb import sql

    conn = pymysql.connect(
        host=env["TIDB_HOST"],
        port=int(env["TIDB_PORT"]),
        user=env["TIDB_USER"],
        password=env["TIDB_PASSWORD"],
        database=env["TIDB_DATABASE"],
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT COUNT(*) FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = %s",
                (f"served_{SERVICE}",),
            )
            if not cur.fetchone()[0]:
                return 0
            cur.execute("SELECT COUNT(*) FROM " + sql.quote_table(f"served_{SERVICE}"))  # noqa: S608
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def wrk(
    url: str, path: str, bodies: list[dict], concurrency: int, min_requests: int, work: Path
) -> dict:
    """Run wrk long enough for `min_requests` (a 3 s probe sizes the run); returns its summary."""
    lua = _wrk_script(url, path, bodies, work)
    threads = str(min(concurrency, 2))

    def once(seconds: int) -> dict:
        out = subprocess.run(
            [
                "wrk",
                "-t",
                threads,
                "-c",
                str(concurrency),
                "-d",
                f"{seconds}s",
                "--timeout",
                "10s",
                "-s",
                str(lua),
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])

    probe = once(3)  # also warms every worker up
    rate = probe["requests"] / (probe["duration_us"] / 1e6)
    summary = once(max(5, math.ceil(min_requests * 1.15 / max(rate, 1.0))))
    if summary["requests"] < min_requests:  # the probe overestimated: run again, longer
        rate = summary["requests"] / (summary["duration_us"] / 1e6)
        summary = once(math.ceil(min_requests * 1.3 / rate))
    if summary["status_errors"] or summary["socket_errors"]:
        raise SystemExit(f"{url}{path} at c={concurrency}: errors {summary}")
    return summary


async def _floor(
    redis_url: str, keys: list[list[tuple[bytes, list]]], concurrency: int, total: int
) -> list[float]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url, max_connections=concurrency)
    latencies: list[float] = []
    hits = 0
    counter = iter(range(total))

    async def worker() -> None:
        nonlocal hits
        for i in counter:
            started = time.perf_counter()
            async with client.pipeline(transaction=False) as pipe:
                for key, fields in keys[i % len(keys)]:
                    pipe.hmget(key, fields)
                replies = await pipe.execute()
            latencies.append(time.perf_counter() - started)
            hits += any(v is not None for reply in replies for v in reply)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.aclose()
    if hits < total // 2:  # wrong keys read nothing, fast: a floor that means nothing
        raise SystemExit(f"only {hits} of {total} floor lookups found any feature")
    return latencies


def floor_keys(entity_rows: list[dict]) -> list[list[tuple[bytes, list]]]:
    """The Redis keys and hash fields Feast reads for the service's feature views, per entity."""
    from feast import FeatureStore
    from feast.infra.online_stores.helpers import _mmh3, _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    store = FeatureStore(repo_path=str(REPO))
    service = store.get_feature_service(SERVICE)
    views = {v.name for v in store.list_feature_views()}
    views |= {v.name for v in store.list_stream_feature_views()}
    fields = [
        (p.name, [_mmh3(f"{p.name}:{f.name}") for f in p.features] + [f"_ts:{p.name}"])
        for p in service.feature_view_projections
        if p.name in views
    ]
    out = []
    for row in entity_rows:
        key = EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=row["user_id"])])
        redis_key = _redis_key(store.project, key, entity_key_serialization_version=3)
        out.append([(redis_key, f) for _, f in fields])
    return out


def floor_worker(argv: list[str]) -> int:
    """`--floor-worker URL C N FILE`: run the raw Redis floor in this (separate) process."""
    redis_url, concurrency, total, rows_file = argv[0], int(argv[1]), int(argv[2]), argv[3]
    keys = floor_keys(json.loads(Path(rows_file).read_text()))
    asyncio.run(_floor(redis_url, keys, concurrency, 2000))  # warm-up
    started = time.perf_counter()
    latencies = asyncio.run(_floor(redis_url, keys, concurrency, total))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p / 100 * len(latencies)))] * 1e6

    print(
        json.dumps(
            {
                "requests": len(latencies),
                "duration_us": elapsed * 1e6,
                "p50_us": pct(50),
                "p95_us": pct(95),
                "p99_us": pct(99),
                "max_us": latencies[-1] * 1e6,
            }
        )
    )
    return 0


def row(summary: dict) -> dict:
    seconds = summary["duration_us"] / 1e6
    return {
        "requests": summary["requests"],
        "rps": summary["requests"] / seconds,
        "p50_ms": summary["p50_us"] / 1000,
        "p95_ms": summary["p95_us"] / 1000,
        "p99_ms": summary["p99_us"] / 1000,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--floor-worker"]:
        return floor_worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=20_000, help="At least this many per run.")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--serving-workers",
        type=int,
        default=int(os.environ.get("SERVING_WORKERS", "2")),
        help="uvicorn workers for our endpoint.",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.users < 10 or args.requests < 100 or min(args.concurrency) < 1:
        parser.error("--users >= 10, --requests >= 100 and --concurrency >= 1")
    params = {
        "service": SERVICE,
        "users": args.users,
        "requests_per_run": args.requests,
        "concurrency": args.concurrency,
        "serving_workers": args.serving_workers,
        "feast_serve": "--workers -1 --worker-connections 1000 --registry_ttl_sec 60 "
        "--no-access-log --max-requests 0",
        "load_generator": "wrk (keep-alive)",
    }
    result = header("online", params)
    work = Path(tempfile.mkdtemp(prefix="bench-online-"))
    with stack() as services:
        env = {**os.environ, **services, "SPARK_MASTER": "local[2]", "PYTHONPATH": str(ROOT)}
        prepare(env, work, args.users)
        sample = entities(args.users, 1000, args.seed)
        (work / "rows.json").write_text(json.dumps(sample))
        ours_port, feast_port = free_port(), free_port()
        ours = Server(
            "ours",
            [PY, "-m", "serving"],
            {
                **env,
                "SERVING_PORT": str(ours_port),
                "SERVING_MODELS_DIR": str(work / "models"),
                "SERVING_MODELS": json.dumps([SERVICE]),
                "SERVING_WORKERS": str(args.serving_workers),
                "SERVING_ACCESS_LOG": "false",
                "SERVING_API_KEYS": json.dumps(
                    {"bench": {"sha256": digest(KEY), "scopes": ["predict"]}}
                ),
            },
            ours_port,
            "/readyz",
            work / "ours.log",
        )
        feast = None
        try:
            # Feast 0.67's SQL registry connection is shared by the forked gunicorn workers;
            # now and then a worker's start-up registry read fails on it ("Lost connection",
            # "Command Out of Sync") and gunicorn shuts down: start it again, at most 3 times.
            for attempt in range(3):
                try:
                    feast = Server(
                        "feast serve",
                        [
                            FEAST,
                            "-c",
                            str(REPO),
                            "serve",
                            "--port",
                            str(feast_port),
                            "--workers",
                            "-1",
                            "--worker-connections",
                            "1000",
                            "--registry_ttl_sec",
                            "60",
                            "--no-access-log",
                            "--max-requests",
                            "0",
                        ],
                        env,
                        feast_port,
                        "/health",
                        work / "feast.log",
                    )
                except SystemExit as exc:  # exited before it answered
                    result.note(f"feast serve failed to start (attempt {attempt + 1}): {exc}"[:300])
                    continue
                time.sleep(5)  # a failing worker takes the server down within a second or two
                if feast.proc.poll() is None:
                    break
                result.note(f"feast serve exited after start-up (attempt {attempt + 1}); restarted")
                feast.stop()
            else:
                raise SystemExit("feast serve failed to stay up 3 times: see feast.log")
            checked = cross_check(ours, feast, sample[:50])
            result.note(f"{checked} feature values equal between ours and feast serve")
            for c in args.concurrency:
                print(f"-- concurrency {c}", flush=True)
                a = result.add(
                    f"ours c={c}",
                    concurrency=c,
                    **row(
                        wrk(
                            ours.url,
                            f"/v1/models/{SERVICE}/predict",
                            [ours_body(e) for e in sample],
                            c,
                            args.requests,
                            work,
                        )
                    ),
                )
                b = result.add(
                    f"feast serve c={c}",
                    concurrency=c,
                    **row(
                        wrk(
                            feast.url,
                            "/get-online-features",
                            [feast_body(e) for e in sample],
                            c,
                            args.requests,
                            work,
                        )
                    ),
                )
                floor = subprocess.run(
                    [
                        PY,
                        "-m",
                        "benchmarks.online",
                        "--floor-worker",
                        services["REDIS_URL"],
                        str(c),
                        str(args.requests),
                        str(work / "rows.json"),
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                )
                if floor.returncode != 0:
                    raise SystemExit(f"the Redis floor failed:\n{floor.stderr[-3000:]}")
                out = floor.stdout
                f = result.add(
                    f"redis floor c={c}",
                    concurrency=c,
                    **row(json.loads(out.strip().splitlines()[-1])),
                )
                gated = c in (1, 8)
                result.ratio(
                    f"p99 ours/feast c={c}",
                    a["p99_ms"] / b["p99_ms"],
                    "<= 0.5" if gated else None,
                    (a["p99_ms"] <= 0.5 * b["p99_ms"]) if gated else None,
                )
                result.ratio(
                    f"throughput ours/feast c={c}",
                    a["rps"] / b["rps"],
                    ">= 2" if gated else None,
                    (a["rps"] >= 2 * b["rps"]) if gated else None,
                )
                result.ratio(f"p99 ours/floor c={c}", a["p99_ms"] / f["p99_ms"])
            print(f"-- Redis hung for {HANG_SECONDS} s under load (c=8)", flush=True)
            time.sleep(3)  # the earlier runs' rows flushed (every second)
            logged_before = logged_rows(env)
            hung = outage(
                ours.url,
                f"/v1/models/{SERVICE}/predict",
                [ours_body(e) for e in sample],
                services["BENCH_REDIS_PID_FILE"],
                work,
            )
            result.add(
                f"ours c=8, Redis hung {HANG_SECONDS} s",
                concurrency=8,
                non_2xx=hung["status_errors"],
                socket_errors=hung["socket_errors"],
                max_ms=hung["max_us"] / 1000,
                **row(hung),
            )
            ours.stop()  # drains the served-feature log
            answered = hung["requests"] - hung["status_errors"]
            logged = logged_rows(env) - logged_before
            print(
                f"   served-feature log: {logged} rows for {answered} answered predictions "
                f"(one entity each) in the outage run",
                flush=True,
            )
            if answered:
                result.ratio("logged rows / answered predictions, outage run", logged / answered)
            else:
                result.note("no prediction was answered in the outage run")
        finally:
            ours.stop()
            if feast is not None:
                feast.stop()
    result.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
