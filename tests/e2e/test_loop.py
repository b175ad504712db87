"""The whole loop as a user runs it, each step its own process through the project's CLIs:

events -> Spark backfill -> feast apply -> feast materialize -> train -> python -m serving
-> predict and push over HTTP -> served vectors logged in TiDB -> skew report.

Real MariaDB and Redis from the session fixtures; Spark on local[2]; uvicorn on a free port.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from devstack import free_port
from tests.utils.auth import api_keys, headers
from tests.utils.jobs import feast
from tests.utils.tables import rows

PY = sys.executable


def run(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [PY, "-m", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture
def env(mariadb, database, redis_connection_string):
    return {
        **os.environ,
        **mariadb.env(),
        "TIDB_DATABASE": database,
        "REDIS_CONNECTION_STRING": redis_connection_string,
        "SPARK_MASTER": "local[2]",
    }


@pytest.fixture
def server(env, tmp_path):
    """`python -m serving` on a free port; yields (base url, stop()). Stopped with SIGTERM."""
    port = free_port()
    server_env = {
        **env,
        "SERVING_PORT": str(port),
        "SERVING_MODELS_DIR": str(tmp_path / "models"),
        "SERVING_LOG_FLUSH_SECONDS": "30",  # nothing is flushed before shutdown: tests the drain
        "SERVING_API_KEYS": json.dumps(api_keys()),
    }
    log = open(tmp_path / "serving.log", "w")  # noqa: SIM115 - closed below
    process: subprocess.Popen | None = None

    def start() -> str:
        nonlocal process
        process = subprocess.Popen(
            [PY, "-m", "serving"], env=server_env, stdout=log, stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "serving.log").read_text()
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise AssertionError(
            "serving did not become ready:\n" + (tmp_path / "serving.log").read_text()
        )

    def stop() -> None:
        assert process is not None
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        log.flush()
        text = (tmp_path / "serving.log").read_text()
        # uvicorn re-raises the signal after a graceful shutdown, so -SIGTERM is a clean exit.
        assert code in (0, -signal.SIGTERM) and "Application shutdown complete" in text, text

    yield start, stop
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
    log.close()


def test_events_to_served_predictions_to_skew_report(env, server, db, tmp_path):
    start, stop = server
    # 1. Raw events and their features, computed by the Spark backfill.
    run(env, "spark_jobs.generate", "--users", "600", "--days", "35", "--end", "2026-03-01")
    run(env, "spark_jobs.backfill", "--start", "2026-02-10", "--end", "2026-02-28", "--no-progress")
    # 2. Definitions into the registry, features into Redis.
    feast(env, "apply")
    run(env, "spark_jobs.velocity_backfill", "--start", "2026-02-10", "--end", "2026-02-28")
    feast(env, "materialize-incremental", "2026-03-02T00:00:00")
    # 3. Both models trained on point-in-time features, artefacts where serving reads them.
    window = ["--since", "2026-02-11T00:00:00Z", "--until", "2026-03-01T00:00:00Z"]
    for model in ("account_takeover", "withdrawal_fraud"):
        out = run(env, "pipelines.train", model, *window, "--out", str(tmp_path / "models"))
        assert "ROC AUC" in out.stdout
        artefact = json.loads((tmp_path / "models" / model / "current.json").read_text())
        assert artefact["feature_service"] == model and artefact["as_of"]

    # 4. Serve, predict, push and predict again.
    url = start()
    started = dt.datetime.now(dt.UTC)
    logins = [{"user_id": u, "login_ip": "192.0.2.50", "login_device": "d-e2e"} for u in (1, 2)]
    response = httpx.post(
        f"{url}/v1/models/account_takeover/predict",
        json={"entities": logins},
        timeout=30,
        headers=headers(),
    )
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert [p["entity"]["user_id"] for p in predictions] == [1, 2]
    assert all(0.0 <= p["score"] <= 1.0 for p in predictions)
    assert predictions[0]["features"]["failed_logins_1d"]["status"] == "PRESENT"
    assert predictions[0]["features"]["ip_seen_recently"]["value"] is False  # a new IP

    event = {
        "user_id": 1,
        "last_login_ip": "192.0.2.50",
        "last_login_device": "d-e2e",
        "last_login_country": "NL",
        "recent_ips": ["192.0.2.50"],
        "event_ts": dt.datetime.now(dt.UTC).isoformat(),
    }
    pushed = httpx.post(
        f"{url}/v1/push/login_push", json={"events": [event]}, timeout=30, headers=headers()
    )
    assert pushed.status_code == 200, pushed.text
    again = httpx.post(
        f"{url}/v1/models/account_takeover/predict",
        json={"entities": logins[:1]},
        timeout=30,
        headers=headers(),
    ).json()["predictions"][0]
    assert again["features"]["last_login_ip"]["value"] == "192.0.2.50"
    assert again["features"]["ip_seen_recently"]["value"] is True  # the push is served at once
    bad = httpx.post(
        f"{url}/v1/models/withdrawal_fraud/predict",
        json={"entities": [{"user_id": 1, "amount": "lots"}]},
        timeout=30,
        headers=headers(),
    )
    assert bad.status_code == 422

    # 5. SIGTERM: the served-feature log (30 s flush interval) is drained on shutdown.
    stop()
    ids = {p["request_id"] for p in predictions} | {again["request_id"]}
    logged = {
        r[0]: r[1] for r in rows(db, "SELECT `__request_id`, user_id FROM served_account_takeover")
    }
    assert ids <= set(logged) and {logged[i] for i in ids} == {1, 2}

    # 6. Skew report over the served window, gated on batch features.
    report = run(
        env,
        "pipelines.skew",
        "account_takeover",
        "--since",
        started.isoformat(),
        "--json",
        "--max-batch-mismatch-rate",
        "0",
    )
    records = {r["feature"]: r for r in json.loads(report.stdout)}
    batch = [r for r in records.values() if r["kind"] == "batch"]
    assert batch and all(r["rows"] == 3 and r["mismatches"] == 0 for r in batch)
    assert {r["kind"] for r in records.values()} == {"batch", "push", "on_demand", "stream"}
    # No stream job runs here: serving had the materialized velocity rows, complete (no lag).
    stream = [r for r in records.values() if r["kind"] == "stream"]
    assert stream and all(r["mismatches"] == 0 and r["lag_max_s"] == 0 for r in stream)
    # The push landed offline too, so its value recomputed at log time matches what was served.
    assert records["user_last_login__last_login_ip"]["mismatches"] == 0
