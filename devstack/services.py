"""Start and stop the real services the platform needs, on loopback, with data in a given folder.

Used by `make up` / `make down` (through `python -m devstack`) and by the test fixtures, so the
demo and the tests run on the same kind of servers. Nothing here is a fake: `mariadbd` and
`redis-server` are the Debian binaries, started as child processes on free ports.

Only the standard library is imported, so this runs before the project's own dependencies are
importable.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A service could not be started or did not become ready."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
    )
    if not path:
        raise ServiceError(
            f"'{name}' is not installed. Install it with: sudo apt-get install -y {package} "
            "(or run `make deps`)."
        )
    return path


def _wait_until(check, what: str, timeout_s: float, log: Path | None = None) -> None:
    """Poll `check()` with a bounded back-off until it returns True; raise with the log tail if not."""
    deadline = time.monotonic() + timeout_s
    delay = 0.02
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # the service is still starting
            last_error = exc
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
    tail = ""
    if log is not None and log.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise ServiceError(
        f"{what} did not become ready in {timeout_s:.0f}s. {last_error or ''}\n{tail}"
    )


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((LOOPBACK, port)) == 0


def _is_our_process(pid: int, binary: str) -> bool:
    """True if `pid` runs `binary` (a pid file can outlive its process and the pid be reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return True  # no /proc (not Linux): fall back to trusting the pid file
    # redis-server rewrites its title to "/usr/bin/redis-server 127.0.0.1:PORT": compare the program
    return Path(cmdline.split(" ", 1)[0]).name == binary


def _stop_pid(pid: int, timeout_s: float = 20.0, binary: str | None = None) -> None:
    if binary and _pid_alive(pid) and not _is_our_process(pid, binary):
        print(f"warning: pid {pid} is not {binary} any more; not signalling it.")
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # Reap it if it is our child; ignore if it is not.
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it and look again.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    return True


_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]{1,48}$")
_PLAIN_VALUE = re.compile(r"^[A-Za-z0-9_.:@-]*$")  # a string literal of these needs no escapes


