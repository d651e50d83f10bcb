"""Properties every rendered Kubernetes output must have.

scripts/check-k8s renders each Kustomize overlay and the Helm chart with
several value sets into K8S_RENDERED_DIR as <variant>.yaml, then runs this
file. The variants and what each promises are listed in VARIANTS below.
"""

import copy
import os
import pathlib
import re

import kubernetes_validate
import pytest
import yaml

import crd_schema

ROOT = pathlib.Path(__file__).resolve().parents[2]
RENDERED_DIR = pathlib.Path(os.environ.get("K8S_RENDERED_DIR", ".cache/k8s/rendered"))
SPINKUBE_CRD_DIR = os.environ.get("SPINKUBE_CRD_DIR", "../shared/spinkube")
PROMETHEUS_CRD_DIR = os.environ.get("PROMETHEUS_CRD_DIR", str(ROOT / "k8s/crds/prometheus-operator"))
CERT_MANAGER_CRD_DIR = os.environ.get("CERT_MANAGER_CRD_DIR", str(ROOT / "k8s/crds/cert-manager"))
ALERTS = ROOT / "observability/prometheus/alerts.yml"

# Traces as k8s/helm/conduit/ci/{observability,spinkube-telemetry}-values.yaml set them.
TRACES_IN_CLUSTER = dict(
    endpoint="http://otel-collector.observability:4318",
    port=4318,
    peer={"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}},
    env={
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel-collector.observability:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "conduit-api",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
)
TRACES_OUTSIDE = dict(
    endpoint="https://otlp.example.com",
    port=443,
    peer={"ipBlock": {"cidr": "203.0.113.0/24"}},
)

STAGING = "letsencrypt-staging"
PRODUCTION = "letsencrypt-production"

# What each rendered output must contain. replicas=None: the HPA owns the
# replica count, so the workload must not set one. traces: where the API
# sends traces (None: nowhere); monitoring: PodMonitor and PrometheusRule.
# issuer: the cert-manager ClusterIssuer of the Ingresses' certificate (None:
# a Secret kept by the user); cluster_issuer: the output creates it too.
VARIANTS = {
    "kustomize-dev": dict(
        runtime="container", database="internal", replicas=1, autoscaling=False, issuer=STAGING,
    ),
    "kustomize-prod": dict(
        runtime="container", database="internal", replicas=None, autoscaling=True, issuer=PRODUCTION,
        backup="pvc",
    ),
    "kustomize-prod-external-db": dict(
        runtime="container", database="external", replicas=None, autoscaling=True, issuer=PRODUCTION,
    ),
    "kustomize-spinkube-dev": dict(
        runtime="spinkube", database="internal", replicas=1, autoscaling=False, issuer=STAGING,
    ),
    "kustomize-spinkube-prod": dict(
        runtime="spinkube", database="internal", replicas=None, autoscaling=True, issuer=PRODUCTION,
        backup="pvc",
    ),
    "kustomize-dev-runtime-config": dict(
        runtime="container", database="internal", replicas=1, autoscaling=False, issuer=STAGING,
        runtime_config="conduit-runtime-config",
    ),
    "kustomize-spinkube-dev-runtime-config": dict(
        runtime="spinkube", database="internal", replicas=1, autoscaling=False, issuer=STAGING,
        runtime_config="conduit-runtime-config",
    ),
    "helm-default": dict(
        runtime="container", database="internal", replicas=1, autoscaling=False,
        issuer=STAGING, cluster_issuer=True,
    ),
    "helm-spinkube": dict(
        runtime="spinkube", database="internal", replicas=1, autoscaling=False,
        issuer=STAGING, cluster_issuer=True,
    ),
    "helm-container-ha": dict(
        runtime="container", database="internal", replicas=None, autoscaling=True,
        issuer=PRODUCTION, cluster_issuer=True,
    ),
    "helm-spinkube-ha": dict(
        runtime="spinkube", database="internal", replicas=None, autoscaling=True,
        issuer=PRODUCTION, cluster_issuer=True,
    ),
    "helm-external-db": dict(
        runtime="container", database="external", replicas=None, autoscaling=True, issuer=PRODUCTION,
    ),
    "helm-observability": dict(
        runtime="container", database="internal", replicas=1, autoscaling=False,
        traces=TRACES_IN_CLUSTER, monitoring=True, issuer=STAGING, cluster_issuer=True,
    ),
    "helm-spinkube-telemetry": dict(
        runtime="spinkube", database="internal", replicas=1, autoscaling=False, traces=TRACES_OUTSIDE,
        issuer=STAGING, cluster_issuer=True,
    ),
    "helm-backup-pvc": dict(
        runtime="container", database="internal", replicas=1, autoscaling=False,
        issuer=STAGING, cluster_issuer=True, backup="pvc",
    ),
    "helm-backup-s3": dict(
        runtime="container", database="external", replicas=1, autoscaling=False,
        issuer=STAGING, cluster_issuer=True, backup="s3",
    ),
    "helm-runtime-config": dict(
        runtime="container", database="internal", replicas=1, autoscaling=False,
        issuer=STAGING, cluster_issuer=True, runtime_config="conduit-runtime-config",
    ),
    "helm-spinkube-runtime-config": dict(
        runtime="spinkube", database="internal", replicas=1, autoscaling=False,
        issuer=STAGING, cluster_issuer=True, runtime_config="conduit-runtime-config",
    ),
    "helm-tls-existing-secret": dict(
        runtime="container", database="internal", replicas=1, autoscaling=False, issuer=None,
    ),
}
# k8s/cluster-issuers, rendered on its own: applied once per cluster, not
# with an application overlay.
CLUSTER_ISSUERS = "kustomize-cluster-issuers"
ACME_SERVERS = {
    STAGING: "https://acme-staging-v02.api.letsencrypt.org/directory",
    PRODUCTION: "https://acme-v02.api.letsencrypt.org/directory",
}
# Where the external database's CA bundle reaches wasmhost: the directory of
# sslrootcert in the URLs (terraform/modules/rds builds them with this path).
DB_CA_CONFIGMAP = "rds-ca-bundle"
DB_CA_DIR = "/etc/conduit/db-ca"
# Prometheus Operator objects need its CRDs in the cluster: the chart offers
# them as opt-ins, and Kustomize users render them from the chart.
CHART_ONLY_KINDS = {("monitoring.coreos.com/v1", "PodMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
API_SELECTOR = {"app.kubernetes.io/name": "conduit", "app.kubernetes.io/component": "api"}
MIN_HA_REPLICAS = 3
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob", "Pod", "ReplicaSet"}
SECRET_ENV = re.compile(r"PASSWORD|SECRET|TOKEN|DB_URL|DATABASE_URL|KEY", re.IGNORECASE)
CREDENTIALS_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:[^@\s'\"]+@", re.IGNORECASE)


def load(variant):
    path = RENDERED_DIR / f"{variant}.yaml"
    if not path.exists():
        pytest.fail(f"{path} was not rendered")
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(docs, kind):
    return [doc for doc in docs if doc["kind"] == kind]


def pod_spec(doc):
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def api_workload(docs, runtime):
    kind = "SpinApp" if runtime == "spinkube" else "Deployment"
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == "conduit-api"]
    assert len(found) == 1, f"expected one {kind} conduit-api, found {len(found)}"
    return found[0]


@pytest.fixture(params=sorted(VARIANTS))
def variant(request):
    return request.param, VARIANTS[request.param], load(request.param)


def test_every_container_runs_as_non_root_with_resources(variant):
    name, _, docs = variant
    workloads = [doc for doc in docs if doc["kind"] in WORKLOAD_KINDS]
    assert workloads, f"{name}: no workloads rendered"
    for doc in workloads:
        spec = pod_spec(doc)
        pod_context = spec.get("securityContext", {})
        for container in containers(spec):
            where = f"{name}: {doc['kind']}/{doc['metadata']['name']}/{container['name']}"
            context = {**pod_context, **container.get("securityContext", {})}
            assert context.get("runAsNonRoot") is True, f"{where} may run as root"
            assert context.get("runAsUser", 1) != 0, f"{where} runs as UID 0"
            assert container.get("securityContext", {}).get("allowPrivilegeEscalation") is False, where
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, where
            assert "ALL" in container["securityContext"].get("capabilities", {}).get("drop", []), where
            for bound in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    assert container.get("resources", {}).get(bound, {}).get(resource), (
                        f"{where} has no {bound}.{resource}"
                    )
    # A SpinApp's pods are built by the operator, which accepts no
    # securityContext; resources are what the SpinApp can and must set.
    for app in of_kind(docs, "SpinApp"):
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert app["spec"].get("resources", {}).get(bound, {}).get(resource), (
                    f"{name}: SpinApp/{app['metadata']['name']} has no {bound}.{resource}"
                )


def test_database_lives_only_on_a_persistent_volume_claim(variant):
    name, expected, docs = variant
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            for volume in pod_spec(doc).get("volumes", []):
                assert "hostPath" not in volume, f"{name}: {doc['metadata']['name']} mounts a hostPath"
    postgres_workloads = [
        doc
        for doc in docs
        if doc["kind"] in WORKLOAD_KINDS
        and any(c["image"].split("/")[-1].startswith("postgres:") for c in containers(pod_spec(doc)))
        # The backup CronJob runs the server's image for its pg_dump, not a server.
        and doc["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "backup"
    ]
    if expected["database"] == "external":
        assert not postgres_workloads, f"{name}: external database, yet a PostgreSQL workload is rendered"
        return
    assert [doc["kind"] for doc in postgres_workloads] == ["StatefulSet"], (
        f"{name}: PostgreSQL must run only as a StatefulSet"
    )
    statefulset = postgres_workloads[0]
    claims = {t["metadata"]["name"]: t for t in statefulset["spec"].get("volumeClaimTemplates", [])}
    pod_volumes = {v["name"] for v in pod_spec(statefulset).get("volumes", [])}
    (postgres,) = [c for c in pod_spec(statefulset)["containers"] if c["name"] == "postgres"]
    data_mounts = [m for m in postgres["volumeMounts"] if m["mountPath"] == "/var/lib/postgresql/data"]
    assert len(data_mounts) == 1, f"{name}: the data directory is not mounted"
    volume = data_mounts[0]["name"]
    assert volume in claims and volume not in pod_volumes, f"{name}: data volume {volume} is not a PVC"
    assert claims[volume]["spec"].get("storageClassName"), f"{name}: data PVC has no storage class"
    pgdata = [e["value"] for e in postgres["env"] if e["name"] == "PGDATA"]
    assert pgdata and pgdata[0].startswith("/var/lib/postgresql/data/"), f"{name}: PGDATA is off the volume"


def test_secrets_only_by_reference(variant):
    name, _, docs = variant
    assert not of_kind(docs, "Secret"), f"{name}: renders a Secret; secrets are created outside the manifests"
    text = (RENDERED_DIR / f"{name}.yaml").read_text()
    assert not CREDENTIALS_IN_URL.search(text), f"{name}: a URL with credentials is in the manifests"
    for doc in docs:
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        for container in containers(pod_spec(doc)):
            for env in container.get("env", []):
                if SECRET_ENV.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), (
                        f"{name}: {doc['metadata']['name']}/{container['name']} sets {env['name']} literally"
                    )
    for app in of_kind(docs, "SpinApp"):
        variables = {v["name"]: v for v in app["spec"]["variables"]}
        for secret in ("db_url", "jwt_secret"):
            assert "secretKeyRef" in variables[secret].get("valueFrom", {}), f"{name}: {secret} not from a Secret"


def test_replicas_and_autoscaling_as_the_variant_says(variant):
    name, expected, docs = variant
    workload = api_workload(docs, expected["runtime"])
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    pdbs = of_kind(docs, "PodDisruptionBudget")
    assert workload["spec"].get("replicas") == expected["replicas"], f"{name}: replicas"
    if expected["runtime"] == "spinkube":
        assert workload["spec"].get("enableAutoscaling", False) is expected["autoscaling"], f"{name}: enableAutoscaling"
        assert workload["spec"]["executor"] == "containerd-shim-spin"
    if not expected["autoscaling"]:
        assert not hpas and not pdbs, f"{name}: a single-replica variant must not autoscale or hold a PDB"
        return
    (hpa,) = hpas
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "conduit-api"}
    assert hpa["spec"]["minReplicas"] >= MIN_HA_REPLICAS, f"{name}: HPA minimum below {MIN_HA_REPLICAS}"
    assert hpa["spec"]["maxReplicas"] >= hpa["spec"]["minReplicas"]
    (pdb,) = pdbs
    assert pdb["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "conduit",
        "app.kubernetes.io/component": "api",
    }
    if expected["runtime"] == "container":
        spread = pod_spec(workload)["topologySpreadConstraints"]
        zone = [s for s in spread if s["topologyKey"] == "topology.kubernetes.io/zone"]
        assert zone and zone[0]["whenUnsatisfiable"] == "DoNotSchedule", f"{name}: replicas may share a zone"


def test_api_pods_carry_the_labels_policies_select(variant):
    name, expected, docs = variant
    workload = api_workload(docs, expected["runtime"])
    labels = (
        workload["spec"]["podLabels"]
        if expected["runtime"] == "spinkube"
        else workload["spec"]["template"]["metadata"]["labels"]
    )
    assert labels.get("app.kubernetes.io/component") == "api", f"{name}: API pods lack component=api"


def test_ingress_streams_bodies_only_to_wasmhost(variant):
    # wasmhost bounds a body's arrival by its request deadline (408); Spin
    # does not, so for SpinKube ingress-nginx must keep buffering bodies.
    name, expected, docs = variant
    ingresses = of_kind(docs, "Ingress")
    assert len(ingresses) == 2, f"{name}: expected the API and the auth Ingress"
    for ingress in ingresses:
        buffering = ingress["metadata"].get("annotations", {}).get(
            "nginx.ingress.kubernetes.io/proxy-request-buffering"
        )
        if expected["runtime"] == "container":
            assert buffering == "off", f"{name}: {ingress['metadata']['name']} buffers request bodies"
        else:
            assert buffering is None, f"{name}: {ingress['metadata']['name']} streams bodies to Spin"


def test_wasmhost_limits_password_hashing_and_keeps_fresh_instances(variant):
    # Login and registration hash a password (19 MiB each): wasmhost runs a
    # few at a time per pod and queues the rest (WASMHOST_ROUTE_LIMITS), and
    # gives every request a fresh instance, as SpinKube does.
    name, expected, docs = variant
    if expected["runtime"] != "container":
        return
    (api,) = [c for c in pod_spec(api_workload(docs, "container"))["containers"] if c["name"] == "wasmhost"]
    env = {e["name"]: e.get("value") for e in api.get("env", [])}
    limits = (env.get("WASMHOST_ROUTE_LIMITS") or "").split(",")
    for route in ("POST /api/users/login", "POST /api/users"):
        assert any(limit.startswith(route + "=") for limit in limits), f"{name}: no route limit for {route}: {limits}"
    assert env.get("WASMHOST_MAX_INSTANCE_REUSE") == "1", f"{name}: instance reuse is not off"


def test_network_is_default_deny_and_only_clients_reach_the_database(variant):
    name, expected, docs = variant
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind(docs, "NetworkPolicy")}
    deny = policies.get("default-deny-all")
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, f"{name}: no default deny"
    api = policies["conduit-api-from-ingress"]
    (rule,) = api["ingress"]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ], f"{name}: the API admits more than ingress-nginx"
    port = 80 if expected["runtime"] == "spinkube" else 3000
    assert rule["ports"] == [{"protocol": "TCP", "port": port}]
    if expected["database"] == "internal":
        (rule,) = policies["postgres-from-clients"]["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
        (source,) = rule["from"]
        assert source == {
            "podSelector": {
                "matchExpressions": [
                    {"key": "app.kubernetes.io/component", "operator": "In", "values": ["api", "migrate"]}
                ]
            }
        }, f"{name}: PostgreSQL admits more than the API and the migration Job"


def test_backups_are_scheduled_where_the_variant_says(variant):
    name, expected, docs = variant
    cronjobs = [doc for doc in of_kind(docs, "CronJob") if doc["metadata"]["name"] == "conduit-backup"]
    target = expected.get("backup")
    if target is None:
        assert not cronjobs, f"{name}: a backup CronJob nobody asked for"
        return
    assert len(cronjobs) == 1, f"{name}: no backup CronJob"
    (cronjob,) = cronjobs
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid", f"{name}: backups may overlap"
    spec = pod_spec(cronjob)
    (dump,) = [c for c in containers(spec) if c["name"] == "dump"]
    script = " ".join(dump.get("command", []) + dump.get("args", []))
    assert "pg_dump --format=custom" in script and "sha256sum" in script, f"{name}: not a checksummed custom-format dump"
    (url,) = [e for e in dump["env"] if e["name"] == "DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"]["key"] == "migrate_db_url", f"{name}: backup does not connect as conduit_owner"
    volumes = {v["name"]: v for v in spec["volumes"]}
    if target == "pvc":
        claim = volumes["backups"]["persistentVolumeClaim"]["claimName"]
        claims = {doc["metadata"]["name"] for doc in of_kind(docs, "PersistentVolumeClaim")}
        assert claim in claims, f"{name}: the backup PVC {claim} is not rendered"
    else:
        (upload,) = [c for c in spec["containers"] if c["name"] == "upload"]
        assert "aws s3 cp" in " ".join(upload["args"]), f"{name}: nothing uploads the dump"
        accounts = {doc["metadata"]["name"]: doc for doc in of_kind(docs, "ServiceAccount")}
        account = accounts[spec["serviceAccountName"]]
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::"), (
            f"{name}: the backup's service account has no IRSA role"
        )
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind(docs, "NetworkPolicy")}
    assert "backup-to-postgres" in policies, f"{name}: the backup Job has no way to the database"
    if expected["database"] == "internal":
        (rule,) = policies["postgres-from-backup"]["ingress"]
        assert rule == {
            "from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/component": "backup"}}}],
            "ports": [{"protocol": "TCP", "port": 5432}],
        }, f"{name}: the database admits more than the backup Job through its policy"


