"""Offline checks of terraform/ that stand in for `terraform validate` and guard the repository.

Run by scripts/check-terraform with pytest (python-hcl2 parses the configuration).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from terraform_config import (
    ConfigDirectory,
    config_directories,
    parse_assignments,
)

TERRAFORM_ROOT = Path(__file__).resolve().parent.parent
REPOSITORY_ROOT = TERRAFORM_ROOT.parent
ENVIRONMENTS = ("dev", "prod")
ENVIRONMENT_FILES = ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "backend.hcl", "terraform.tfvars.example")
REQUIRED_OUTPUTS = ("cluster_name", "update_kubeconfig_command", "ingress_hostname")
SPINKUBE_CHART = TERRAFORM_ROOT / "modules/platform/charts/spinkube-runtime"
SHARED_SPINKUBE = REPOSITORY_ROOT.parent / "shared/spinkube"

EXACT_VERSION = re.compile(r"^\d+\.\d+\.\d+$")
PESSIMISTIC_VERSION = re.compile(r"^~> ?\d+\.\d+(\.\d+)?$")


# --- analysis helpers (also exercised directly by the negative tests at the bottom) -------------


def undeclared_variables(config: ConfigDirectory) -> set[str]:
    return config.referenced_variables() - set(config.variables)


def unused_variables(config: ConfigDirectory) -> set[str]:
    return set(config.variables) - config.referenced_variables()


def module_input_problems(config: ConfigDirectory) -> list[str]:
    problems = []
    for call in config.modules.values():
        module_path = config.local_module_path(call)
        if module_path is None:
            continue
        if not module_path.is_dir():
            problems.append(f"module.{call.name}: source {call.source} does not exist")
            continue
        module = ConfigDirectory.load(module_path)
        for unknown in sorted(call.inputs - set(module.variables)):
            problems.append(f"module.{call.name}: input {unknown} is not a variable of {call.source}")
        required = {name for name, variable in module.variables.items() if not variable.has_default}
        for missing in sorted(required - call.inputs):
            problems.append(f"module.{call.name}: required input {missing} of {call.source} is not passed")
    return problems


def module_output_problems(config: ConfigDirectory) -> list[str]:
    problems = []
    for module_name, output in sorted(config.referenced_module_outputs(), key=str):
        call = config.modules.get(module_name)
        if call is None:
            problems.append(f"module.{module_name} is referenced but not declared")
            continue
        module_path = config.local_module_path(call)
        if output is None or module_path is None:
            continue
        if output not in ConfigDirectory.load(module_path).outputs:
            problems.append(f"module.{module_name}.{output}: {call.source} has no such output")
    return problems


def secret_findings(path: Path, text: str) -> list[str]:
    """Credentials, account ids and private keys that must never be committed."""
    patterns = {
        "AWS access key id": r"\b(?:AKIA|ASIA|AROA|AIDA)[0-9A-Z]{16}\b",
        "AWS secret access key": r"(?i)aws_secret_access_key\s*[=:]\s*\S+",
        "private key": r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----",
        "AWS account id in an ARN": r"arn:aws[\w-]*:[\w-]*:[\w-]*:\d{12}:",
        "AWS account id": r"(?i)account[_-]?id\s*[=:]\s*\"?\d{12}\b",
    }
    return [f"{path}: {label}" for label, pattern in patterns.items() if re.search(pattern, text)]


def forbidden_path(path: str) -> bool:
    """State, plans, provider caches and real variable files."""
    name = Path(path).name
    return (
        ".terraform/" in f"/{path}"
        or name.endswith((".tfstate", ".tfplan"))
        or ".tfstate." in name
        or name.endswith(".tfvars")
        or name.endswith(".tfvars.json")
    )


# --- the configuration as committed --------------------------------------------------------------

CONFIGS = {path.relative_to(TERRAFORM_ROOT).as_posix(): path for path in config_directories(TERRAFORM_ROOT)}


def load(relative: str) -> ConfigDirectory:
    return ConfigDirectory.load(CONFIGS[relative])


def test_configuration_directories_are_the_two_environments_and_our_modules():
    assert {"environments/dev", "environments/prod"} <= set(CONFIGS)
    assert {"modules/cluster", "modules/platform", "modules/rds"} <= set(CONFIGS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_has_every_file(environment):
    missing = [name for name in ENVIRONMENT_FILES if not (TERRAFORM_ROOT / "environments" / environment / name).is_file()]
    assert missing == []


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_every_variable_used_is_declared(relative):
    assert undeclared_variables(load(relative)) == set()


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_every_declared_variable_is_used(relative):
    assert unused_variables(load(relative)) == set()


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_every_local_used_is_declared(relative):
    config = load(relative)
    assert config.referenced_locals() - config.locals == set()


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_inputs_passed_to_our_modules_exist_and_required_ones_are_passed(relative):
    assert module_input_problems(load(relative)) == []


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_every_module_output_referenced_exists(relative):
    assert module_output_problems(load(relative)) == []


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_every_resource_and_data_source_referenced_is_declared(relative):
    config = load(relative)
    assert config.referenced_resources() - config.resources == set()
    assert config.referenced_data_sources() - config.data_sources == set()


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_terraform_and_provider_versions_are_pinned(relative):
    config = load(relative)
    assert config.required_version is not None and PESSIMISTIC_VERSION.match(config.required_version)
    for name, requirement in config.required_providers.items():
        assert requirement["source"] == f"hashicorp/{name}"
        assert PESSIMISTIC_VERSION.match(requirement["version"]), f"{name}: {requirement['version']}"


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_every_provider_a_directory_uses_is_required(relative):
    config = load(relative)
    used = {resource_type.split("_", 1)[0] for resource_type in config.resource_types()}
    assert used - set(config.required_providers) == set()


@pytest.mark.parametrize("relative", sorted(CONFIGS))
def test_registry_modules_are_pinned_to_exact_versions(relative):
    for call in load(relative).modules.values():
        if call.source.startswith(("./", "../")):
            assert call.version is None, f"module.{call.name}: local modules take no version"
        else:
            assert call.version is not None and EXACT_VERSION.match(call.version), f"module.{call.name}: {call.version}"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_uses_an_s3_backend_with_locking(environment):
    directory = TERRAFORM_ROOT / "environments" / environment
    assert load(f"environments/{environment}").backends == ["s3"]
    settings = parse_assignments(directory / "backend.hcl")
    assert {"bucket", "key", "region"} <= set(settings)
    assert settings.get("encrypt") is True
    assert settings.get("use_lockfile") is True or "dynamodb_table" in settings
    assert environment in settings["key"], "each environment needs its own state key"
    assert not re.search(r"\d{12}", settings["bucket"]), "no account id in the bucket name"


def test_environments_keep_their_state_apart():
    keys = {parse_assignments(TERRAFORM_ROOT / "environments" / env / "backend.hcl")["key"] for env in ENVIRONMENTS}
    assert len(keys) == len(ENVIRONMENTS)


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_outputs_what_the_readme_promises(environment):
    outputs = load(f"environments/{environment}").outputs
    assert set(REQUIRED_OUTPUTS) <= outputs


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_tfvars_example_sets_only_declared_variables(environment):
    directory = TERRAFORM_ROOT / "environments" / environment
    assigned = set(parse_assignments(directory / "terraform.tfvars.example"))
    config = load(f"environments/{environment}")
    assert assigned - set(config.variables) == set()
    required = {name for name, variable in config.variables.items() if not variable.has_default}
    assert required - assigned == set(), "the example must show every required variable"


def test_prod_is_zone_redundant_and_dev_is_cheap():
    def cluster_inputs(environment):
        document = load(f"environments/{environment}").modules["cluster"]
        main = parse_module_body(TERRAFORM_ROOT / "environments" / environment / "main.tf", document.name)
        return main

    assert cluster_inputs("dev")["single_nat_gateway"] is True
    assert cluster_inputs("prod")["single_nat_gateway"] is False
    prod_rds = parse_module_body(TERRAFORM_ROOT / "environments/prod/main.tf", "rds")
    assert prod_rds["multi_az"] is True and prod_rds["deletion_protection"] is True


def parse_module_body(path: Path, name: str) -> dict:
    import hcl2

    with path.open(encoding="utf-8") as handle:
        document = hcl2.load(handle)
    for block in document.get("module", []):
        if name in block:
            return {key: value[0] if isinstance(value, list) and len(value) == 1 else value for key, value in block[name].items()}
    raise AssertionError(f"module {name} not found in {path}")


# --- SpinKube chart -------------------------------------------------------------------------------


def test_spinkube_chart_wires_the_executor_to_the_runtime_class_the_shim_creates():
    values = yaml.safe_load((SPINKUBE_CHART / "values.yaml").read_text())
    assert values["shim"]["runtimeClassName"] == "wasmtime-spin-v2"
    assert values["shim"]["nodeSelector"] == {"spin": "true"}
    cluster_main = (TERRAFORM_ROOT / "modules/cluster/main.tf").read_text()
    assert 'labels = merge({ spin = "true" }' in cluster_main, "nodes must carry the label the Shim selects"
    executor = (SPINKUBE_CHART / "templates/executor.yaml").read_text()
    assert "runtimeClassName: {{ $.Values.shim.runtimeClassName }}" in executor
    platform_outputs = (TERRAFORM_ROOT / "modules/platform/outputs.tf").read_text()
    assert f'value       = "{values["shim"]["runtimeClassName"]}"' in platform_outputs


def test_spinkube_chart_crds_are_valid_crds():
    for crd_file in sorted((SPINKUBE_CHART / "crds").glob("*.yaml")):
        documents = [document for document in yaml.safe_load_all(crd_file.read_text()) if document]
        assert len(documents) == 1
        crd = documents[0]
        assert crd["kind"] == "CustomResourceDefinition"
        assert crd["spec"]["group"] == "core.spinkube.dev"


@pytest.mark.skipif(not SHARED_SPINKUBE.is_dir(), reason="shared/spinkube is not beside the repository")
def test_spinkube_chart_crds_are_the_shared_ones():
    for shared in sorted(SHARED_SPINKUBE.glob("*.yaml")):
        vendored = SPINKUBE_CHART / "crds" / shared.name
        assert vendored.is_file(), f"{shared.name} missing from the chart"
        assert vendored.read_bytes() == shared.read_bytes(), f"{shared.name} differs from shared/spinkube"


# --- nothing secret or stateful in the repository -------------------------------------------------


def repository_files() -> list[str]:
    result = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY_ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return [line for line in result.stdout.splitlines() if line]


def test_no_state_plans_provider_caches_or_real_tfvars_in_the_repository():
    assert [path for path in repository_files() if forbidden_path(path)] == []


def test_no_credentials_or_account_ids_in_terraform():
    findings = []
    for relative in repository_files():
        if not (relative.startswith("terraform/") or relative == "scripts/check-terraform"):
            continue
        path = REPOSITORY_ROOT / relative
        if path.is_file():
            findings += secret_findings(path, path.read_text(encoding="utf-8", errors="replace"))
    assert findings == []


def test_gitignore_keeps_terraform_caches_and_state_out():
    for path in ("terraform/environments/dev/.terraform/providers/x", "terraform/environments/prod/terraform.tfstate",
                 "terraform/environments/dev/terraform.tfvars", "terraform/environments/dev/plan.tfplan"):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPOSITORY_ROOT)
        assert ignored.returncode == 0, f"{path} is not gitignored"
    kept = subprocess.run(["git", "check-ignore", "-q", "terraform/environments/dev/terraform.tfvars.example"], cwd=REPOSITORY_ROOT)
    assert kept.returncode == 1, "the tfvars example must stay tracked"


# --- the checks themselves catch what they claim to -----------------------------------------------


def write_config(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_analysis_reports_an_undeclared_and_an_unused_variable(tmp_path):
    config = ConfigDirectory.load(write_config(tmp_path / "env", {
        "main.tf": 'locals {\n  name = "x-${var.missing}"\n}\n',
        "variables.tf": 'variable "unused" {\n  type = string\n}\n',
    }))
    assert undeclared_variables(config) == {"missing"}
    assert unused_variables(config) == {"unused"}


def test_analysis_reports_unknown_and_missing_module_inputs_and_unknown_outputs(tmp_path):
    write_config(tmp_path / "modules/thing", {
        "variables.tf": 'variable "size" {\n  type = number\n}\n\nvariable "tags" {\n  type    = map(string)\n  default = {}\n}\n',
        "outputs.tf": 'output "id" {\n  value = "x"\n}\n',
    })
    config = ConfigDirectory.load(write_config(tmp_path / "env", {
        "main.tf": 'module "thing" {\n  source = "../modules/thing"\n  colour = "red"\n}\n\n'
                   'output "a" {\n  value = module.thing.id\n}\n\noutput "b" {\n  value = module.thing.arn\n}\n\n'
                   'output "c" {\n  value = module.other.id\n}\n',
    }))
    assert module_input_problems(config) == [
        "module.thing: input colour is not a variable of ../modules/thing",
        "module.thing: required input size of ../modules/thing is not passed",
    ]
    assert module_output_problems(config) == [
        "module.other is referenced but not declared",
        "module.thing.arn: ../modules/thing has no such output",
    ]


def test_analysis_reports_references_to_undeclared_resources(tmp_path):
    config = ConfigDirectory.load(write_config(tmp_path / "env", {
        "main.tf": 'resource "aws_iam_role" "real" {\n  name = "r"\n}\n\n'
                   'output "x" {\n  value = [aws_iam_role.real.arn, aws_iam_role.ghost.arn, data.aws_partition.none.partition]\n}\n',
    }))
    assert config.referenced_resources() - config.resources == {("aws_iam_role", "ghost")}
    assert config.referenced_data_sources() - config.data_sources == {("aws_partition", "none")}


def test_secret_scan_flags_keys_and_account_ids_but_not_placeholders():
    fake_key = "AKIA" + "ABCDEFGHIJKLMNOP"
    fake_arn = "arn:aws:iam::" + "123456789012" + ":role/admin"
    assert secret_findings(Path("a.tf"), f'access_key = "{fake_key}"') == ["a.tf: AWS access key id"]
    assert secret_findings(Path("b.tf"), f'principal = "{fake_arn}"') == ["b.tf: AWS account id in an ARN"]
    assert secret_findings(Path("c.tf"), 'principal = "arn:aws:iam::<account-id>:role/admin"') == []


def test_forbidden_paths_cover_state_plans_caches_and_real_tfvars():
    assert forbidden_path("terraform/environments/dev/terraform.tfstate")
    assert forbidden_path("terraform/environments/dev/terraform.tfstate.backup")
    assert forbidden_path("terraform/environments/dev/.terraform/modules/modules.json")
    assert forbidden_path("terraform/environments/dev/prod.tfvars")
    assert not forbidden_path("terraform/environments/dev/terraform.tfvars.example")
    assert not forbidden_path("terraform/environments/dev/.terraform.lock.hcl")


# --- every checkov skip carries its reason ---------------------------------------------------------

CHECKOV_SKIP = re.compile(r"checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def unjustified_checkov_skips(text: str) -> list[str]:
    """IDs of `checkov:skip` comments without a reason of at least a few words."""
    return [
        check_id
        for check_id, reason in CHECKOV_SKIP.findall(text)
        if len((reason or "").split()) < 4
    ]


def test_every_checkov_skip_is_justified_inline():
    skips = 0
    for file in sorted(TERRAFORM_ROOT.rglob("*.tf")):
        text = file.read_text(encoding="utf-8")
        skips += len(CHECKOV_SKIP.findall(text))
        assert unjustified_checkov_skips(text) == [], file
    assert skips > 0


def test_unjustified_checkov_skip_is_reported():
    assert unjustified_checkov_skips("#checkov:skip=CKV_AWS_1\n#checkov:skip=CKV_AWS_2:ok\n") == ["CKV_AWS_1", "CKV_AWS_2"]
    assert unjustified_checkov_skips("#checkov:skip=CKV_AWS_3:dev is disposable by design\n") == []


# --- the Secret Terraform writes is the one the Kubernetes manifests read --------------------------

K8S_BASE = REPOSITORY_ROOT / "k8s/base"


def secret_keys_read_by_manifests(name: str) -> set[str]:
    keys = set()

    def walk(node):
        if isinstance(node, dict):
            reference = node.get("secretKeyRef")
            if isinstance(reference, dict) and reference.get("name") == name and "key" in reference:
                keys.add(reference["key"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for manifest in sorted(K8S_BASE.rglob("*.yaml")):
        for document in yaml.safe_load_all(manifest.read_text(encoding="utf-8")):
            walk(document)
    return keys


def terraform_app_secret_keys() -> set[str]:
    resource = load("modules/platform").documents[TERRAFORM_ROOT / "modules/platform/main.tf"]["resource"]
    for block in resource:
        if "kubernetes_secret_v1" in block:
            secret = block["kubernetes_secret_v1"]["app"]
            data = secret["data"][0] if isinstance(secret["data"], list) else secret["data"]
            return {key for key in data if not key.startswith("__")}
    raise AssertionError("kubernetes_secret_v1.app not found")


@pytest.mark.skipif(not K8S_BASE.is_dir(), reason="k8s/base is not in this checkout")
def test_app_secret_has_every_key_the_kubernetes_manifests_read():
    read = secret_keys_read_by_manifests("conduit-secrets")
    assert read, "the manifests read no key of conduit-secrets"
    assert read - terraform_app_secret_keys() == set()


# --- the local SpinKube chart renders, and what it renders fits the CRD schemas ---------------------

HELM = os.environ.get("HELM_BIN")


def render_spinkube_chart(*arguments: str) -> list[dict]:
    result = subprocess.run(
        [HELM, "template", "spinkube-runtime", str(SPINKUBE_CHART), *arguments],
        check=True,
        capture_output=True,
        text=True,
    )
    return [document for document in yaml.safe_load_all(result.stdout) if document]


def crd_schema(kind: str) -> dict:
    for crd_file in (SPINKUBE_CHART / "crds").glob("*.yaml"):
        crd = yaml.safe_load(crd_file.read_text())
        if crd["spec"]["names"]["kind"] == kind:
            return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind}")


@pytest.mark.skipif(HELM is None, reason="HELM_BIN not set (scripts/check-terraform sets it)")
def test_spinkube_chart_passes_helm_lint_strict():
    subprocess.run([HELM, "lint", "--strict", str(SPINKUBE_CHART)], check=True, capture_output=True)


@pytest.mark.skipif(HELM is None, reason="HELM_BIN not set (scripts/check-terraform sets it)")
def test_spinkube_chart_renders_a_shim_and_an_executor_per_namespace():
    digest = "0" * 64
    documents = render_spinkube_chart(
        "--set-json", f'shim.sha256={{"x86_64":"{digest}"}}',
        "--set-json", 'executor.namespaces=["conduit","staging"]',
    )
    kinds = sorted((document["kind"], document["metadata"].get("namespace")) for document in documents)
    assert kinds == [("Shim", None), ("SpinAppExecutor", "conduit"), ("SpinAppExecutor", "staging")]
    shim = next(document for document in documents if document["kind"] == "Shim")
    platforms = {platform["arch"]: platform for platform in shim["spec"]["fetchStrategy"]["platforms"]}
    assert platforms["x86_64"]["sha256"] == digest
    assert "sha256" not in platforms["aarch64"]
    assert all("/v0.24.0/" in platform["location"] for platform in platforms.values())
    # The node installer registers the binary containerd-shim-spin-v2 as runtime "spin-v2".
    assert shim["spec"]["runtimeClass"] == {"name": "wasmtime-spin-v2", "handler": "spin-v2"}
    schema = crd_schema("SpinAppExecutor")
    for executor in (document for document in documents if document["kind"] == "SpinAppExecutor"):
        jsonschema.validate(executor, schema)
        assert executor["spec"]["deploymentConfig"]["runtimeClassName"] == shim["spec"]["runtimeClass"]["name"]


# --- HTTPS at the public endpoint, verified TLS to the database --------------------------------------

PLATFORM_MAIN = TERRAFORM_ROOT / "modules/platform/main.tf"
NLB_TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-"


def hcl_literal(expression: str, function: str):
    """The first literal argument of `function(...)` in a python-hcl2 expression string."""
    import ast

    text = expression.strip()
    prefix = "${" + function + "("
    assert text.startswith(prefix), text[:80]
    body = text[len(prefix):]
    depth = 0
    for index, character in enumerate(body):
        depth += character in "{[("
        depth -= character in "}])"
        if depth == 0:
            return ast.literal_eval(body[: index + 1])
    raise AssertionError(f"no literal in {expression[:80]}")


def platform_locals() -> dict:
    document = load("modules/platform").documents[PLATFORM_MAIN]
    return {
        key: value[0] if isinstance(value, list) and len(value) == 1 else value
        for block in document["locals"]
        for key, value in block.items()
        if key not in ("__start_line__", "__end_line__")
    }


def ingress_nginx_values() -> dict:
    document = load("modules/platform").documents[PLATFORM_MAIN]
    for block in document["resource"]:
        release = block.get("helm_release", {}).get("ingress_nginx")
        if release:
            (values,) = release["values"]
            return hcl_literal(values[0] if isinstance(values, list) else values, "yamlencode")
    raise AssertionError("helm_release.ingress_nginx not found")


def variable_default(relative: str, name: str):
    for file, document in load(relative).documents.items():
        for block in document.get("variable", []):
            if name in block:
                default = block[name].get("default")
                return default[0] if isinstance(default, list) and len(default) == 1 else default
    raise AssertionError(f"variable {name} not found in {relative}")


def test_nlb_terminates_tls_with_the_acm_certificate_and_reencrypts_to_ingress_nginx():
    annotations = hcl_literal(platform_locals()["ingress_service_annotations"], "merge")
    assert annotations[ANNOTATION + "type"] == "nlb"
    assert annotations[ANNOTATION + "ssl-cert"] == "${var.ingress_certificate_arn}"
    assert annotations[ANNOTATION + "ssl-ports"] == "443", "only 443 is a TLS listener; 80 redirects"
    assert annotations[ANNOTATION + "ssl-negotiation-policy"] == "${var.ingress_ssl_policy}"
    assert variable_default("modules/platform", "ingress_ssl_policy") == NLB_TLS_POLICY
    # TLS again to ingress-nginx: it sees HTTPS as HTTPS, so ssl-redirect and HSTS hold behind the NLB.
    assert annotations[ANNOTATION + "backend-protocol"] == "ssl"
    service = ingress_nginx_values()["controller"]["service"]
    assert service["annotations"] == "${local.ingress_service_annotations}"
    assert service["ports"] == {"http": 80, "https": 443}, "the NLB must listen on 80 and 443 only"
    assert service["targetPorts"] == {"http": "http", "https": "https"}, "443 must reach the controller's TLS port"


def test_ingress_nginx_sends_hsts_and_speaks_only_tls_1_2_and_1_3():
    config = ingress_nginx_values()["controller"]["config"]
    assert config["ssl-redirect"] == "true"
    assert config["hsts"] == "true" and int(config["hsts-max-age"]) >= 31536000
    assert config["ssl-protocols"] == "TLSv1.2 TLSv1.3"
    assert not [key for key in config if "snippet" in key], "snippets are not how this controller is configured"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_environment_puts_the_public_endpoint_certificate_on_the_nlb(environment):
    main = TERRAFORM_ROOT / "environments" / environment / "main.tf"
    platform = parse_module_body(main, "platform")
    endpoint = parse_module_body(main, "public_endpoint")
    assert platform["ingress_certificate_arn"] == "${module.public_endpoint.certificate_arn}"
    assert endpoint["load_balancer_hostname"] == "${module.platform.ingress_hostname}"
    assert endpoint["domain_name"] == "${var.domain_name}"
    assert endpoint["route53_zone_id"] == "${var.route53_zone_id}"
    assert endpoint["certificate_arn"] == "${var.ingress_certificate_arn}"


def test_public_endpoint_validates_through_route53_or_takes_an_existing_certificate():
    text = (TERRAFORM_ROOT / "modules/public-endpoint/main.tf").read_text()
    assert 'validation_method = "DNS"' in text
    assert "aws_acm_certificate_validation" in text, "the NLB must never get a certificate still pending validation"
    variables = (TERRAFORM_ROOT / "modules/public-endpoint/variables.tf").read_text()
    assert "var.route53_zone_id != null || var.certificate_arn != null" in variables


def component_patch_values(path: Path) -> list:
    component = yaml.safe_load(path.read_text())
    values = []
    for patch in component["patches"]:
        for operation in yaml.safe_load(patch["patch"]):
            value = operation["value"]
            values.extend(value if isinstance(value, list) else [value])
    return values


@pytest.mark.skipif(not (REPOSITORY_ROOT / "k8s").is_dir(), reason="k8s/ is not in this checkout")
def test_database_urls_verify_the_server_against_the_bundle_the_pods_mount():
    assert variable_default("modules/rds", "ssl_mode") == "verify-full"
    assert parse_module_body(TERRAFORM_ROOT / "environments/prod/main.tf", "rds").get("ssl_mode", "verify-full") == "verify-full"
    outputs = (TERRAFORM_ROOT / "modules/rds/outputs.tf").read_text()
    assert outputs.count("/conduit?${local.tls_query}") == 2, "both URLs carry the TLS options"
    root_cert = variable_default("modules/rds", "ssl_root_cert_path")
    names = platform_locals()
    config_map, key = names["database_ca_config_map"], names["database_ca_key"]
    directory, _, file_name = root_cert.rpartition("/")
    assert file_name == key, f"sslrootcert names {file_name}, the ConfigMap holds {key}"
    # The Kustomize component and the Helm chart mount that ConfigMap where sslrootcert points.
    values = component_patch_values(REPOSITORY_ROOT / "k8s/components/database-ca/kustomization.yaml")
    assert {"name": "db-ca", "configMap": {"name": config_map}} in values
    assert {"name": "db-ca", "mountPath": directory, "readOnly": True} in values
    chart = yaml.safe_load((REPOSITORY_ROOT / "k8s/helm/conduit/values.yaml").read_text())
    assert chart["database"]["external"]["caBundleConfigMap"] == config_map
    templates = (REPOSITORY_ROOT / "k8s/helm/conduit/templates/api-deployment.yaml").read_text()
    assert f"mountPath: {directory}" in templates


# --- backups --------------------------------------------------------------------------------------


def plain(value):
    """python-hcl2 wraps attribute values in one-element lists; blocks stay lists of dicts."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        if len(value) == 1 and not isinstance(value[0], dict):
            return plain(value[0])
        return [plain(item) for item in value]
    return value


