"""FeaturePlatformHook: settings from a real Airflow Connection object, and real subprocesses."""

from __future__ import annotations

import json
import sys

import pytest
from airflow.sdk import Connection
from airflow.sdk.exceptions import AirflowException

from pipelines.airflow import get_provider_info
from pipelines.airflow.hooks import FeaturePlatformHook


def connection(**overrides) -> Connection:
    fields = dict(
        conn_id="feature_platform_default",
        conn_type="feature_platform",
        host="tidb.internal",
        port=4000,
        login="platform",
        password="s3cret",
        schema="fraud",
        extra=json.dumps(
            {
                "redis_connection_string": "redis:6379",
                "python": sys.executable,
                "spark_master": "local[2]",
                "env": {"CODE_VERSION": "abc123"},
            }
        ),
    )
    fields.update(overrides)
    return Connection(**fields)


@pytest.fixture
def hook(monkeypatch):
    conn = {"value": connection()}
    monkeypatch.setattr(
        FeaturePlatformHook, "get_connection", classmethod(lambda cls, _: conn["value"])
    )
    h = FeaturePlatformHook()
    h.set_connection = lambda c: conn.update(value=c)  # type: ignore[attr-defined]
    return h


def test_environment_is_what_the_platform_reads(hook):
    assert hook.environment() == {
        "TIDB_HOST": "tidb.internal",
        "TIDB_PORT": "4000",
        "TIDB_USER": "platform",
        "TIDB_PASSWORD": "s3cret",
        "TIDB_DATABASE": "fraud",
        "TIDB_TLS": "false",
        "REDIS_CONNECTION_STRING": "redis:6379",
        "SPARK_MASTER": "local[2]",
        "CODE_VERSION": "abc123",
    }


def test_tls_extras_become_the_tls_settings(hook):
    extra = {"redis_connection_string": "r:1", "tls": True, "tls_ca": "/etc/tidb-tls/ca.crt"}
    hook.set_connection(connection(extra=json.dumps(extra)))
    env = hook.environment()
    assert (env["TIDB_TLS"], env["TIDB_TLS_CA"]) == ("true", "/etc/tidb-tls/ca.crt")
    for bad in ({"tls": "yes"}, {"tls_ca": "/ca.pem"}):
        hook.set_connection(connection(extra=json.dumps({"redis_connection_string": "r", **bad})))
        hook.__dict__.pop("_connection", None)  # looked up once per hook
        with pytest.raises(AirflowException, match="extra.tls"):
            hook.environment()


def test_missing_settings_are_named(hook):
    hook.set_connection(connection(host=None, schema=None, extra="{}"))
    with pytest.raises(AirflowException) as error:
        hook.environment()
    text = str(error.value)
    assert "host" in text and "schema (the database)" in text and "redis_connection_string" in text


def test_run_passes_the_environment_and_returns_the_output(hook):
    result = hook.run(
        [
            sys.executable,
            "-c",
            "import os; print(os.environ['TIDB_HOST'], os.environ['TIDB_DATABASE'])",
        ]
    )
    assert result.returncode == 0 and result.output == "tidb.internal fraud"


def test_a_failing_command_raises_with_its_last_lines(hook):
    with pytest.raises(AirflowException) as error:
        hook.run([sys.executable, "-c", "import sys; print('step 1'); sys.exit('boom: bad input')"])
    assert "exited with 1" in str(error.value) and "boom: bad input" in str(error.value)


def test_accepted_exit_codes_are_returned(hook):
    result = hook.run([sys.executable, "-c", "import sys; sys.exit(3)"], ok_codes=(0, 3))
    assert result.returncode == 3


def test_module_runs_in_the_platforms_python(hook):
    result = hook.module("platform")  # the stdlib module prints the platform string
    assert result.argv == [sys.executable, "-m", "platform"] and "Linux" in result.output


def test_provider_info_names_the_hook():
    info = get_provider_info()
    (conn_type,) = info["connection-types"]
    assert conn_type["connection-type"] == FeaturePlatformHook.conn_type
    module, _, name = conn_type["hook-class-name"].rpartition(".")
    assert getattr(__import__(module, fromlist=[name]), name) is FeaturePlatformHook


def test_installed_package_registers_the_provider():
    """`pip install` of the project (here: -e, in .venv-airflow) exposes the entry point Airflow
    reads; Airflow's providers manager then lists the connection type."""
    from importlib.metadata import entry_points

    (entry,) = [
        e for e in entry_points(group="apache_airflow_provider") if e.value.startswith("pipelines.")
    ]
    assert entry.load() is get_provider_info


def test_a_stopped_task_stops_its_command(hook):
    """on_kill / execution_timeout: the command is terminated, not left running."""
    import threading
    import time

    errors = []

    def run():
        try:
            hook.run(
                [sys.executable, "-c", "import time; print('started', flush=True); time.sleep(120)"]
            )
        except AirflowException as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    while getattr(hook, "_process", None) is None:
        time.sleep(0.05)
    process = hook._process
    time.sleep(0.5)
    hook.stop(grace_seconds=5)
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - started < 30
    assert process.poll() is not None and errors and "exited with -15" in errors[0]


def test_an_exception_while_reading_terminates_the_command(hook, monkeypatch):
    """An exception inside the output loop (Airflow's timeout raises there) kills the child."""
    seen = []

    class Timeout(Exception):
        pass

    def info(message, *args):
        if args and args[0] == "line 2":
            seen.append(hook._process)
            raise Timeout

    monkeypatch.setattr(hook.log, "info", info)
    with pytest.raises(Timeout):
        hook.run(
            [
                sys.executable,
                "-c",
                "import time\nfor i in range(100):\n print('line', i, flush=True); time.sleep(1)",
            ]
        )
    assert seen and seen[0].poll() is not None  # terminated, not left behind


def test_each_role_uses_its_own_connection_when_there_is_one(monkeypatch):
    from airflow.sdk.exceptions import AirflowNotFoundException

    from pipelines.airflow import operators

    known = {
        "feature_platform_default": connection(login="admin"),
        "feature_platform_serving": connection(login="serving"),
        "feature_platform_reader": connection(login="reader"),
    }

    def lookup(cls, conn_id):
        if conn_id not in known:
            raise AirflowNotFoundException(conn_id)
        return known[conn_id]

    monkeypatch.setattr(FeaturePlatformHook, "get_connection", classmethod(lookup))
    login = lambda op: op.hook.environment()["TIDB_USER"]  # noqa: E731
    assert login(operators.TrainModelOperator(task_id="t", model="account_takeover")) == "reader"
    assert login(operators.FeastApplyOperator(task_id="a")) == "admin"  # no registry connection
    assert (
        login(
            operators.FeastApplyOperator(task_id="b", platform_conn_id="feature_platform_serving")
        )
        == "serving"
    )
    with pytest.raises(AirflowNotFoundException):
        FeaturePlatformHook(platform_conn_id="missing").environment()