def test_migration_job_runs_the_host_image(variant):
    name, _, docs = variant
    jobs = [doc for doc in of_kind(docs, "Job") if doc["metadata"]["name"] == "conduit-migrate"]
    assert len(jobs) == 1, f"{name}: no migration Job"
    (container,) = pod_spec(jobs[0])["containers"]
    assert container["args"] == ["migrate"]
    assert "conduit-wasmhost:" in container["image"]
    if name.startswith("helm-"):
        hooks = jobs[0]["metadata"]["annotations"]["helm.sh/hook"].split(",")
        assert "pre-upgrade" in hooks


def test_images_are_pinned(variant):
    name, _, docs = variant
    images = [c["image"] for d in docs if d["kind"] in WORKLOAD_KINDS for c in containers(pod_spec(d))]
    images += [d["spec"]["image"] for d in of_kind(docs, "SpinApp")]
    for image in images:
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert "@sha256:" in image or (tag and tag != "latest"), f"{name}: {image} is not pinned"


def test_helm_chart_installs_nothing_the_overlays_do_not():
    def kinds(prefix):
        variants = [variant for variant in VARIANTS if variant.startswith(prefix)]
        if prefix == "kustomize-":
            variants.append(CLUSTER_ISSUERS)
        return {(doc["apiVersion"], doc["kind"]) for variant in variants for doc in load(variant)}

    extra = kinds("helm-") - kinds("kustomize-") - CHART_ONLY_KINDS
    assert not extra, f"the Helm chart installs kinds no overlay does: {sorted(extra)}"


