"""A throwaway PostgreSQL server for the benchmarks (Feast's own postgres offline store reads it).

`Postgres(data_dir).start()` runs Debian's `initdb` and `postgres` (no system service, no
`pg_ctlcluster`) on a free loopback port, with its unix socket in the data dir, waits until it
answers, and creates a database and a password-protected user. `stop()` asks for a fast shutdown.
`running()` does all of it in a fresh temp dir and removes the dir afterwards.

postgres refuses to run as root: when the benchmark runs as root the server (and `initdb`) run as
the `postgres` system user that Debian's package creates, and the data dir is handed to it. As a
normal user everything runs as that user.

The settings below are for a benchmark on a disposable copy of generated data, not for a server
that keeps anything: durability is off (fsync, synchronous_commit and full_page_writes off), so a
crash can lose or corrupt the data. Memory settings are sized for a 2-4 core, 16+ GiB machine.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from devstack.services import LOOPBACK, ServiceError, _wait_until, free_port

SERVICE_USER = "postgres"  # the system user Debian's postgresql package creates
SUPERUSER = "postgres"  # the database superuser initdb creates (peer/trust over the socket only)

BENCH_SETTINGS = {
    "shared_buffers": "512MB",
    "work_mem": "64MB",
    "maintenance_work_mem": "256MB",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "max_connections": "40",
    "timezone": "UTC",
    "logging_collector": "off",
}


def binary(name: str) -> str:
    """`name` from PATH or the newest /usr/lib/postgresql/<version>/bin; a clear error if absent."""
    found = shutil.which(name)
    if found:
        return found
    for bin_dir in sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    ):
        if (bin_dir / name).exists():
            return str(bin_dir / name)
    raise ServiceError(
        f"PostgreSQL's '{name}' is not installed. Install it with: "
        "sudo apt-get install -y postgresql"
    )


def _service_account() -> pwd.struct_passwd | None:
    """The account the server runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise ServiceError(
            "postgres will not run as root and there is no 'postgres' system user to run it as. "
            "Install the server package, which creates it: sudo apt-get install -y postgresql"
        ) from None


@dataclass
class Postgres:
    """A `postgres` server in `data_dir` on a loopback port (bench settings, see the module doc)."""

    data_dir: Path
    port: int = 0
    database: str = "feast"
    user: str = "feast"
    password: str = ""
    settings: dict[str, str] = field(default_factory=lambda: dict(BENCH_SETTINGS))
    _proc: subprocess.Popen | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def _as_service(self) -> dict:
        """Popen/run keyword arguments that drop to the service account when we are root."""
        account = _service_account()
        if account is None:
            return {}
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def start(self, timeout_s: float = 60.0) -> Postgres:
        initdb, postgres = binary("initdb"), binary("postgres")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.password = self.password or secrets.token_urlsafe(18)
        drop = self._as_service()
        if drop:
            os.chown(self.data_dir, drop["user"], drop["group"])
            reachable = subprocess.run(["test", "-w", str(self.data_dir)], **drop)
            if reachable.returncode != 0:
                raise ServiceError(
                    f"{self.data_dir} is not reachable by the '{SERVICE_USER}' user (a parent "
                    "directory is private). Put the data dir in a directory of its own under /tmp "
                    "(benchmarks.postgres.running() does)."
                )
        if not (self.pgdata / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    initdb,
                    "-D",
                    str(self.pgdata),
                    "-U",
                    SUPERUSER,
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ],
                capture_output=True,
                text=True,
                **drop,
            )
            if result.returncode != 0:
                raise ServiceError(f"initdb failed: {result.stderr.strip() or result.stdout}")
        cmd = [
            postgres,
            "-D",
            str(self.pgdata),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            f"unix_socket_directories={self.data_dir}",
        ]
        for key, value in self.settings.items():
            cmd += ["-c", f"{key}={value}"]
        with open(self.log_file, "ab") as out:
            self._proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **drop
            )
        try:
            _wait_until(self._ready, "postgres", timeout_s, self.log_file)
            self._create_user_and_database()
        except BaseException:
            self.stop()  # never leave a half-started server behind
            raise
        return self

    def _admin(self):
        import psycopg

        return psycopg.connect(
            host=str(self.data_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=5,
        )

    def _ready(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            raise ServiceError(f"postgres exited with {self._proc.returncode}")
        with self._admin() as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def _create_user_and_database(self) -> None:
        from psycopg import sql

        with self._admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(self.user), sql.Literal(self.password)
                )
            )
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(self.database), sql.Identifier(self.user)
                )
            )

    def connect(self, **kwargs):
        """A psycopg connection as the bench user over TCP (the way Feast connects)."""
        import psycopg

        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.database,
            **kwargs,
        )

    def stop(self, timeout_s: float = 30.0) -> None:
        """Fast shutdown (SIGINT: roll back open sessions, checkpoint, exit); SIGKILL if stuck."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def env(self) -> dict[str, str]:
        return {
            "PG_HOST": LOOPBACK,
            "PG_PORT": str(self.port),
            "PG_USER": self.user,
            "PG_PASSWORD": self.password,
            "PG_DATABASE": self.database,
        }


@contextlib.contextmanager
def running(keep: bool = False) -> Iterator[Postgres]:
    """A started server in a new temp dir of its own; stopped and removed on exit (even on error)."""
    base = Path(tempfile.mkdtemp(prefix="bench-postgres-"))
    server = Postgres(base)
    try:
        yield server.start()
    finally:
        server.stop()
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
