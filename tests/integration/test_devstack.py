"""`python -m devstack up|status|down`: real processes start, answer, and are all gone after down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def devstack(stack: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "STACK_DIR": str(stack), **(env or {})}
    full = {
        k: v for k, v in full.items() if not (k.startswith("TIDB_") or k == "DEVSTACK_MANAGED")
    } | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _role(stack: Path, role: str) -> dict[str, str]:
    import shlex

    lines = (stack / f"env.{role}").read_text().splitlines()
    return {
        k: shlex.split(v)[0]
        for k, v in (line.removeprefix("export ").split("=", 1) for line in lines)
    }


def running(*patterns: str) -> list[str]:
    """Processes whose command line matches any pattern (redis-server rewrites its title to host:port)."""
    found = []
    for pattern in patterns:
        out = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout
        found += [line for line in out.splitlines() if "pgrep" not in line]
    return found


def test_up_is_idempotent_and_down_stops_everything(tmp_path):
    stack = tmp_path / "stack"
    try:
        _up_status_down(stack)
    finally:
        devstack(stack, "down")  # never leave servers behind, even when an assertion failed


def _up_status_down(stack: Path) -> None:
    first = devstack(stack, "up")
    assert first.returncode == 0, first.stderr
    env = dict(
        line.removeprefix("export ").split("=", 1)
        for line in (stack / "env").read_text().splitlines()
    )
    assert {
        "TIDB_HOST",
        "TIDB_PORT",
        "TIDB_PASSWORD",
        "REDIS_URL",
        "REDIS_CONNECTION_STRING",
        "BROKER_URL",
    } <= set(env)
    redis = f"redis-server 127.0.0.1:{env['REDIS_URL'].rsplit(':', 1)[1].split('/')[0]}"
    broker = f"redis-server 127.0.0.1:{env['BROKER_URL'].rsplit(':', 1)[1].split('/')[0]}"
    assert redis != broker
    # mariadbd (data in the stack dir), the online store's and the broker's redis-server
    assert len(running(str(stack), redis, broker)) == 3
    import redis as redis_client

    durable = redis_client.Redis.from_url(env["BROKER_URL"])
    assert durable.config_get("appendfsync") == {"appendfsync": "always"}
    assert durable.config_get("appendonly") == {"appendonly": "yes"}
    durable.close()
    serving = _role(stack, "serving")
    assert (stack / "env.serving").stat().st_mode & 0o077 == 0  # secrets: the owner's only
    import pymysql

    conn = pymysql.connect(
        host=env["TIDB_HOST"],
        port=int(env["TIDB_PORT"]),
        user=serving["TIDB_USER"],
        password=serving["TIDB_PASSWORD"],
        database=env["TIDB_DATABASE"],
    )
    with conn.cursor() as cur:  # the role account exists, and it is not the admin
        try:
            cur.execute("SELECT * FROM logins")
            raise AssertionError("the serving account read raw events")
        except pymysql.err.OperationalError as exc:
            assert exc.args[0] == 1142, exc
    conn.close()
    again = devstack(stack, "up")
    assert again.returncode == 0 and "already running" in again.stdout
    assert _role(stack, "serving") == serving  # the same account: running processes keep working
    assert devstack(stack, "status").returncode == 0
    down = devstack(stack, "down")
    assert down.returncode == 0 and "warning" not in down.stdout
    assert running(str(stack), redis, broker) == []
    assert devstack(stack, "status").returncode == 1