def test_strict_validators_reject_unknown_fields_and_wrong_types():
    """The schema checks in check-k8s must be able to fail."""
    deployment = copy.deepcopy(api_workload(load("kustomize-dev"), "container"))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)

    validators = crd_schema.load_validators(SPINKUBE_CRD_DIR)
    spinapp = api_workload(load("kustomize-spinkube-dev"), "spinkube")
    assert crd_schema.errors_of(validators, spinapp) == []
    misspelt = copy.deepcopy(spinapp)
    misspelt["spec"]["checks"]["readiness"]["httpGet"]["pth"] = "/"
    assert crd_schema.errors_of(validators, misspelt)
    wrong_type = copy.deepcopy(spinapp)
    wrong_type["spec"]["replicas"] = "three"
    assert crd_schema.errors_of(validators, wrong_type)

    validators = crd_schema.load_validators(PROMETHEUS_CRD_DIR)
    docs = load("helm-observability")
    (monitor,) = of_kind(docs, "PodMonitor")
    (rule,) = of_kind(docs, "PrometheusRule")
    assert crd_schema.errors_of(validators, monitor) == []
    assert crd_schema.errors_of(validators, rule) == []
    misspelt = copy.deepcopy(monitor)
    misspelt["spec"]["podMetricsEndpoints"][0]["intervall"] = "30s"
    assert crd_schema.errors_of(validators, misspelt)
    wrong_type = copy.deepcopy(rule)
    wrong_type["spec"]["groups"][0]["rules"][0]["for"] = "a minute"
    assert crd_schema.errors_of(validators, wrong_type)

    validators = crd_schema.load_validators(CERT_MANAGER_CRD_DIR)
    (certificate,) = of_kind(load("kustomize-prod"), "Certificate")
    issuers = of_kind(load(CLUSTER_ISSUERS), "ClusterIssuer")
    assert issuers and all(crd_schema.errors_of(validators, doc) == [] for doc in (certificate, *issuers))
    misspelt = copy.deepcopy(certificate)
    misspelt["spec"]["dnsName"] = misspelt["spec"].pop("dnsNames")
    assert crd_schema.errors_of(validators, misspelt)
    wrong_type = copy.deepcopy(certificate)
    wrong_type["spec"]["privateKey"]["size"] = "large"
    assert crd_schema.errors_of(validators, wrong_type)
    misspelt = copy.deepcopy(issuers[0])
    misspelt["spec"]["acme"]["solvers"][0]["http01"]["ingress"]["ingressClass"] = "nginx"
    assert crd_schema.errors_of(validators, misspelt)


