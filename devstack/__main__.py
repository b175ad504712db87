"""`python -m devstack up|down|status|env`: the project's local stack.

`up` starts MariaDB (unless TIDB_HOST points at an existing TiDB/MySQL server), Redis (the online
store) and the event broker (Redis Streams in a second, durable redis-server) on free loopback ports
with their data under `.stack/`, waits until each answers, writes `.stack/env`
(shell exports of the connection settings, with the admin account) and prints it. Running `up`
twice reuses what runs. `down` stops them. `env` prints the exports of a running stack.

With its own MariaDB, `up` also creates an account per role of providers/tidb/roles.py and
writes `.stack/env.<role>` (its TIDB_USER and TIDB_PASSWORD): `source .stack/env` then
`source .stack/env.serving` runs a process as that role, as `make demo` does for each step.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

from devstack import MariaDB, Redis, ServiceError, feast_redis_connection_string

ROOT = Path(__file__).resolve().parent.parent
STACK = Path(os.environ.get("STACK_DIR") or ROOT / ".stack")
STATE = STACK / "state.json"
ENV_FILE = STACK / "env"


def role_env_file(role: str) -> Path:
    return STACK / f"env.{role}"


def _load_state() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def _services(state: dict) -> tuple[MariaDB, Redis, Redis]:
    db = state.get("mariadb", {})
    mariadb = MariaDB(STACK / "mariadb", port=db.get("port", 0), password=db.get("password", ""))
    redis = Redis(STACK / "redis", port=state.get("redis", {}).get("port", 0))
    broker = Redis(STACK / "broker", port=state.get("broker", {}).get("port", 0), durable=True)
    return mariadb, redis, broker


def _start_redis(server: Redis, what: str) -> None:
    if server.is_running():
        print(f"{what} already running on 127.0.0.1:{server.port}")
        return
    server.port = 0  # take a fresh free port: the old one may be taken now
    print(f"Starting {what} ...", flush=True)
    server.start()
    print(f"{what} ready on 127.0.0.1:{server.port}")


def _write_env(env: dict[str, str], path: Path = ENV_FILE) -> None:
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)


def up() -> int:
    STACK.mkdir(parents=True, exist_ok=True)
    state = _load_state()
    mariadb, redis, broker = _services(state)
    env: dict[str, str] = {}
    # TIDB_HOST names an outside server unless it is our own export from an earlier `up`.
    external = os.environ.get("TIDB_HOST") and os.environ.get("DEVSTACK_MANAGED") != "1"
    if external and not state.get("mariadb"):
        print(
            f"TIDB_HOST={os.environ['TIDB_HOST']} is set: using that server, not starting MariaDB."
        )
        # Every TIDB_* setting of providers/tidb/settings.py the user exported, TLS included.
        env.update({k: v for k, v in os.environ.items() if k.startswith("TIDB_")})
    else:
        if mariadb.is_running():
            print(f"MariaDB already running on 127.0.0.1:{mariadb.port}")
        else:
            mariadb.port = 0  # take a fresh free port: the old one may be taken now
            print("Starting MariaDB (TiDB stand-in) ...", flush=True)
            mariadb.start()
            print(f"MariaDB ready on 127.0.0.1:{mariadb.port} (data in {mariadb.data_dir})")
        accounts = mariadb.create_roles(passwords=state.get("mariadb", {}).get("roles"))
        state["mariadb"] = {
            "port": mariadb.port,
            "password": mariadb.password,
            "roles": {role: a["TIDB_PASSWORD"] for role, a in accounts.items()},
        }
        for role, account in accounts.items():
            _write_env(account, role_env_file(role))
        env.update(mariadb.env())
        env["DEVSTACK_MANAGED"] = "1"
    _start_redis(redis, "Redis")
    _start_redis(broker, "the event broker (Redis Streams)")
    state["redis"] = {"port": redis.port}
    state["broker"] = {"port": broker.port}
    env["REDIS_URL"] = redis.url
    env["REDIS_CONNECTION_STRING"] = feast_redis_connection_string(redis.url)
    env["BROKER_URL"] = broker.url
    STATE.write_text(json.dumps(state))
    STATE.chmod(0o600)
    _write_env(env)
    print(f"\nConnection settings (also in {ENV_FILE}):")
    print(ENV_FILE.read_text())
    return 0


def down() -> int:
    state = _load_state()
    if not state:
        print("No local stack is running.")
        return 0
    mariadb, redis, broker = _services(state)
    if state.get("mariadb"):
        mariadb.stop()
        print("MariaDB stopped.")
    redis.stop()
    print("Redis stopped.")
    if state.get("broker"):
        broker.stop()
        print("Event broker stopped.")
    STATE.unlink(missing_ok=True)
    ENV_FILE.unlink(missing_ok=True)
    for path in STACK.glob("env.*"):
        path.unlink()
    return 0


def status() -> int:
    state = _load_state()
    if not state:
        print("No local stack is running (`make up` starts it).")
        return 1
    mariadb, redis, broker = _services(state)
    ok = True
    if state.get("mariadb"):
        up_ = mariadb.is_running()
        ok &= up_
        print(f"mariadb 127.0.0.1:{mariadb.port}: {'up' if up_ else 'DOWN'}")
    up_ = bool(state.get("redis")) and redis.is_running()
    ok &= up_
    print(f"redis   127.0.0.1:{redis.port}: {'up' if up_ else 'DOWN'}")
    up_ = bool(state.get("broker")) and broker.is_running()
    ok &= up_
    print(f"broker  127.0.0.1:{broker.port}: {'up' if up_ else 'DOWN'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    args = parser.parse_args(argv)
    try:
        if args.command == "env":
            if not ENV_FILE.exists():
                print("No local stack: run `make up` first.", file=sys.stderr)
                return 1
            print(ENV_FILE.read_text(), end="")
            return 0
        return {"up": up, "down": down, "status": status}[args.command]()
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
