"""The published API is the API: schemathesis generates requests from /openapi.json against a
running server (real Redis, MariaDB, broker and registry) and runs every check it has
(schemathesis.toml says the one setting). A 5xx, an undocumented status, content type or body,
an accepted invalid request or an ignored key fails the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devstack import free_port
from tests.utils.auth import KEYS, api_keys

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(stack, tmp_path):
    port = free_port()
    env = {
        **os.environ,
        **stack["serving_env"],
        "SERVING_PORT": str(port),
        "SERVING_MODELS_DIR": str(stack["models"]),
        "SERVING_API_KEYS": json.dumps(api_keys()),
        "SERVING_BROKER_URL": stack["broker"].url,
        "SERVING_ACCESS_LOG": "false",
        # The deadline is not under test here (test_serving.py tests it): a loaded CI machine
        # must not turn a slow answer into a 503 that reads as a server error.
        "SERVING_READ_DEADLINE_MS": "5000",
    }
    log = (tmp_path / "serving.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "serving"], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "serving.log").read_text()[-3000:]
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    else:
        raise AssertionError("serving did not become ready")
    yield url
    process.terminate()
    process.wait(timeout=60)


@pytest.mark.timeout(600)
def test_schemathesis_all_checks_pass(server):
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"{server}/openapi.json",
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {KEYS['all']}",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--no-color",
        ],
        cwd=ROOT,  # schemathesis.toml
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
