"""k8s/: every overlay rendered with the real kustomize, validated against the Kubernetes OpenAPI
schemas (strict, offline), custom resources against their operators' schemas where published,
and the platform's invariants checked on what would be applied."""

from __future__ import annotations

import json
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from tests.deploy.conftest import ROOT, tool
from tests.utils.jobs import feature_store_variables

K8S_VERSION = "1.30.0"
CUSTOM_KINDS = {"TidbCluster", "SparkApplication", "ScheduledSparkApplication"}
PLATFORM_IMAGE = re.compile(r"(^|/)(fraud-feature-platform|feature-platform):[\w.-]+$")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|PRIVATE", re.I)


def pod_specs(docs):
    """(owner, pod spec) of every workload, CronJobs unwrapped."""
    for d in docs:
        kind, spec = d["kind"], d.get("spec", {})
        if kind in ("Deployment", "StatefulSet", "Job"):
            yield f"{kind}/{d['metadata']['name']}", spec["template"]["spec"]
        elif kind == "CronJob":
            yield (
                f"CronJob/{d['metadata']['name']}",
                spec["jobTemplate"]["spec"]["template"]["spec"],
            )


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def spark_apps(docs):
    """(name, SparkApplication spec) of SparkApplications and ScheduledSparkApplication templates."""
    for d in docs:
        if d["kind"] == "SparkApplication":
            yield d["metadata"]["name"], d["spec"]
        elif d["kind"] == "ScheduledSparkApplication":
            yield d["metadata"]["name"], d["spec"]["template"]


