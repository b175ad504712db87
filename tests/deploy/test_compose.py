"""docker-compose.yml: valid against the Compose specification, and wired with the settings the
code reads (no Docker engine here: these checks are what can be done without one)."""

from __future__ import annotations

import re

import compose_spec
import pytest
import yaml

from tests.deploy.conftest import ROOT
from tests.utils.jobs import feature_store_variables

COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    # PyYAML resolves the anchors and `<<` merges the way Docker Compose does.
    return yaml.safe_load(COMPOSE.read_text())


def test_valid_against_the_compose_specification(compose):
    compose_spec.PyCompose.from_yaml(yaml.safe_dump(compose)).validate()


def test_the_validator_rejects_a_broken_file(compose):
    broken = {
        **compose,
        "services": {**compose["services"], "redis": {"image": "redis:7", "portz": []}},
    }
    with pytest.raises(ValueError, match="portz"):
        compose_spec.PyCompose.from_yaml(yaml.safe_dump(broken)).validate()


def platform_services(compose):
    return {
        name: s
        for name, s in compose["services"].items()
        if s.get("image", "").startswith("fraud-feature-platform")
    }


def test_platform_services_get_every_setting_the_code_reads(compose):
    needed = feature_store_variables()
    services = platform_services(compose)
    assert {"init", "serving", "platform"} <= set(services)
    for name, service in services.items():
        env = service["environment"]
        assert needed <= set(env), f"{name} lacks {sorted(needed - set(env))}"
        assert env["TIDB_HOST"] == "tidb" and env["TIDB_PORT"] == "4000"
        host, port = env["REDIS_CONNECTION_STRING"].split(":")
        assert (
            host in compose["services"] and f"{port}:{port}" in compose["services"][host]["ports"]
        )
        assert service["read_only"] is True and service["user"] == "10001:10001"
        assert "TIDB_PASSWORD" not in env or env["TIDB_PASSWORD"].startswith("${")  # from the shell


def test_same_variables_as_the_local_stack(compose, tmp_path):
    """The settings the local stack exports (.stack/env) are the ones compose sets."""
    from devstack import MariaDB, Redis

    local = set(MariaDB(tmp_path / "db").env()) | {"REDIS_CONNECTION_STRING"}
    assert set(Redis(tmp_path / "r").env()) >= {"REDIS_CONNECTION_STRING"}
    for name, service in platform_services(compose).items():
        assert local <= set(service["environment"]), name


def test_serving_port_health_and_settings_match_the_code(compose, monkeypatch, tmp_path):
    import json

    from serving.routes.health import router
    from serving.settings import Settings
    from tests.utils.auth import api_keys

    serving = compose["services"]["serving"]
    for key, value in serving["environment"].items():
        if key.startswith("SERVING_"):
            monkeypatch.setenv(key, value)
    # the API keys come from a compose secret, at the path the settings read
    (secret,) = serving["secrets"]
    assert serving["environment"]["SERVING_API_KEYS_FILE"] == f"/run/secrets/{secret}"
    assert compose["secrets"][secret]["file"].startswith("./secrets/")
    keys = tmp_path / "api_keys.json"
    keys.write_text(json.dumps(api_keys()))
    monkeypatch.setenv("SERVING_API_KEYS_FILE", str(keys))
    settings = Settings()
    assert settings.host == "0.0.0.0" and f"{settings.port}:{settings.port}" in serving["ports"]
    assert str(settings.models_dir) in {v.split(":")[1] for v in serving["volumes"]}
    routes = {r.path for r in router.routes}
    probe = " ".join(serving["healthcheck"]["test"])
    assert re.search(rf"127\.0\.0\.1:{settings.port}(/\w+)", probe).group(1) in routes
    assert serving["depends_on"]["init"]["condition"] == "service_completed_successfully"


def test_images_are_pinned_and_tidb_is_real(compose):
    for name, service in compose["services"].items():
        repo, _, tag = service["image"].rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: {service['image']}"
    assert compose["services"]["tidb"]["image"].startswith("pingcap/tidb:v8.")
    assert "4000:4000" in compose["services"]["tidb"]["ports"]


def test_init_creates_the_schema_then_applies(compose):
    command = " ".join(compose["services"]["init"]["command"])
    assert "python -m spark_jobs.schema --create-database" in command
    assert command.index("spark_jobs.schema") < command.index("feast -c /app/feature_repo apply")


def test_the_stream_job_reads_the_durable_broker_and_keeps_its_checkpoint(compose, monkeypatch):
    from spark_jobs.stream import parse_args

    stream = compose["services"]["stream"]
    for key, value in stream["environment"].items():
        monkeypatch.setenv(key, value)
    command = stream["command"]
    assert command[:3] == ["python", "-m", "spark_jobs.stream"]
    args = parse_args(command[3:])
    assert args.broker == "redis://broker:6379/0"
    assert any(args.checkpoint.startswith(v.split(":")[1]) for v in stream["volumes"])
    broker = compose["services"]["broker"]["command"]
    assert broker[broker.index("--appendfsync") + 1] == "always"
    assert compose["services"]["serving"]["environment"]["BROKER_URL"] == args.broker
