"""Run the platform's jobs in tests: settings from the test's database, Spark on local[2]."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FEAST = str(Path(sys.executable).parent / "feast")


def jobs_environment(
    mariadb, database: str, redis_connection_string: str, monkeypatch
) -> dict[str, str]:
    """Point TIDB_*, REDIS_CONNECTION_STRING and SPARK_MASTER at the test's services; return the env."""
    env = {
        **mariadb.env(),
        "TIDB_DATABASE": database,
        "REDIS_CONNECTION_STRING": redis_connection_string,
        "SPARK_MASTER": "local[2]",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


# Settings feature_store.yaml reads that a deployment may leave unset (providers.tidb.settings:
# optional fields; tests/unit/test_settings.py holds this equal to the model). Written out here
# because the orchestrators' environments, which use this too, have no Feast to import it with.
OPTIONAL_VARIABLES = {"TIDB_TLS", "TIDB_TLS_CA"}


def feature_store_variables(optional: bool = False) -> set[str]:
    """The ${VARS} the shipped feature_store.yaml reads that every deployment must provide (with
    `optional`, also those it may leave unset)."""
    import re

    text = (ROOT / "feature_repo" / "feature_store.yaml").read_text()
    names = set(re.findall(r"\$\{(\w+)\}", text))
    return names if optional else names - OPTIONAL_VARIABLES


def feast(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The stock feast CLI against the shipped feature_repo/."""
    result = subprocess.run(
        [FEAST, "-c", str(ROOT / "feature_repo"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"feast {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    )
    return result