def test_every_skipped_checkov_check_is_justified(variant):
    name, _, docs = variant
    for doc in docs:
        for key, value in doc["metadata"].get("annotations", {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV2?_K8S_\d+", check), f"{name}: bad skip {value!r}"
                assert len(reason.split()) >= 5, f"{name}: {check} skipped without a reason"


def test_monitoring_is_opt_in_and_scrapes_every_api_pod_as_job_wasmhost(variant):
    name, expected, docs = variant
    monitors = of_kind(docs, "PodMonitor")
    rules = of_kind(docs, "PrometheusRule")
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind(docs, "NetworkPolicy")}
    if not expected.get("monitoring"):
        assert not monitors and not rules, f"{name}: monitoring objects are rendered without being asked for"
        assert "conduit-api-metrics-from-prometheus" not in policies, f"{name}: the admin port is open"
        return
    (monitor,) = monitors
    assert monitor["spec"]["selector"] == {"matchLabels": API_SELECTOR}, f"{name}: PodMonitor selects other pods"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("admin", "/metrics")
    # The alerts and the dashboard query job="wasmhost".
    assert {"action": "replace", "targetLabel": "job", "replacement": "wasmhost"} in endpoint["relabelings"]
    ports = pod_spec(api_workload(docs, "container"))["containers"][0]["ports"]
    assert {"name": "admin", "containerPort": 9090} in ports, f"{name}: no admin port to scrape"
    (rule,) = policies["conduit-api-metrics-from-prometheus"]["ingress"]
    assert rule == {
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 9090}],
    }, f"{name}: the admin port admits more than Prometheus"
    for doc in (monitor, *rules):
        assert doc["metadata"]["labels"].get("release") == "kube-prometheus-stack", f"{name}: selector labels"