def config_map(docs, name):
    (found,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
    return found["data"]


def env_names(container, docs) -> set[str]:
    names = {e["name"] for e in container.get("env", [])}
    for source in container.get("envFrom", []):
        names |= set(config_map(docs, source["configMapRef"]["name"]))
    return names


def test_every_builtin_resource_is_valid_against_the_kubernetes_schemas(overlay):
    name, docs = overlay
    kinds = set()
    for d in docs:
        kinds.add(d["kind"])
        try:
            kubernetes_validate.validate(d, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            assert d["kind"] in CUSTOM_KINDS, f"{name}: no schema for {d['kind']}"
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(
                f"{name}: {d['kind']}/{d['metadata']['name']}: {exc.message} at {list(exc.path)}"
            )
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "StatefulSet",
        "Job",
        "CronJob",
        "ConfigMap",
        "NetworkPolicy",
        "ScheduledSparkApplication",
    } <= kinds


def test_the_validator_rejects_a_broken_manifest():
    """The check above can fail: a wrong type and an unknown field are reported."""
    deployment = next(yaml.safe_load_all((ROOT / "k8s" / "base" / "serving.yaml").read_text()))
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    deployment["spec"]["replicas"] = 2
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def validate_crds(node, docs) -> list[dict]:
    result = subprocess.run(
        [node, str(ROOT / "deploy-tools" / "validate-crds.mjs")],
        input=yaml.safe_dump_all(docs),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT / "deploy-tools",
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_tidb_cluster_is_valid_against_tidb_operators_schema(rendered, node):
    checked = validate_crds(node, rendered["prod"])
    assert checked == [{"kind": "TidbCluster", "name": "fraud", "valid": True, "errors": ""}]
    broken = [d for d in rendered["prod"] if d["kind"] == "TidbCluster"]
    broken[0]["spec"]["tikv"]["replicas"] = "three"
    (result,) = validate_crds(node, broken)
    assert not result["valid"] and "replicas" in result["errors"]


def test_prod_reaches_tidb_through_the_operators_service(rendered):
    docs = rendered["prod"]
    (cluster,) = [d for d in docs if d["kind"] == "TidbCluster"]
    assert config_map(docs, "platform-env")["TIDB_HOST"] == f"{cluster['metadata']['name']}-tidb"
    local = rendered["local"]
    services = {d["metadata"]["name"] for d in local if d["kind"] == "Service"}
    assert config_map(local, "platform-env")["TIDB_HOST"] in services


def test_spark_applications_run_the_backfill_with_arguments_it_accepts(overlay, monkeypatch):
    """No published schema for the Spark Operator's CRDs is available offline: check the fields the
    v1beta2 CRD requires, and parse the arguments with the job's own parser (in the environment
    the pods get from platform-env)."""
    import importlib

    name, docs = overlay
    for key, value in config_map(docs, "platform-env").items():
        monkeypatch.setenv(key, value)
    apps = dict(spark_apps(docs))
    assert "batch-features" in apps and (name != "prod-backfill" or "backfill" in apps)
    assert "velocity-stream" in apps
    for app, spec in apps.items():
        assert spec["type"] == "Python" and spec["mode"] == "cluster" and spec["sparkVersion"]
        main = spec["mainApplicationFile"]
        assert main.startswith("local:///opt/platform/lib/python3.11/site-packages/")
        source = main.split("site-packages/", 1)[1]
        assert (ROOT / source).is_file(), main
        job = importlib.import_module(source.removesuffix(".py").replace("/", "."))
        args = job.parse_args(spec["arguments"])
        assert args.master == "submit", f"{app}: the operator's master must be kept"
        assert spec["driver"]["serviceAccount"] == "spark"
        for role in ("driver", "executor"):
            part = spec[role]
            assert part["cores"] >= 1 and re.fullmatch(r"\d+[mg]", part["memory"]), (app, role)
            assert part["securityContext"]["runAsNonRoot"] is True
            assert part["securityContext"]["allowPrivilegeEscalation"] is False
            assert {"TIDB_USER", "TIDB_PASSWORD"} <= {e["name"] for e in part["env"]}
        assert PLATFORM_IMAGE.search(spec["image"]), spec["image"]
        assert "mariadb-java-client.jar" in spec["sparkConf"]["spark.jars"]


def test_images_are_pinned(overlay):
    name, docs = overlay
    images = [c["image"] for _, spec in pod_specs(docs) for c in containers(spec)]
    images += [spec["image"] for _, spec in spark_apps(docs)]
    for d in docs:
        if d["kind"] == "TidbCluster":
            images.append(f"pingcap/tidb:{d['spec']['version']}")
            images.append(d["spec"]["helper"]["image"])
    assert images
    for image in images:
        repo, _, tag = image.rpartition(":")
        assert repo and "/" not in tag and tag and tag != "latest", (
            f"{name}: {image} has no fixed tag"
        )
    if name.startswith("prod"):
        assert all(i.startswith("registry.example.com/") for i in images if "platform" in i)


def test_every_container_has_limits_and_runs_locked_down(overlay):
    name, docs = overlay
    for owner, spec in pod_specs(docs):
        pod_context = spec.get("securityContext", {})
        assert pod_context.get("runAsNonRoot") is True, f"{name}: {owner} may run as root"
        assert pod_context.get("seccompProfile", {}).get("type") == "RuntimeDefault", owner
        assert spec.get("automountServiceAccountToken") is False, f"{owner} mounts an API token"
        for c in containers(spec):
            where = f"{name}: {owner}/{c['name']}"
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c.get("resources", {}).get(bound, {})), (
                    f"{where}: no {bound}"
                )
            context = c.get("securityContext", {})
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert context.get("capabilities", {}).get("drop") == ["ALL"], where


def test_long_running_workloads_have_probes_on_real_routes(overlay):
    from serving.routes.health import router

    name, docs = overlay
    routes = {r.path for r in router.routes}
    for owner, spec in pod_specs(docs):
        if not owner.startswith(("Deployment", "StatefulSet")):
            continue
        for c in spec["containers"]:
            assert c.get("readinessProbe") and c.get("livenessProbe"), (
                f"{name}: {owner}/{c['name']}"
            )
    (serving,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "serving"
    ]
    (c,) = serving["spec"]["template"]["spec"]["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes


def test_no_plaintext_secrets(overlay):
    name, docs = overlay
    assert not [d for d in docs if d["kind"] == "Secret"], f"{name} renders a Secret"
    for owner, spec in pod_specs(docs):
        for c in containers(spec):
            for e in c.get("env", []):
                if SECRET_NAME.search(e["name"]):
                    assert "value" not in e and "secretKeyRef" in e.get("valueFrom", {}), (
                        f"{name}: {owner}/{c['name']} sets {e['name']} in plain text"
                    )
    for d in docs:
        if d["kind"] == "ConfigMap":
            assert not [k for k in d["data"] if SECRET_NAME.search(k)], d["metadata"]["name"]


def test_platform_containers_get_every_setting_the_code_reads(overlay):
    name, docs = overlay
    needed = feature_store_variables()
    assert needed == {
        "TIDB_HOST",
        "TIDB_PORT",
        "TIDB_USER",
        "TIDB_PASSWORD",
        "TIDB_DATABASE",
        "REDIS_CONNECTION_STRING",
    }
    assert feature_store_variables(optional=True) - needed == {"TIDB_TLS", "TIDB_TLS_CA"}
    seen = 0
    for owner, spec in pod_specs(docs):
        for c in containers(spec):
            if not PLATFORM_IMAGE.search(c["image"]):
                continue
            seen += 1
            has = env_names(c, docs)
            wants = (
                {"TIDB_HOST", "TIDB_USER", "TIDB_DATABASE"}
                if "spark_jobs.schema" in c["args"]
                else needed
            )
            assert wants <= has, f"{name}: {owner}/{c['name']} lacks {sorted(wants - has)}"
    for app, spec in spark_apps(docs):
        assert needed <= env_names(spec["driver"], docs), app
    assert seen >= 4


def test_the_rendered_configuration_loads_in_feast_and_serving(overlay, monkeypatch, tmp_path):
    """feature_store.yaml from the ConfigMap, with the ConfigMap's env and stand-in secrets, is a
    valid Feast config for our offline store; the SERVING_* values are valid serving settings."""
    from feast.repo_config import load_repo_config

    from serving.settings import Settings
    from tests.utils.auth import api_keys

    name, docs = overlay
    text = config_map(docs, "feature-store")["feature_store.yaml"]
    env = config_map(docs, "platform-env")
    repo_yaml = (ROOT / "feature_repo" / "feature_store.yaml").read_text()
    if env["TIDB_TLS"] == "true":  # k8s/components/tidb-tls: the registry URL verifies TiDB too
        registry = "${TIDB_DATABASE}_registry\n"
        tls_registry = (
            f"${{TIDB_DATABASE}}_registry?ssl_ca={env['TIDB_TLS_CA']}&ssl_check_hostname=true\n"
        )
        assert text.count(tls_registry) == 1, name
        text_as_repo = text.replace(tls_registry, registry)
    else:
        text_as_repo = text
    assert text_as_repo == repo_yaml, (
        f"{name}: the rendered feature_store.yaml differs from feature_repo/feature_store.yaml: "
        "copy it over (k8s/base/, and k8s/components/tidb-tls/ but for its registry URL)"
    )
    for key, value in {
        **env,
        "TIDB_USER": "u",
        "TIDB_PASSWORD": "p",
        "REDIS_CONNECTION_STRING": "redis:6379",
    }.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "feature_store.yaml").write_text(text)
    config = load_repo_config(tmp_path, tmp_path / "feature_store.yaml")
    assert config.offline_store.host == env["TIDB_HOST"] and config.offline_store.port == int(
        env["TIDB_PORT"]
    )
    assert config.offline_store.tls is (env["TIDB_TLS"] == "true")
    assert config.offline_store.tls_ca == (env["TIDB_TLS_CA"] or None)
    settings = Settings(api_keys=api_keys())  # the keys: test_serving_reads_its_api_keys_from...
    (serving,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "serving"
    ]
    (c,) = serving["spec"]["template"]["spec"]["containers"]
    assert c["ports"] == [{"name": "http", "containerPort": settings.port}]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert (
        str(settings.models_dir) in mounts
        and str(settings.feature_repo / "feature_store.yaml") in mounts
    )


def test_with_tls_on_every_tidb_client_verifies_the_server_with_the_mounted_ca(overlay):
    """TIDB_TLS=true: every platform pod and Spark driver/executor mounts the CA where TIDB_TLS_CA
    says, and the JDBC URL the jobs build from the same settings asks for verified TLS."""
    from providers.tidb.settings import TiDBSettings

    name, docs = overlay
    env = config_map(docs, "platform-env")
    if env["TIDB_TLS"] != "true":
        assert name == "local" and not env["TIDB_TLS_CA"]
        return
    ca_dir = env["TIDB_TLS_CA"].rsplit("/", 1)[0]

    def mounts_ca(container, volumes) -> bool:
        names = {m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == ca_dir}
        return any(v["name"] in names and v.get("secret", {}).get("secretName") for v in volumes)

    checked = 0
    for owner, spec in pod_specs(docs):
        for c in containers(spec):
            if PLATFORM_IMAGE.search(c["image"]):
                assert mounts_ca(c, spec.get("volumes", [])), f"{name}: {owner}/{c['name']}"
                checked += 1
    for app, spec in spark_apps(docs):
        for role in ("driver", "executor"):
            assert mounts_ca(spec[role], spec["volumes"]), f"{name}: {app} {role}"
            checked += 1
    assert checked >= 6
    url = TiDBSettings.from_env({**env, "TIDB_USER": "u", "TIDB_PASSWORD": "p"}).jdbc_url()
    assert "useSsl=true" in url and f"serverSslCert={env['TIDB_TLS_CA']}" in url
    (cluster,) = [d for d in docs if d["kind"] == "TidbCluster"]
    assert cluster["spec"]["tidb"]["tlsClient"]["enabled"] is True


def test_service_hpa_pdb_and_network_policy_point_at_serving(overlay):
    name, docs = overlay
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    pod = by["Deployment", "serving"]["spec"]["template"]["metadata"]["labels"]
    service = by["Service", "serving"]["spec"]
    assert (
        service["selector"].items() <= pod.items() and service["ports"][0]["targetPort"] == "http"
    )
    assert by["HorizontalPodAutoscaler", "serving"]["spec"]["scaleTargetRef"]["name"] == "serving"
    pdb = by["PodDisruptionBudget", "serving"]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= pod.items()
    assert (
        pdb["minAvailable"] < by["HorizontalPodAutoscaler", "serving"]["spec"]["minReplicas"]
        or name == "local"
    )
    ingress = by["NetworkPolicy", "serving-ingress"]["spec"]
    assert ingress["podSelector"]["matchLabels"].items() <= pod.items()
    assert ingress["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    deny = by["NetworkPolicy", "default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}


def test_jobs_run_the_stock_feast_commands(rendered):
    docs = rendered["prod"]
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    job = by["Job", "feast-apply"]["spec"]["template"]["spec"]
    assert job["containers"][0]["args"] == ["feast", "-c", "/app/feature_repo", "apply"]
    assert job["initContainers"][0]["args"][:3] == ["python", "-m", "spark_jobs.schema"]
    cron = by["CronJob", "materialize-incremental"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid"
    (c,) = cron["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert "feast -c /app/feature_repo materialize-incremental" in c["args"][-1]


def test_kustomize_is_the_real_binary():
    out = subprocess.run([tool("kustomize"), "version"], capture_output=True, text=True, timeout=30)
    assert "kustomize/v4.5.4" in out.stdout


def allowed(docs, labels: dict, direction: str, port: int, peer: dict | None = None) -> bool:
    """Whether some NetworkPolicy selecting a pod with `labels` allows `direction` traffic on
    `port` (to/from a pod with `peer` labels when given). Enough of the semantics for these
    manifests: matchLabels selectors, ports by number, same namespace."""
    key = "egress" if direction == "Egress" else "ingress"
    side = "to" if key == "egress" else "from"
    for d in docs:
        if d["kind"] != "NetworkPolicy" or direction not in d["spec"]["policyTypes"]:
            continue
        if not d["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items():
            continue
        for rule in d["spec"].get(key, []):
            ports = [p["port"] for p in rule.get("ports", [])]
            if ports and port not in ports:
                continue
            peers = rule.get(side)
            if not peers or peer is None:
                return True
            for p in peers:
                selector = p.get("podSelector")
                if selector is not None and "namespaceSelector" not in p:
                    if selector.get("matchLabels", {}).items() <= peer.items():
                        return True
    return False


def test_the_stream_job_and_serving_reach_the_broker_and_keep_their_checkpoints(overlay):
    name, docs = overlay
    broker_pod = {"app.kubernetes.io/name": "broker"}
    (stream,) = [spec for app, spec in spark_apps(docs) if app == "velocity-stream"]
    assert stream["restartPolicy"]["type"] == "Always"  # a stream job runs until stopped
    checkpoint = stream["arguments"][stream["arguments"].index("--checkpoint") + 1]
    claims = {v["name"]: v for v in stream["volumes"]}
    for role in ("driver", "executor"):  # both write state: the same shared volume
        mounts = {m["mountPath"]: m["name"] for m in stream[role]["volumeMounts"]}
        (mount,) = [path for path in mounts if checkpoint.startswith(path + "/")]
        assert "persistentVolumeClaim" in claims[mounts[mount]], role
        labels = stream[role]["labels"]
        assert allowed(docs, labels, "Egress", 6379, broker_pod), role
        assert allowed(docs, broker_pod, "Ingress", 6379, labels), role
        # Both write TiDB: the driver the velocity rows, the executors the landed raw events.
        assert labels.get("platform.fraud/tidb-client") == "true", role
        assert allowed(docs, labels, "Egress", 4000) and allowed(docs, labels, "Egress", 53), role
    (pvc,) = [
        d
        for d in docs
        if d["kind"] == "PersistentVolumeClaim"
        and d["metadata"]["name"] == claims["checkpoints"]["persistentVolumeClaim"]["claimName"]
    ]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    (serving,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "serving"
    ]
    labels = serving["spec"]["template"]["metadata"]["labels"]
    assert allowed(docs, labels, "Egress", 6379, broker_pod)
    assert config_map(docs, "platform-env")["BROKER_URL"] == "redis://broker:6379/0"
    (broker,) = [
        d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "broker"
    ]
    args = broker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendfsync") + 1] == "always"  # acknowledged means on disk


def test_network_policies_let_the_platform_reach_tidb_and_redis(overlay):
    name, docs = overlay
    redis_pod = {"app.kubernetes.io/name": "redis"}
    for d in docs:
        if d["kind"] not in ("Deployment", "Job", "CronJob"):
            continue
        template = (
            d["spec"]["jobTemplate"]["spec"]["template"]
            if d["kind"] == "CronJob"
            else d["spec"]["template"]
        )
        labels = template["metadata"]["labels"]
        commands = " ".join(" ".join(c.get("args", [])) for c in containers(template["spec"]))
        if "feast" in commands or "serving" in commands:  # Feast opens Redis (apply deletes keys)
            assert labels.get("platform.fraud/redis-client") == "true", (
                f"{name}: {d['metadata']['name']}"
            )
            assert allowed(docs, labels, "Egress", 6379, redis_pod)
            assert allowed(docs, redis_pod, "Ingress", 6379, labels)
        if labels.get("platform.fraud/tidb-client") == "true":
            assert allowed(docs, labels, "Egress", 4000)
            assert allowed(docs, labels, "Egress", 53)
    tidb_pods = (
        [{"app.kubernetes.io/name": "tidb"}]
        if name == "local"
        else [{"app.kubernetes.io/instance": "fraud", "app.kubernetes.io/managed-by": "tidb-operator",
               "app.kubernetes.io/component": "tidb"}]
    )  # fmt: skip
    client = {"platform.fraud/tidb-client": "true"}
    for pod in tidb_pods:
        assert allowed(docs, pod, "Ingress", 4000, client), f"{name}: TiDB unreachable"
    if name != "local":  # the cluster's own components talk to each other (PD 2379, TiKV 20160)
        pd = {**tidb_pods[0], "app.kubernetes.io/component": "pd"}
        assert allowed(docs, pd, "Ingress", 2379, tidb_pods[0])
        assert allowed(docs, tidb_pods[0], "Egress", 2379, pd)


def test_serving_reads_its_api_keys_from_a_secret(overlay):
    """Serving does not start without keys; the Deployment mounts them from a Secret at the
    path SERVING_API_KEYS_FILE names."""
    name, docs = overlay
    (serving,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "serving"
    ]
    spec = serving["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    path = {e["name"]: e.get("value") for e in c["env"]}["SERVING_API_KEYS_FILE"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    (volume,) = [v for v in mounts if path.startswith(mounts[v] + "/")]
    secret = volumes[volume]["secret"]
    assert secret["secretName"] == "serving-api-keys", name
    assert {i["path"] for i in secret["items"]} == {path.rsplit("/", 1)[1]}, name


def _role_of(args: list[str]) -> str:
    """The role (providers/tidb/roles.py) a platform command runs as."""
    text = " ".join(args)
    if "serving" in args or "-m serving" in text:
        return "serving"
    if text.startswith("feast") or " feast " in f" {text} ":
        return "registry"  # feast apply, feast materialize
    if "spark_jobs." in text:
        return "writer"  # the schema, the batch and stream jobs, the backfills
    raise AssertionError(f"no role known for {args}")


def _tidb_secret(env: list[dict]) -> set[str]:
    return {
        e["valueFrom"]["secretKeyRef"]["name"]
        for e in env
        if e["name"] in ("TIDB_USER", "TIDB_PASSWORD")
    }


def test_each_workload_connects_with_its_roles_account_only(overlay):
    name, docs = overlay
    seen = set()
    for owner, spec in pod_specs(docs):
        for c in containers(spec):
            if not PLATFORM_IMAGE.search(c["image"]):
                continue
            role = _role_of(c.get("args") or c.get("command") or [])
            seen.add(role)
            assert _tidb_secret(c.get("env", [])) == {f"tidb-{role}-credentials"}, (
                f"{name}: {owner}/{c['name']} should connect as {role}"
            )
    for app, spec in spark_apps(docs):
        for part in ("driver", "executor"):
            assert _tidb_secret(spec[part].get("env", [])) == {"tidb-writer-credentials"}, app
    assert {"serving", "registry", "writer"} <= seen