def resource_bodies(path: Path) -> dict:
    import hcl2

    with path.open(encoding="utf-8") as handle:
        document = hcl2.load(handle)
    bodies = {}
    for block in document.get("resource", []):
        for kind, named in block.items():
            for name, body in named.items():
                bodies[(kind, name)] = plain(body)
    return bodies


def test_rds_keeps_point_in_time_recovery_and_its_backups_after_deletion():
    (instance,) = [body for (kind, _), body in resource_bodies(TERRAFORM_ROOT / "modules/rds/main.tf").items()
                   if kind == "aws_db_instance"]
    assert instance["backup_retention_period"] == "${var.backup_retention_days}"
    assert instance["delete_automated_backups"] is False
    assert variable_default("modules/rds", "skip_final_snapshot") is False
    prod = parse_module_body(TERRAFORM_ROOT / "environments/prod/main.tf", "rds")
    assert prod["backup_retention_days"] >= 7 and prod["skip_final_snapshot"] is False


def test_backup_bucket_is_private_encrypted_versioned_expiring_and_written_only_by_the_cronjob():
    bodies = resource_bodies(TERRAFORM_ROOT / "modules/backups/main.tf")
    block = bodies[("aws_s3_bucket_public_access_block", "backups")]
    assert all(block[key] is True for key in
               ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    assert bodies[("aws_s3_bucket_versioning", "backups")]["versioning_configuration"][0]["status"] == "Enabled"
    (rule,) = bodies[("aws_s3_bucket_server_side_encryption_configuration", "backups")]["rule"]
    assert rule["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    rules = bodies[("aws_s3_bucket_lifecycle_configuration", "backups")]["rule"]
    assert any(r.get("expiration") for r in rules) and any(r.get("noncurrent_version_expiration") for r in rules)
    text = (TERRAFORM_ROOT / "modules/backups/main.tf").read_text()
    assert "system:serviceaccount:${var.namespace}:${var.service_account}" in text
    chart = yaml.safe_load((REPOSITORY_ROOT / "k8s/helm/conduit/values.yaml").read_text()) \
        if (REPOSITORY_ROOT / "k8s").is_dir() else None
    if chart is not None:
        assert variable_default("modules/backups", "service_account") == "conduit-backup"
        assert variable_default("modules/backups", "prefix") == chart["backup"]["s3"]["prefix"]
    for environment in ENVIRONMENTS:
        assert {"backup_bucket", "backup_role_arn"} <= load(f"environments/{environment}").outputs