def test_prometheus_rule_carries_exactly_the_committed_alerts(variant):
    name, expected, docs = variant
    if not expected.get("monitoring"):
        return
    (rule,) = of_kind(docs, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text()), (
        f"{name}: the PrometheusRule differs from observability/prometheus/alerts.yml"
    )


def test_traces_go_only_to_the_configured_collector(variant):
    name, expected, docs = variant
    traces = expected.get("traces")
    otel_env = {}
    for doc in docs:
        if doc["kind"] in WORKLOAD_KINDS:
            for container in containers(pod_spec(doc)):
                for env in container.get("env", []):
                    if env["name"].startswith("OTEL_"):
                        assert doc["metadata"]["name"] == "conduit-api", f"{name}: {doc['metadata']['name']} traces"
                        otel_env[env["name"]] = env.get("value")
    executors = of_kind(docs, "SpinAppExecutor")
    otel = [executor["spec"].get("deploymentConfig", {}).get("otel") for executor in executors]
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind(docs, "NetworkPolicy")}
    if traces is None:
        assert not otel_env, f"{name}: traces are on without an endpoint: {otel_env}"
        assert not any(otel), f"{name}: the SpinAppExecutor sends traces without an endpoint"
        assert "conduit-api-to-collector" not in policies
        return
    if expected["runtime"] == "container":
        assert otel_env == traces["env"], f"{name}: OTEL_* of wasmhost"
    else:
        assert not otel_env, f"{name}: OTEL_* set on a workload besides the SpinApp's"
        assert otel == [{"exporter_otlp_endpoint": traces["endpoint"]}], f"{name}: SpinAppExecutor otel"
    egress = policies["conduit-api-to-collector"]
    assert egress["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "api"}}
    assert egress["egress"] == [
        {"to": [traces["peer"]], "ports": [{"protocol": "TCP", "port": traces["port"]}]}
    ], f"{name}: the API may send traces elsewhere than the collector"


# --- HTTPS at the entry point ------------------------------------------------


def ingress_hosts(ingress):
    return [rule.get("host") for rule in ingress["spec"]["rules"]]


def test_every_ingress_serves_only_https_for_its_host(variant):
    # Each Ingress names its host, serves that host's certificate from one
    # Secret, and sends plain HTTP to HTTPS (ssl-redirect, and
    # force-ssl-redirect before the certificate exists). HSTS is the
    # controller's ConfigMap setting; snippets are off in ingress-nginx.
    name, _, docs = variant
    ingresses = of_kind(docs, "Ingress")
    assert ingresses, f"{name}: no Ingress"
    secrets = set()
    for ingress in ingresses:
        where = f"{name}: Ingress/{ingress['metadata']['name']}"
        hosts = ingress_hosts(ingress)
        assert all(hosts), f"{where} answers any host name; a certificate needs one"
        entries = ingress["spec"].get("tls", [])
        assert len(entries) == 1, f"{where} has {len(entries)} tls entries"
        assert entries[0]["hosts"] == hosts, f"{where}: tls hosts {entries[0]['hosts']} differ from the rules' {hosts}"
        secrets.add(entries[0].get("secretName"))
        annotations = ingress["metadata"].get("annotations", {})
        for redirect in ("ssl-redirect", "force-ssl-redirect"):
            assert annotations.get(f"nginx.ingress.kubernetes.io/{redirect}") == "true", f"{where}: no {redirect}"
        assert not [key for key in annotations if key.endswith("-snippet")], f"{where} uses a snippet annotation"
    assert len(secrets) == 1 and None not in secrets, f"{name}: the Ingresses serve different certificates {secrets}"
    assert len({host for ingress in ingresses for host in ingress_hosts(ingress)}) == 1, f"{name}: several hosts"


def test_the_certificate_comes_from_cert_manager_through_the_expected_issuer(variant):
    name, expected, docs = variant
    certificates = of_kind(docs, "Certificate")
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in of_kind(docs, "NetworkPolicy")}
    ingresses = of_kind(docs, "Ingress")
    secret = ingresses[0]["spec"]["tls"][0]["secretName"]
    if expected["issuer"] is None:
        assert not certificates and not of_kind(docs, "ClusterIssuer"), f"{name}: cert-manager objects for a user's Secret"
        assert "acme-http01-solver-from-ingress" not in policies, f"{name}: solver admitted without ACME"
        return
    (certificate,) = certificates
    spec = certificate["spec"]
    assert spec["secretName"] == secret, f"{name}: the Certificate fills {spec['secretName']}, the Ingresses serve {secret}"
    assert spec["dnsNames"] == ingress_hosts(ingresses[0]), f"{name}: the certificate is for {spec['dnsNames']}"
    assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": expected["issuer"]}, (
        f"{name}: issuer {spec['issuerRef']}"
    )
    # No ingress-shim annotation besides: it would make each Ingress claim the Certificate too.
    for ingress in ingresses:
        annotations = ingress["metadata"].get("annotations", {})
        assert not [key for key in annotations if key.startswith("cert-manager.io/")], f"{name}: ingress-shim"
    # Let's Encrypt's HTTP-01 request reaches the solver pod past the default deny, from ingress-nginx only.
    assert policies.get("acme-http01-solver-from-ingress") == {
        "podSelector": {"matchLabels": {"acme.cert-manager.io/http01-solver": "true"}},
        "policyTypes": ["Ingress"],
        "ingress": [{
            "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ports": [{"protocol": "TCP", "port": 8089}],
        }],
    }, f"{name}: the ACME solver is not reachable from ingress-nginx alone"


