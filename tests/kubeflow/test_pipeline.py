"""The Kubeflow pipeline compiles to KFP's IR YAML with the structure the platform needs; the
arguments it passes are accepted by the platform's own command (checked in the platform env)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.utils.jobs import feature_store_variables

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_PYTHON = ROOT / ".venv" / "bin" / "python"


@pytest.fixture(scope="module")
def ir(tmp_path_factory) -> tuple[dict, dict]:
    from pipelines.kubeflow.pipeline import main

    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    assert main(["--out", str(out)]) == 0
    pipeline, platform = yaml.safe_load_all(out.read_text())
    return pipeline, platform


def test_tasks_and_their_wiring(ir):
    pipeline, _ = ir
    assert pipeline["pipelineInfo"]["name"] == "fraud-model-training"
    assert pipeline["schemaVersion"] == "2.1.0"
    tasks = pipeline["root"]["dag"]["tasks"]
    assert set(tasks) == {"materialize", "build-training-set", "train"}
    train = tasks["train"]
    assert train["dependentTasks"] == ["build-training-set"]
    assert tasks["build-training-set"]["dependentTasks"] == ["materialize"]
    source = train["inputs"]["artifacts"]["training_set"]["taskOutputArtifact"]
    assert source == {"producerTask": "build-training-set", "outputArtifactKey": "training_set"}
    params = pipeline["root"]["inputDefinitions"]["parameters"]
    assert {name: p["parameterType"] for name, p in params.items()} == {
        "model": "STRING",
        "as_of": "STRING",
        "since": "STRING",
        "until": "STRING",
        "max_negatives": "NUMBER_INTEGER",
    }
    build_inputs = tasks["build-training-set"]["inputs"]["parameters"]
    assert build_inputs["as_of"]["componentInputParameter"] == "as_of"
    assert (
        tasks["materialize"]["inputs"]["parameters"]["until"]["componentInputParameter"] == "as_of"
    )


def test_artifact_types(ir):
    pipeline, _ = ir
    components = pipeline["components"]
    outputs = components["comp-build-training-set"]["outputDefinitions"]["artifacts"]
    assert outputs["training_set"]["artifactType"]["schemaTitle"] == "system.Dataset"
    train = components["comp-train"]
    assert train["inputDefinitions"]["artifacts"]["training_set"]["artifactType"][
        "schemaTitle"
    ] == ("system.Dataset")
    assert train["outputDefinitions"]["artifacts"]["model"]["artifactType"]["schemaTitle"] == (
        "system.Model"
    )


def test_containers_run_the_platform_image_with_limits(ir):
    pipeline, _ = ir
    executors = pipeline["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-materialize", "exec-build-training-set", "exec-train"}
    for name, executor in executors.items():
        container = executor["container"]
        image = container["image"]
        assert re.fullmatch(r"[\w./-]+/feature-platform:\d+\.\d+\.\d+", image), image
        assert container["command"] == ["python", "-m", "pipelines.kubeflow.steps"]
        resources = container["resources"]
        assert resources["cpuLimit"] and resources["memoryLimit"], name
        assert resources["resourceCpuLimit"] == resources["resourceCpuRequest"], name
    assert executors["exec-build-training-set"]["container"]["args"][0] == "build-training-set"


def test_settings_come_from_the_clusters_configmap_and_secrets(ir):
    _, platform = ir
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    needed = feature_store_variables()
    kustomization = yaml.safe_load((ROOT / "k8s" / "base" / "kustomization.yaml").read_text())
    (env_map,) = [g for g in kustomization["configMapGenerator"] if g["name"] == "platform-env"]
    deployed_keys = {literal.split("=", 1)[0] for literal in env_map["literals"]}
    roles = {"exec-materialize": "registry", "exec-build-training-set": "reader"}
    for name, role in roles.items():
        spec = executors[name]
        env = set()
        for source in spec["configMapAsEnv"]:
            assert source["configMapName"] == "platform-env"
            keys = {k["configMapKey"] for k in source["keyToEnv"]}
            assert keys <= deployed_keys, keys - deployed_keys
            env |= {k["envVar"] for k in source["keyToEnv"]}
        for source in spec["secretAsEnv"]:
            # the step's own role's account (providers/tidb/roles.py), and Redis
            assert source["secretName"] in {f"tidb-{role}-credentials", "redis-connection"}
            env |= {k["envVar"] for k in source["keyToEnv"]}
        assert needed <= env, (name, needed - env)
        assert feature_store_variables(optional=True) <= env  # TLS, when the cluster has it
        (volume,) = spec["secretAsVolume"]  # the CA k8s/components/tidb-tls mounts elsewhere
        assert (volume["secretName"], volume["mountPath"]) == (
            "fraud-tidb-client-secret",
            "/etc/tidb-tls",
        )
        assert volume["optional"] is True
        assert spec["securityContext"]["runAsNonRoot"] is True
        labels = spec["podMetadata"]["labels"]  # what k8s/ NetworkPolicies admit
        assert labels == {
            "platform.fraud/tidb-client": "true",
            "platform.fraud/redis-client": "true",
        }
    assert "secretAsEnv" not in executors.get("exec-train", {})  # training reads only its input


def test_compiled_arguments_are_accepted_by_the_platform_command(ir):
    """Fill the placeholders with sample values and parse them with the steps' own parser, in the
    platform environment (where pandas and Feast are)."""
    if not PLATFORM_PYTHON.exists():
        pytest.fail(f"{PLATFORM_PYTHON} is missing: run `make venv`.")
    pipeline, _ = ir
    samples = {
        "model": "account_takeover",
        "as_of": "2026-11-01T00:00:00Z",
        "since": "2026-08-01T00:00:00Z",
        "until": "2026-11-01T00:00:00Z",
        "max_negatives": "5000",
    }

    def fill(arg: str) -> str:
        arg = re.sub(
            r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}", lambda m: samples[m.group(1)], arg
        )
        return re.sub(r"\{\{\$\.(inputs|outputs)\.artifacts\['(\w+)'\]\.path\}\}", r"/tmp/\2", arg)

    for name, executor in pipeline["deploymentSpec"]["executors"].items():
        args = [fill(a) for a in executor["container"]["args"]]
        assert not any("{{" in a for a in args), args
        check = subprocess.run(
            [
                str(PLATFORM_PYTHON),
                "-c",
                "import sys; from pipelines.kubeflow.steps import build_parser; "
                "print(build_parser().parse_args(sys.argv[1:]).command)",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert check.returncode == 0, (name, args, check.stderr)
        assert check.stdout.strip() == args[0]
