"""FeaturePlatformHook: the connection settings of the platform, and running its commands.

An Airflow connection of type `feature_platform` holds the TiDB settings (host, port, login,
password, schema = database) and, in its extras:

- `redis_connection_string`: Feast's Redis connection string (`host:port[,password=...]`);
- `python`: the interpreter of the platform's environment (default: the worker's own);
- `feature_repo`: the Feast repo directory, passed to every command (default: $FEATURE_REPO,
  else the source checkout's; the platform image has it at /app/feature_repo);
- `spark_master`: Spark master for the jobs (default: `local[*]`);
- `tls`: connect to TiDB with verified TLS (default: false), and `tls_ca`: the CA file that signs
  TiDB's certificate on the workers (default: the system's CAs);
- `env`: further environment variables for the commands, as a JSON object.

The hook turns those into the environment the platform reads everywhere (the TIDB_* settings of
providers/tidb/settings.py, REDIS_CONNECTION_STRING, SPARK_MASTER) and runs commands as subprocesses, streaming their output
to the task log. Nothing is passed through a shell.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowException

# A source checkout's repo; deployments set the `feature_repo` extra (or FEATURE_REPO).
DEFAULT_FEATURE_REPO = str(Path(__file__).resolve().parents[2] / "feature_repo")


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    returncode: int
    output: str


class FeaturePlatformHook(BaseHook):
    conn_name_attr = "platform_conn_id"
    default_conn_name = "feature_platform_default"
    conn_type = "feature_platform"
    hook_name = "Feature platform (Feast on TiDB)"

    def __init__(
        self, platform_conn_id: str | None = None, role: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.platform_conn_id = platform_conn_id
        self.role = role  # providers/tidb/roles.py: picks `feature_platform_<role>` when it exists

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": [],
            "relabeling": {"schema": "Database", "login": "User"},
            "placeholders": {
                "host": "tidb.example.internal",
                "port": "4000",
                "schema": "fraud",
                "extra": '{"redis_connection_string": "redis:6379", "python": "/opt/platform/bin/python"}',
            },
        }

    def environment(self) -> dict[str, str]:
        """The platform's settings from the connection; missing ones say what to set."""
        conn = self._connection
        extra = conn.extra_dejson
        missing = [
            name
            for name, value in (
                ("host", conn.host),
                ("login", conn.login),
                ("schema (the database)", conn.schema),
                ("extra.redis_connection_string", extra.get("redis_connection_string")),
            )
            if not value
        ]
        if missing:
            raise AirflowException(
                f"Connection {self.platform_conn_id!r} lacks {', '.join(missing)}. "
                "Set them in the connection (type feature_platform)."
            )
        more = extra.get("env", {})
        if not isinstance(more, dict):
            raise AirflowException(
                f"Connection {self.platform_conn_id!r}: extra.env must be a JSON object"
            )
        tls = extra.get("tls", False)
        if not isinstance(tls, bool) or (extra.get("tls_ca") and not tls):
            raise AirflowException(
                f"Connection {self.platform_conn_id!r}: extra.tls must be true or false, and true "
                "when extra.tls_ca is set"
            )
        return {
            "TIDB_HOST": conn.host,
            "TIDB_PORT": str(conn.port or 4000),
            "TIDB_USER": conn.login,
            "TIDB_PASSWORD": conn.password or "",
            "TIDB_DATABASE": conn.schema,
            "TIDB_TLS": "true" if tls else "false",
            **({"TIDB_TLS_CA": str(extra["tls_ca"])} if extra.get("tls_ca") else {}),
            "REDIS_CONNECTION_STRING": extra["redis_connection_string"],
            "SPARK_MASTER": extra.get("spark_master", "local[*]"),
            **{str(k): str(v) for k, v in more.items()},
        }

    @cached_property
    def _connection(self):
        """Looked up once per hook (a secrets backend or API call in Airflow 3): the connection
        named, else the role's own (`feature_platform_<role>`: its database account, docs/
        deployment.md "Database roles"), else `feature_platform_default`."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        if self.platform_conn_id:
            return self.get_connection(self.platform_conn_id)
        if self.role:
            try:
                return self.get_connection(f"feature_platform_{self.role}")
            except AirflowNotFoundException:
                pass
        return self.get_connection(self.default_conn_name)

    def _extra(self) -> dict[str, Any]:
        return self._connection.extra_dejson

    @property
    def python(self) -> str:
        return self._extra().get("python") or sys.executable

    @property
    def feature_repo(self) -> str:
        return (
            self._extra().get("feature_repo")
            or os.environ.get("FEATURE_REPO")
            or DEFAULT_FEATURE_REPO
        )

    def feast(self, *args: str, **options: Any) -> CommandResult:
        """The stock feast CLI against the feature repo (options as for run)."""
        feast = str(Path(self.python).parent / "feast")
        return self.run([feast, "-c", self.feature_repo, *args], **options)

    def module(self, module: str, *args: str, **options: Any) -> CommandResult:
        """`python -m <module> args...` in the platform's environment (options as for run)."""
        return self.run([self.python, "-m", module, *args], **options)

    def run(
        self, argv: Sequence[str], *, ok_codes: Iterable[int] = (0,), capture: bool = True
    ) -> CommandResult:
        """Run argv with the platform's environment, log its output line by line, and raise
        AirflowException (with the last lines) when it exits with a code not in ok_codes.

        If the task is stopped (execution_timeout, on_kill, any exception), the command is
        terminated, then killed after 30 s: a timed-out Spark job does not outlive its task.
        `capture=False` keeps only the last lines (a 12 h backfill's log stays in the task log).
        """
        argv = [str(a) for a in argv]
        env = {**os.environ, **self.environment()}
        self.log.info("Running: %s", " ".join(argv))
        tail: deque[str] = deque(maxlen=40)
        lines: list[str] = []
        self._process = process = subprocess.Popen(
            argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                line = line.rstrip("\n")
                self.log.info("%s", line)
                tail.append(line)
                if capture:
                    lines.append(line)
            returncode = process.wait()
        except BaseException:
            self.stop()
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()
            self._process = None
        if returncode not in set(ok_codes):
            raise AirflowException(
                f"{' '.join(argv[:3])} ... exited with {returncode}. Last lines:\n"
                + "\n".join(tail)
            )
        return CommandResult(argv=argv, returncode=returncode, output="\n".join(lines or tail))

    def stop(self, grace_seconds: float = 30.0) -> None:
        """Terminate the running command (SIGTERM, then SIGKILL after grace_seconds)."""
        process = getattr(self, "_process", None)
        if process is None or process.poll() is not None:
            return
        self.log.warning("Stopping %s (pid %s)", process.args[0], process.pid)
        process.terminate()
        try:
            process.wait(grace_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
