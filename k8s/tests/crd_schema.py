"""Validate custom resources (SpinKube's, Prometheus Operator's) against
their CRDs' openAPIV3Schema.

The API server prunes unknown fields of structural schemas (or rejects them
with --validate=strict); plain JSON Schema allows them. To catch a misspelt
field offline, every object schema that lists properties (and does not opt
out with x-kubernetes-preserve-unknown-fields) gets additionalProperties:
false before validating.

Usage: crd_schema.py CRD_DIR RENDERED.yaml...
Checks the objects of every API group CRD_DIR defines; objects of other
groups are left to other checks.
"""

import copy
import pathlib
import sys

import jsonschema
import yaml


def strict_schema(schema):
    """A copy of an OpenAPI v3 schema that rejects unknown properties."""
    schema = copy.deepcopy(schema)

    def visit(node):
        if isinstance(node, dict):
            # The API server's patterns are Go (RE2) syntax, which allows a
            # flag group after the anchor; Python's re wants it first, and
            # both mean the same.
            pattern = node.get("pattern")
            if isinstance(pattern, str) and pattern.startswith("^(?i)"):
                node["pattern"] = "(?i)^" + pattern[len("^(?i)"):]
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema)
    return schema


def load_validators(crd_dir):
    """{(apiVersion, kind): validator} for every served version of every CRD."""
    validators = {}
    for path in sorted(pathlib.Path(crd_dir).glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group = crd["spec"]["group"]
            kind = crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if not version.get("served", True):
                    continue
                schema = strict_schema(version["schema"]["openAPIV3Schema"])
                jsonschema.Draft7Validator.check_schema(schema)
                validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    if not validators:
        raise SystemExit(f"no CustomResourceDefinitions found in {crd_dir}")
    return validators


def errors_of(validators, doc):
    """Messages for one custom resource; a missing schema is an error too."""
    key = (doc.get("apiVersion"), doc.get("kind"))
    validator = validators.get(key)
    if validator is None:
        return [f"no CRD schema for {key[0]} {key[1]}"]
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))
    ]


def main(argv):
    crd_dir, *files = argv
    validators = load_validators(crd_dir)
    groups = {api_version.split("/")[0] for api_version, _ in validators}
    failed = checked = 0
    for name in files:
        for doc in yaml.safe_load_all(pathlib.Path(name).read_text()):
            if not doc or doc.get("apiVersion", "").split("/")[0] not in groups:
                continue
            checked += 1
            problems = errors_of(validators, doc)
            label = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
            if problems:
                failed += 1
                for problem in problems:
                    print(f"FAIL {label}: {problem}")
            else:
                print(f"ok   {label}")
    print(f"{checked} custom resources checked, {failed} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