def assert_lets_encrypt_http01_through_nginx(where, issuer):
    acme = issuer["spec"]["acme"]
    assert acme["server"] == ACME_SERVERS[issuer["metadata"]["name"]], f"{where}: ACME server {acme['server']}"
    assert acme["privateKeySecretRef"]["name"], f"{where}: no account key Secret"
    assert acme["solvers"] == [{"http01": {"ingress": {"ingressClassName": "nginx"}}}], f"{where}: solvers"


def test_cluster_issuers_are_lets_encrypt_staging_and_production_over_http01():
    issuers = {doc["metadata"]["name"]: doc for doc in of_kind(load(CLUSTER_ISSUERS), "ClusterIssuer")}
    assert set(issuers) == {STAGING, PRODUCTION}
    for name, issuer in issuers.items():
        assert "namespace" not in issuer["metadata"], f"{name} is cluster-scoped"
        assert_lets_encrypt_http01_through_nginx(f"{CLUSTER_ISSUERS}: {name}", issuer)
        assert "@" in issuer["spec"]["acme"].get("email", ""), f"{name}: no contact address to set"


def test_chart_creates_only_the_issuer_its_certificate_names(variant):
    name, expected, docs = variant
    issuers = of_kind(docs, "ClusterIssuer")
    if not expected.get("cluster_issuer"):
        assert not issuers, f"{name}: creates a ClusterIssuer it was not asked for"
        return
    (issuer,) = issuers
    assert issuer["metadata"]["name"] == expected["issuer"]
    assert_lets_encrypt_http01_through_nginx(name, issuer)