@dataclass
class MariaDB:
    """A MariaDB server (the MySQL-protocol stand-in for TiDB) in `data_dir` on a loopback port.

    `start()` initialises the data dir on first use, starts `mariadbd`, waits until it accepts
    connections, and creates `database` and a password-protected `user` for the platform.
    """

    data_dir: Path
    port: int = 0
    database: str = "feast"
    user: str = "feast"
    password: str = ""
    # InnoDB reads with O_DIRECT: this pool is its only cache (tests: small data; benchmarks: more)
    buffer_pool: str = "512M"
    # TLS: (CA, server certificate, server key) PEM files. Set, the server accepts only TLS
    # over TCP (require_secure_transport), and env() tells clients to verify it with the CA.
    tls_files: tuple[Path, Path, Path] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "mysqld.sock"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "mysqld.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "mysqld.log"

    def start(self, timeout_s: float = 60.0) -> MariaDB:
        mariadbd = _require_binary("mariadbd", "mariadb-server")
        install_db = _require_binary("mariadb-install-db", "mariadb-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.password = self.password or secrets.token_urlsafe(18)
        db_dir = self.data_dir / "db"
        is_root = os.geteuid() == 0
        user_args = ["--user=root"] if is_root else []
        if not (db_dir / "mysql").exists():
            subprocess.run(
                [
                    install_db,
                    "--no-defaults",
                    f"--datadir={db_dir}",
                    "--skip-test-db",
                    "--auth-root-authentication-method=socket",
                    *user_args,
                ],
                check=True,
                capture_output=True,
                text=True,
            )
        cmd = [
            mariadbd,
            "--no-defaults",
            f"--datadir={db_dir}",
            f"--port={self.port}",
            f"--bind-address={LOOPBACK}",
            f"--socket={self.socket_path}",
            f"--pid-file={self.pid_file}",
            f"--log-error={self.log_file}",
            "--skip-name-resolve",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_bin",
            "--default-time-zone=+00:00",
            f"--innodb-buffer-pool-size={self.buffer_pool}",
            "--innodb-flush-log-at-trx-commit=2",
            "--max-allowed-packet=64M",
            "--local-infile=1",  # bulk loads (providers/tidb/bulk.py)
            *user_args,
        ]
        if self.tls_files:
            ca, cert, key = self.tls_files
            cmd += [
                f"--ssl-ca={ca}",
                f"--ssl-cert={cert}",
                f"--ssl-key={key}",
                "--require-secure-transport=ON",
            ]
        with open(self.data_dir / "mysqld.stdout", "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_until(
                lambda: self.socket_path.exists() and _port_open(self.port),
                "mariadbd",
                timeout_s,
                self.log_file,
            )
            # The admin account (the DBA's: schema set-up, the tests' fixtures) and the
            # deployment's three databases (providers/tidb/roles.py names them); the platform's
            # processes use role accounts (create_roles). The names are checked, not quoted
            # here: this runs where providers.tidb (Feast, pandas) is not installed (Airflow's
            # environment), and a name of letters, digits and underscores needs no quoting.
            if not _PLAIN_NAME.match(self.database):
                raise ServiceError(f"database name {self.database!r}: use letters, digits and _")
            names = [self.database, f"{self.database}_registry", f"{self.database}_scratch"]
            account = [self.user, LOOPBACK]
            self._admin(
                [
                    *((f"CREATE DATABASE IF NOT EXISTS `{name}`", []) for name in names),
                    ("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", [*account, self.password]),
                    ("ALTER USER %s@%s IDENTIFIED BY %s", [*account, self.password]),
                    ("GRANT ALL PRIVILEGES ON *.* TO %s@%s", account),
                ]
            )
        except BaseException:
            _stop_pid(proc.pid)  # never leave a half-started server behind
            raise
        return self

    def create_roles(
        self,
        database: str | None = None,
        passwords: dict[str, str] | None = None,
        log_tables: list[str] | None = None,
    ) -> dict[str, dict[str, str]]:
        """An account per role of providers/tidb/roles.py for `database` (default: the stack's),
        with the given passwords or fresh ones, serving granted `log_tables` (default: the
        repo's services'); per role, the TIDB_USER and TIDB_PASSWORD that select it (the other
        settings are env()'s)."""
        from providers.tidb import roles

        database = database or self.database
        out, statements = {}, []
        for role in roles.ROLES:
            user = f"{database[:22]}_{role}"  # <= 32 characters: MySQL's and TiDB's limit
            password = (passwords or {}).get(role) or secrets.token_urlsafe(18)
            statements += roles.statements(
                role, database, user, password, LOOPBACK, log_tables=log_tables or roles.LOG_TABLES
            )
            out[role] = {"TIDB_USER": user, "TIDB_PASSWORD": password}
        self._admin(statements)
        return out

    def _admin(self, statements: list) -> None:
        """Run statements as the server's admin, each (text, values). Values are escaped by
        pymysql's own literal escaping (what it does to bound parameters); where pymysql is not
        installed (Airflow's environment) only values that need no escaping are taken (our
        generated passwords and names are such)."""

        def literal(value: str) -> str:
            try:
                import pymysql.converters
            except ImportError:
                if not _PLAIN_VALUE.match(value):
                    raise ServiceError("a value with quotes or spaces needs pymysql") from None
                return f"'{value}'"
            return pymysql.converters.escape_item(value, "utf8mb4")

        def render(text: str, params: list) -> str:
            return text % tuple(literal(p) for p in params)

        self._admin_sql("".join(render(t, p) + ";\n" for t, p in statements) + "FLUSH PRIVILEGES;")

    def _admin_sql(self, sql: str) -> None:
        client = _require_binary("mariadb", "mariadb-client")
        # mariadb-install-db gives the OS user that ran it a unix_socket account (root when root).
        admin = "root" if os.geteuid() == 0 else getpass.getuser()
        result = subprocess.run(  # the statements on stdin: passwords never on a command line
            [client, "--no-defaults", f"--socket={self.socket_path}", f"-u{admin}"],
            input=sql,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise ServiceError(f"Setting up MariaDB as '{admin}' failed: {result.stderr.strip()}")

    def stop(self) -> None:
        if self.pid_file.exists():
            pid = int(self.pid_file.read_text().strip() or 0)
            if pid:
                _stop_pid(pid, binary="mariadbd")

    def is_running(self) -> bool:
        if not self.pid_file.exists():
            return False
        text = self.pid_file.read_text().strip()
        return bool(text) and _pid_alive(int(text)) and _port_open(self.port)

    def env(self) -> dict[str, str]:
        """The `TIDB_*` variables of providers.tidb.settings for this server."""
        env = {
            "TIDB_HOST": LOOPBACK,
            "TIDB_PORT": str(self.port),
            "TIDB_USER": self.user,
            "TIDB_PASSWORD": self.password,
            "TIDB_DATABASE": self.database,
        }
        if self.tls_files:
            env |= {"TIDB_TLS": "true", "TIDB_TLS_CA": str(self.tls_files[0])}
        return env


@dataclass
class Redis:
    """A `redis-server` in `data_dir` on a loopback port.

    As the online store, persistence is off: it is a cache of TiDB. As the event broker
    (`durable=True`) every write is appended and fsynced before Redis answers (`appendfsync
    always`), so an event the broker acknowledged survives a crash of the broker.
    """

    data_dir: Path
    port: int = 0
    durable: bool = False
    _proc: subprocess.Popen | None = None

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "redis.log"

    def start(self, timeout_s: float = 30.0) -> Redis:
        server = _require_binary("redis-server", "redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        cmd = [
            server,
            "--bind",
            LOOPBACK,
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            *(
                ["--appendonly", "yes", "--appendfsync", "always"]
                if self.durable
                else ["--appendonly", "no"]
            ),
            "--protected-mode",
            "yes",
            "--pidfile",
            str(self.pid_file),
            "--logfile",
            str(self.log_file),
            "--daemonize",
            "no",
        ]
        self._proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        _wait_until(lambda: self._ping(), "redis-server", timeout_s, self.log_file)
        return self

    def _ping(self) -> bool:
        with socket.create_connection((LOOPBACK, self.port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self._proc is not None:
            _stop_pid(self._proc.pid)
            self._proc.wait(timeout=5)
        elif self.pid_file.exists():
            text = self.pid_file.read_text().strip()
            if text:
                _stop_pid(int(text), binary="redis-server")

    def is_running(self) -> bool:
        if not self.pid_file.exists():
            return False
        text = self.pid_file.read_text().strip()
        return bool(text) and _pid_alive(int(text)) and _port_open(self.port)

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.url, "REDIS_CONNECTION_STRING": f"{LOOPBACK}:{self.port},db=0"}
