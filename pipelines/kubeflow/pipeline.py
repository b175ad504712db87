"""The training pipeline for Kubeflow Pipelines (KFP v2): materialize, build a point-in-time
training set through the TiDB store, train; compiled to KFP's IR YAML.

    .venv-kfp/bin/python -m pipelines.kubeflow.pipeline --out training_pipeline.yaml

Each component is a container of the platform image running `python -m pipelines.kubeflow.steps`
(the same code as `python -m pipelines.train`). Settings come from the cluster's `platform-env`
ConfigMap, the TiDB account of the step's role (`tidb-registry-credentials` for materialization,
`tidb-reader-credentials` for the training set; providers/tidb/roles.py) and the
`redis-connection` Secret that k8s/ deploys, so a run uses the same TiDB, Redis and registry as
serving. This module imports only kfp, and has no
`from __future__ import annotations`: kfp reads the components' annotations as types.
"""

import argparse
import sys

from kfp import compiler, dsl, kubernetes

PLATFORM_IMAGE = "registry.example.com/fraud/feature-platform:0.1.0"
STEPS = ["python", "-m", "pipelines.kubeflow.steps"]
# Where k8s/ puts the settings (k8s/base/kustomization.yaml).
CONFIG_MAP = "platform-env"
CONFIG_KEYS = ["TIDB_HOST", "TIDB_PORT", "TIDB_DATABASE", "TIDB_TLS", "TIDB_TLS_CA"]
# TiDB's CA where k8s/components/tidb-tls mounts it (TIDB_TLS_CA); absent without TLS.
TLS_SECRET, TLS_DIR = "fraud-tidb-client-secret", "/etc/tidb-tls"
ACCOUNT_KEYS = {"user": "TIDB_USER", "password": "TIDB_PASSWORD"}
REDIS_SECRET = {"redis-connection": {"connection-string": "REDIS_CONNECTION_STRING"}}


def tidb_secret(role: str) -> str:
    """The Secret holding the TiDB account of a role (k8s/base/kustomization.yaml)."""
    return f"tidb-{role}-credentials"


@dsl.container_component
def materialize(until: str):
    """`feast materialize-incremental` up to `until` (TiDB -> Redis)."""
    return dsl.ContainerSpec(
        image=PLATFORM_IMAGE, command=STEPS, args=["materialize", "--until", until]
    )


@dsl.container_component
def build_training_set(
    model: str,
    as_of: str,
    since: str,
    until: str,
    max_negatives: int,
    training_set: dsl.Output[dsl.Dataset],
):
    """Labelled events joined point-in-time with the model's feature service, as of `as_of`."""
    return dsl.ContainerSpec(
        image=PLATFORM_IMAGE,
        command=STEPS,
        args=[
            "build-training-set",
            "--model", model,
            "--as-of", as_of,
            "--since", since,
            "--until", until,
            "--max-negatives", max_negatives,
            "--out", training_set.path,
        ],
    )  # fmt: skip


@dsl.container_component
def train(training_set: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model]):
    """Fit and validate the model; the artefact (JSON) is the Model artifact."""
    return dsl.ContainerSpec(
        image=PLATFORM_IMAGE,
        command=STEPS,
        args=["train", "--training-set", training_set.path, "--out", model.path],
    )


def _platform(
    task: dsl.PipelineTask, *, cpu: str, memory: str, role: str | None = None
) -> dsl.PipelineTask:
    """Resources, a non-root user and (for tasks that reach TiDB/Redis: a `role`) the platform's
    settings with that role's TiDB account."""
    if role is not None:
        # Run in the platform's namespace: its NetworkPolicies admit TiDB and Redis clients by
        # these labels, and TIDB_HOST / the Redis address are that namespace's Service names.
        kubernetes.add_pod_label(task, "platform.fraud/tidb-client", "true")
        kubernetes.add_pod_label(task, "platform.fraud/redis-client", "true")
        kubernetes.use_config_map_as_env(task, CONFIG_MAP, {k: k for k in CONFIG_KEYS})
        kubernetes.use_secret_as_volume(task, TLS_SECRET, TLS_DIR, optional=True)
        for secret, keys in {tidb_secret(role): ACCOUNT_KEYS, **REDIS_SECRET}.items():
            kubernetes.use_secret_as_env(task, secret, keys)
    kubernetes.set_security_context(
        task, run_as_user=10001, run_as_group=10001, run_as_non_root=True
    )
    task.set_cpu_request(cpu).set_cpu_limit(cpu).set_memory_request(memory).set_memory_limit(memory)
    task.set_retry(num_retries=2, backoff_duration="60s")
    return task


@dsl.pipeline(
    name="fraud-model-training",
    description="Materialize, build a point-in-time training set as of a knowledge time, train.",
)
def training_pipeline(
    model: str = "account_takeover",
    as_of: str = "2026-11-01T00:00:00Z",
    since: str = "2026-08-01T00:00:00Z",
    until: str = "2026-11-01T00:00:00Z",
    max_negatives: int = 50_000,
):
    online = _platform(materialize(until=as_of), cpu="1", memory="2Gi", role="registry")
    online.set_display_name("materialize")
    dataset = _platform(
        build_training_set(
            model=model, as_of=as_of, since=since, until=until, max_negatives=max_negatives
        ),
        cpu="2",
        memory="8Gi",
        role="reader",  # reads, scratch tables, the saved dataset
    ).set_display_name("build training set")
    dataset.after(online)  # Redis is current before the model that will read it is built
    _platform(
        train(training_set=dataset.outputs["training_set"]), cpu="2", memory="4Gi"
    ).set_display_name("train")  # reads only its input artifact: no credentials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.kubeflow.pipeline", description=__doc__
    )
    parser.add_argument("--out", default="training_pipeline.yaml", help="IR YAML to write.")
    args = parser.parse_args(argv)
    compiler.Compiler().compile(training_pipeline, package_path=args.out)
    print(f"compiled {training_pipeline.name} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