def test_every_certificate_names_an_issuer_that_is_installed():
    installed = {doc["metadata"]["name"] for doc in of_kind(load(CLUSTER_ISSUERS), "ClusterIssuer")}
    for name in VARIANTS:
        docs = load(name)
        available = installed | {doc["metadata"]["name"] for doc in of_kind(docs, "ClusterIssuer")}
        for certificate in of_kind(docs, "Certificate"):
            assert certificate["spec"]["issuerRef"]["name"] in available, f"{name}: unknown issuer"


def test_external_database_is_verified_against_the_mounted_ca_bundle(variant):
    # db_url and migrate_db_url name sslrootcert=/etc/conduit/db-ca/... with
    # sslmode=verify-full, so every wasmhost pod that opens them must have the
    # bundle there, from a ConfigMap that is not optional.
    name, expected, docs = variant
    clients = [api_workload(docs, "container")] if expected["runtime"] == "container" else []
    clients += [doc for doc in of_kind(docs, "Job") if doc["metadata"]["name"] == "conduit-migrate"]
    assert clients, f"{name}: no wasmhost pods"
    for doc in clients:
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
        mounts = [m for c in spec["containers"] for m in c.get("volumeMounts", []) if m["mountPath"] == DB_CA_DIR]
        if expected["database"] == "internal":
            assert not mounts, f"{where} mounts a database CA bundle for the in-cluster database"
            continue
        assert len(mounts) == len(spec["containers"]) == 1 and mounts[0].get("readOnly") is True, f"{where}: mount"
        config_map = volumes[mounts[0]["name"]].get("configMap", {})
        assert config_map.get("name") == DB_CA_CONFIGMAP and not config_map.get("optional"), f"{where}: {config_map}"


