"""`make demo`: the platform end to end on the local stack, as far as it exists today.

1. generate a seeded raw event history in TiDB (Spark),
2. backfill the batch features for the last 28 days (Spark, versioned rows),
3. `feast apply` and `feast materialize-incremental` with the stock CLI,
4. print online features from Redis for a few users, for both models' feature services,
5. show versioning: a training row read `as_of` a knowledge time vs the latest values,
6. train both models, serve them over HTTP (`python -m serving`), send predictions and a push,
   and print the skew report of what was served.

Each step runs with the database account of its role (providers/tidb/roles.py; `make up` writes
them to .stack/env.<role>): the jobs as the writer, `feast apply` and materialization as the
registry, training and the skew report as the reader, serving as serving.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REPO = ROOT / "feature_repo"
USERS = int(os.environ.get("DEMO_USERS", "2000"))
DAYS = int(os.environ.get("DEMO_DAYS", "60"))
BACKFILL_DAYS = 28


def as_role(role: str | None) -> dict[str, str]:
    """The environment of a process run as `role` (providers/tidb/roles.py): the stack's account
    for it, from `.stack/env.<role>`. Without one (an outside server, or `role` None: the admin's
    steps), the environment as it is."""
    import shlex

    path = Path(os.environ.get("STACK_DIR") or ROOT / ".stack") / f"env.{role}"
    if role is None or os.environ.get("DEVSTACK_MANAGED") != "1" or not path.exists():
        return dict(os.environ)
    lines = path.read_text().splitlines()
    pairs = (line.removeprefix("export ").split("=", 1) for line in lines if line)
    return {**os.environ, **{k: shlex.split(v)[0] for k, v in pairs}}


def step(title: str, *cmd: str, role: str | None) -> None:
    shown = f"[as {role}] " if role else ""
    print(f"\n== {title}\n$ {shown}{' '.join(cmd)}", flush=True)
    started = time.monotonic()
    subprocess.run(
        [sys.executable if c == "python" else c for c in cmd],
        check=True,
        cwd=ROOT,
        env=as_role(role),
    )
    print(f"   ({time.monotonic() - started:.1f}s)", flush=True)


def feast_bin() -> str:
    return str(Path(sys.executable).parent / "feast")


def start_stream_job() -> subprocess.Popen:
    """The velocity stream job in the background, from now on (a fresh checkpoint per demo run)."""
    checkpoint = ROOT / ".stack" / "checkpoints" / dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    print(f"\n== Stream job: python -m spark_jobs.stream (checkpoint {checkpoint})", flush=True)
    log = (ROOT / ".stack" / "stream.log").open("w")
    job = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "spark_jobs.stream",
            "--checkpoint",
            str(checkpoint),
            "--starting-offsets",
            "latest",
            "--trigger-seconds",
            "0.5",
        ],
        cwd=ROOT,
        env=as_role("writer"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    for _ in range(240):  # bounded: the run id appears once its queries have started
        if (checkpoint / "run_id").exists() or job.poll() is not None:
            break
        time.sleep(0.5)
    if job.poll() is not None:
        raise SystemExit(f"the stream job exited; see {ROOT / '.stack' / 'stream.log'}")
    return job


def credential_stuffing_burst(call) -> None:
    """Failed logins for one account from 20 IPs within 40 s, through POST /v1/events; then the
    account_takeover score of a login from the user's usual IP and device, before and after the
    stream has counted the burst (only the velocity features differ)."""
    import random

    user, login = _quiet_user(call)
    now = dt.datetime.now(dt.UTC)
    base = int(now.timestamp() * 1000) * 1000  # event ids unique per demo run
    events = [
        {
            "event_id": base + i,
            "user_id": user,
            "event_ts": (now - dt.timedelta(seconds=40 - 2 * i)).isoformat(),
            "ip": f"185.{random.randint(1, 250)}.{random.randint(1, 250)}.{i + 1}",
            "device_id": f"bot-{i % 3}",
            "country": "RU",
            "success": False,
        }
        for i in range(20)
    ]
    before = call("/v1/models/account_takeover/predict", {"entities": [login]})
    sent = time.monotonic()
    print(
        f"POST /v1/events/login: 20 failed logins for user {user} from 20 IPs ->",
        {k: v for k, v in call("/v1/events/login", {"events": events}).items() if k != "ids"},
    )
    seen = None
    for _ in range(120):  # up to a minute
        seen = call("/v1/models/account_takeover/predict", {"entities": [login]})
        failed = seen["predictions"][0]["features"]["failed_logins_10m"]["value"]
        if failed is not None and failed >= 20:
            break
        time.sleep(0.5)
    f = seen["predictions"][0]["features"]
    print(
        f"  counted by the stream {time.monotonic() - sent:.1f} s after ingest: "
        f"failed_logins_10m={f['failed_logins_10m']['value']} "
        f"distinct_ips_1h={f['distinct_ips_1h']['value']} "
        f"(age {f['failed_logins_10m']['age_seconds']:.1f} s, stale={f['failed_logins_10m']['stale']})"
    )
    print(
        f"  account_takeover score of user {user}'s login from their usual IP and device: "
        f"{before['predictions'][0]['score']:.3f} before the burst, "
        f"{seen['predictions'][0]['score']:.3f} after (decision {seen['predictions'][0]['decision']})"
    )
    return user


def _quiet_user(call) -> tuple[int, dict]:
    """A user with no failed login in the last 10 minutes (the stack may hold an earlier run's
    burst), and a login from their most common IP and device."""
    for user in range(7, 200):
        probe = {"user_id": user, "login_ip": "185.1.1.1", "login_device": "bot-0"}
        f = call("/v1/models/account_takeover/predict", {"entities": [probe]})["predictions"][0]
        f = f["features"]
        ips, devices = (f[n]["value"] for n in ("common_ips_365d", "common_devices_365d"))
        if f["failed_logins_10m"]["value"] in (None, 0) and ips and devices:
            ips, devices = (json.loads(v) if isinstance(v, str) else v for v in (ips, devices))
            return user, {"user_id": user, "login_ip": ips[0], "login_device": devices[0]}
    raise SystemExit("no user without recent failed logins among users 7..199")


def serve_and_predict(history_start: dt.date) -> None:
    """Train both models, start the server, predict, push, predict again, stop, report skew."""
    import json
    import urllib.request

    from devstack import free_port

    since = dt.datetime.combine(history_start, dt.time(), tzinfo=dt.UTC)
    # Labels arrive days after the fraud (up to 5 days for a takeover, 2 weeks for a withdrawal):
    # the latest week's events would mostly count as legitimate, so training stops before it.
    until = dt.datetime.combine(
        dt.datetime.now(dt.UTC).date(), dt.time(), tzinfo=dt.UTC
    ) - dt.timedelta(days=7)
    for model in ("account_takeover", "withdrawal_fraud"):
        step(
            f"Train {model}",
            "python",
            "-m",
            "pipelines.train",
            model,
            "--since",
            since.isoformat(),
            "--until",
            until.isoformat(),
            "--max-negatives",
            "5000",
            role="reader",
        )
    stream = start_stream_job()
    port = free_port()
    # A key made for this run (SHA-256 in the server's settings, the key in this process only)
    from serving.keys import new as new_key

    key, entry = new_key(["predict", "ingest", "admin"])
    keys = {"demo": {"sha256": entry.sha256, "scopes": sorted(entry.scopes)}}
    env = {**as_role("serving"), "SERVING_PORT": str(port), "SERVING_API_KEYS": json.dumps(keys)}
    print(f"\n== Serve: python -m serving (127.0.0.1:{port})", flush=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "serving"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"

    def call(path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            base + path,
            data=data,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    try:
        for _ in range(120):  # bounded wait for readiness
            try:
                if call("/readyz")["status"] == "ready":
                    break
            except OSError:
                time.sleep(0.5)
        served_since = dt.datetime.now(dt.UTC)
        logins = [
            {"user_id": 2, "login_ip": "203.0.113.50", "login_device": "dev-unknown"},
            {"user_id": 3, "login_ip": "198.51.100.4", "login_device": "dev-unknown"},
        ]
        out = call("/v1/models/account_takeover/predict", {"entities": logins})
        print(
            f"POST /v1/models/account_takeover/predict  (model {out['model_version']}, threshold {out['threshold']:.3f})"
        )
        for p in out["predictions"]:
            f = p["features"]["failed_logins_1d"]
            print(
                f"  user {p['entity']['user_id']}: score {p['score']:.3f} decision {p['decision']}  "
                f"failed_logins_1d={f['value']} (age {f['age_seconds']:.0f}s, stale={f['stale']})  "
                f"ip_is_common={p['features']['ip_is_common']['value']}  "
                f"device_is_new={p['features']['device_is_new']['value']}  missing={p['missing_features']}"
            )
        event = {
            "user_id": 3,
            "last_login_ip": "198.51.100.4",
            "last_login_device": "dev-unknown",
            "last_login_country": "DE",
            "recent_ips": ["198.51.100.4"],
            "event_ts": dt.datetime.now(dt.UTC).isoformat(),
        }
        print("POST /v1/push/login_push ->", call("/v1/push/login_push", {"events": [event]}))
        again = call("/v1/models/account_takeover/predict", {"entities": logins[1:]})[
            "predictions"
        ][0]
        print(
            f"  user 3 after the push: score {again['score']:.3f}  ip_seen_recently="
            f"{again['features']['ip_seen_recently']['value']}  device_is_new={again['features']['device_is_new']['value']}"
        )
        attacked = credential_stuffing_burst(call)
        # Then a withdrawal: the same amount for the attacked user and another.
        wd = call(
            "/v1/models/withdrawal_fraud/predict",
            {
                "entities": [
                    {"user_id": attacked, "amount": 2500.0},
                    {"user_id": 2, "amount": 2500.0},
                ]
            },
        )
        for p in wd["predictions"]:
            f = p["features"]
            print(
                f"POST /v1/models/withdrawal_fraud/predict  user {p['entity']['user_id']}, "
                f"2500.00: score {p['score']:.3f} decision {p['decision']}  "
                f"failed_logins_10m={f['failed_logins_10m']['value']} "
                f"amount_vs_30d_mean={f['amount_vs_30d_mean']['value']}"
            )
    finally:
        server.terminate()  # graceful: the served-feature log is flushed on shutdown
        server.wait(timeout=60)
        stream.terminate()  # SIGTERM: the stream job stops its queries cleanly
        stream.wait(timeout=120)
    step(
        "Skew report of what was served",
        "python",
        "-m",
        "pipelines.skew",
        "account_takeover",
        "--since",
        served_since.isoformat(),
        role="reader",
    )


def main() -> int:
    from providers.tidb.errors import TiDBConfigError
    from providers.tidb.settings import TiDBSettings

    try:
        TiDBSettings.from_env()  # the connection every step reads, checked once up front
    except TiDBConfigError as exc:
        print(f"error: {exc} (`make demo` starts the stack and sets them)", file=sys.stderr)
        return 2
    if not os.environ.get("REDIS_CONNECTION_STRING"):
        print("error: REDIS_CONNECTION_STRING not set; run `make demo`.", file=sys.stderr)
        return 2
    started = time.monotonic()
    today = dt.datetime.now(dt.UTC).date()
    start, end = today - dt.timedelta(days=BACKFILL_DAYS), today - dt.timedelta(days=1)
    step(
        f"Generate {USERS} users x {DAYS} days of logins, transactions, withdrawals, labels",
        "python",
        "-m",
        "spark_jobs.generate",
        "--users",
        str(USERS),
        "--days",
        str(DAYS),
        "--end",
        today.isoformat(),
        "--attack-rate",
        "0.05",  # enough attacks in 28 days for both models to validate on
        "--replace",
        role=None,  # --replace truncates the raw tables: the admin's (providers/tidb/roles.py)
    )
    before_backfill = dt.datetime.now(dt.UTC)
    step(
        f"Backfill batch features for {start} .. {end}",
        "python",
        "-m",
        "spark_jobs.backfill",
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        "--no-progress",
        role="writer",
    )
    step("Register the definitions", feast_bin(), "-c", "feature_repo", "apply", role="registry")
    step(
        f"Backfill velocity features for {start} .. {end} (the stream job's windows)",
        "python",
        "-m",
        "spark_jobs.velocity_backfill",
        "--start",
        start.isoformat(),
        "--end",
        end.isoformat(),
        role="writer",
    )
    now = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None).isoformat()
    # The whole backfilled range, not materialize-incremental: on a second run the registry
    # remembers the first one's end, and the regenerated history lies before it.
    step(
        "Materialize TiDB -> Redis",
        feast_bin(),
        "-c",
        "feature_repo",
        "materialize",
        dt.datetime.combine(start, dt.time()).isoformat(),
        now,
        role="registry",
    )

    from feast import FeatureStore

    from providers.tidb import as_of

    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 40)
    store = FeatureStore(repo_path=str(REPO))
    users = [1, 2, 3]
    from feast.data_source import PushMode

    # A login of user 1 from 203.0.113.7, pushed online and offline as serving will do.
    login = pd.DataFrame(
        {
            "user_id": [1],
            "last_login_ip": ["203.0.113.7"],
            "last_login_device": ["dev-new"],
            "last_login_country": ["DE"],
            "recent_ips": [["203.0.113.7"]],
            "event_ts": [pd.Timestamp.now(tz="UTC")],
        }
    )
    store.push("login_push", login, to=PushMode.ONLINE_AND_OFFLINE)
    ato = store.get_online_features(
        features=store.get_feature_service("account_takeover"),
        entity_rows=[
            {"user_id": u, "login_ip": "203.0.113.7", "login_device": "dev-new"} for u in users
        ],
    ).to_df()
    print(
        "\n== Online features from Redis: account_takeover (a login from 203.0.113.7 on a new device;"
        " user 1 has just pushed one from there)"
    )
    print(ato.set_index("user_id").T.to_string())
    fraud = store.get_online_features(
        features=store.get_feature_service("withdrawal_fraud"),
        entity_rows=[{"user_id": u, "amount": 500.0} for u in users],
    ).to_df()
    print("\n== Online features from Redis: withdrawal_fraud (a withdrawal of 500.00)")
    print(fraud.set_index("user_id").T.to_string())

    entity_df = pd.DataFrame(
        {
            "user_id": users,
            "event_timestamp": [pd.Timestamp(end, tz="UTC") + pd.Timedelta(hours=12)] * 3,
        }
    )
    feats = ["user_transactions:txn_count_30d", "user_transactions:txn_sum_30d"]
    with as_of(before_backfill):
        before = store.get_historical_features(entity_df=entity_df, features=feats).to_df()
    latest = store.get_historical_features(entity_df=entity_df, features=feats).to_df()
    print(
        f"\n== Point-in-time features from TiDB at {entity_df['event_timestamp'][0]}: the latest version,"
        f" and as_of {before_backfill:%H:%M:%S} (before this backfill; earlier runs' versions, if any)"
    )
    print(
        latest.merge(before, on=["user_id", "event_timestamp"], suffixes=("", "_as_of")).to_string(
            index=False
        )
    )
    serve_and_predict(start)
    print(
        f"\nDemo finished in {time.monotonic() - started:.1f}s. The stack is still running; `make down` stops it."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
