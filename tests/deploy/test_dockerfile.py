"""Dockerfile: hadolint clean, multi-stage, pinned base, non-root; the Spark entrypoint's driver
path runs a real PySpark job (its executor path needs a Kubernetes driver, not available here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def test_hadolint_is_clean():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_problem(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install feast\n")
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_multi_stage_pinned_and_non_root():
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.M).group(1)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", base), base
    stages = re.findall(r"^FROM (\S+) AS (\w+)$", DOCKERFILE, re.M)
    assert [s for _, s in stages] == ["build", "runtime"]
    assert "COPY --from=build /opt/platform /opt/platform" in DOCKERFILE
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users and users[-1] == "10001:10001"
    assert re.search(r"^ENTRYPOINT \[\"/usr/local/bin/platform-entrypoint\"\]$", DOCKERFILE, re.M)


def test_image_settings_match_the_code():
    from serving.settings import Settings
    from tests.utils.auth import api_keys

    env = dict(re.findall(r"(SERVING_\w+)=(\S+)", DOCKERFILE))
    given = {k.removeprefix("SERVING_").lower(): v for k, v in env.items()}
    settings = Settings(**given, api_keys=api_keys())  # keys: from the deployment, not the image
    assert f"EXPOSE {settings.port}" in DOCKERFILE
    copied = set(re.findall(r"^COPY (\w+)/ ", DOCKERFILE, re.M))
    import tomllib

    found = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    packages = {pattern.rstrip("*") for pattern in found["find"]["include"]}
    assert packages <= copied  # everything pyproject.toml packages
    assert (
        "/usr/share/java/mariadb-java-client.jar"
        in (ROOT / "spark_jobs" / "settings.py").read_text()
    )
    assert "libmariadb-java" in DOCKERFILE and "openjdk-17-jre-headless" in DOCKERFILE
    assert "FEATURE_REPO=/app/feature_repo" in DOCKERFILE  # the commands' default repo


@pytest.mark.timeout(300)
def test_spark_entrypoint_driver_runs_a_pyspark_job(tmp_path):
    job = tmp_path / "job.py"
    job.write_text(
        "from pyspark.sql import SparkSession\n"
        "s = SparkSession.builder.getOrCreate()\n"
        "print('ROWS', s.range(10).count(), s.conf.get('spark.master'))\n"
    )
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [str(ROOT / "docker" / "spark-entrypoint.sh"), "driver", "--master", "local[1]", str(job)],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ROWS 10 local[1]" in result.stdout


def test_spark_entrypoint_passes_other_commands_through():
    result = subprocess.run(
        [str(ROOT / "docker" / "spark-entrypoint.sh"), "python", "-c", "print('through')"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0 and result.stdout.strip() == "through"


def test_spark_entrypoint_executor_requires_the_driver_settings():
    result = subprocess.run(
        [str(ROOT / "docker" / "spark-entrypoint.sh"), "executor"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("SPARK_")}
        | {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert result.returncode != 0 and "SPARK_DRIVER_URL" in result.stderr


def test_spark_entrypoint_executor_passes_every_jvm_option_in_order(tmp_path):
    """A recording `java` stands in for the JVM: every SPARK_JAVA_OPT_N reaches it in numeric
    order (Spark puts its --add-opens flags there), with the classpath and the backend's args."""
    java = tmp_path / "java"
    java.write_text('#!/bin/sh\nfor a in "$@"; do printf "%s\\n" "$a"; done\n')
    java.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPARK_")} | {
        "PATH": f"{tmp_path}:{Path(sys.executable).parent}:{os.environ['PATH']}",
        "SPARK_DRIVER_URL": "spark://CoarseGrainedScheduler@driver:7078",
        "SPARK_EXECUTOR_ID": "3",
        "SPARK_APPLICATION_ID": "spark-app-1",
        "SPARK_EXECUTOR_POD_IP": "10.0.0.9",
        "SPARK_EXECUTOR_POD_NAME": "exec-3",
        "SPARK_CLASSPATH": "/extra/lib.jar",
        **{f"SPARK_JAVA_OPT_{i}": f"-Dopt.{i}=x" for i in range(12)},
    }
    result = subprocess.run(
        [str(ROOT / "docker" / "spark-entrypoint.sh"), "executor"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    args = result.stdout.splitlines()
    assert [a for a in args if a.startswith("-Dopt.")] == [f"-Dopt.{i}=x" for i in range(12)]
    classpath = args[args.index("-cp") + 1]
    assert "/extra/lib.jar" in classpath and "mariadb-java-client.jar" in classpath
    backend = args.index("org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend")
    assert args[backend + 1 : backend + 5] == [
        "--driver-url", "spark://CoarseGrainedScheduler@driver:7078", "--executor-id", "3",
    ]  # fmt: skip