RUNTIME_CONFIG_FILE = "/etc/wasmhost/runtime-config/runtime-config.toml"


def test_runtime_config_reaches_either_runtime_from_one_secret(variant):
    """Spin's runtime configuration, where the variant gives one, is the
    Secret's runtime-config.toml: mounted read-only for wasmhost (with a
    writable directory for local stores), loaded by the spin-operator on
    SpinKube; absent everywhere else."""
    name, expected, docs = variant
    secret = expected.get("runtime_config")
    workload = api_workload(docs, expected["runtime"])
    if expected["runtime"] == "spinkube":
        got = workload["spec"].get("runtimeConfig")
        assert got == ({"loadFromSecret": secret} if secret else None), f"{name}: {got}"
        return
    spec = pod_spec(workload)
    container = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    if not secret:
        assert "WASMHOST_RUNTIME_CONFIG_FILE" not in env, name
        assert "runtime-config" not in volumes, name
        return
    assert env["WASMHOST_RUNTIME_CONFIG_FILE"] == RUNTIME_CONFIG_FILE, name
    mount = mounts["/etc/wasmhost/runtime-config"]
    assert mount.get("readOnly") is True, name
    assert volumes[mount["name"]]["secret"]["secretName"] == secret, name
    state = mounts[env["WASMHOST_STATE_DIR"]]
    assert "emptyDir" in volumes[state["name"]], name
    assert not state.get("readOnly"), name
