"""Static model of our Terraform configuration, for the checks `terraform validate` would make.

`terraform validate` needs every provider and registry module downloaded, which CI cannot do, so
this module parses each configuration directory with python-hcl2 and answers the questions the
tests ask: which variables, locals, outputs, modules and resources a directory declares, and
which of them its expressions reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import hcl2

# Arguments of a `module` block that are Terraform meta-arguments, not inputs of the module.
MODULE_META_ARGUMENTS = {"source", "version", "count", "for_each", "providers", "depends_on"}

# Resource type prefixes of the providers we use; a reference `aws_x.name` is checked only when
# its type has one of these prefixes (other dotted words in expressions are attribute paths).
PROVIDER_PREFIXES = ("aws_", "kubernetes_", "helm_", "random_", "tls_", "time_")

VARIABLE_REFERENCE = re.compile(r"(?<![\w.])var\.([A-Za-z_][\w-]*)")
LOCAL_REFERENCE = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")
MODULE_REFERENCE = re.compile(r"(?<![\w.])module\.([A-Za-z_][\w-]*)(?:\[[^\]]*\])?(?:\.([A-Za-z_][\w-]*))?")
DATA_REFERENCE = re.compile(r"(?<![\w.])data\.([a-z][a-z0-9_]*)\.([A-Za-z_][\w-]*)")
RESOURCE_REFERENCE = re.compile(r"(?<![\w.])([a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z_][\w-]*)")

SKIPPED_KEYS = {"__start_line__", "__end_line__"}


def expression_strings(node):
    """Yield every string in a parsed document that holds an expression (`${...}`)."""
    if isinstance(node, str):
        if "${" in node:
            yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            if key in SKIPPED_KEYS:
                continue
            # python-hcl2 keeps object keys that are expressions (e.g. `(var.x) = 1`) as keys.
            if "${" in key:
                yield key
            yield from expression_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from expression_strings(item)


def _unwrap(value):
    """python-hcl2 wraps attribute values in one-element lists."""
    return value[0] if isinstance(value, list) and len(value) == 1 else value


@dataclass
class Variable:
    name: str
    has_default: bool


@dataclass
class ModuleCall:
    name: str
    source: str
    version: str | None
    inputs: set[str]
    file: Path


@dataclass
class ConfigDirectory:
    """Everything one Terraform configuration directory (an environment or a module) declares."""

    path: Path
    documents: dict[Path, dict] = field(default_factory=dict)
    variables: dict[str, Variable] = field(default_factory=dict)
    locals: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)
    modules: dict[str, ModuleCall] = field(default_factory=dict)
    resources: set[tuple[str, str]] = field(default_factory=set)
    data_sources: set[tuple[str, str]] = field(default_factory=set)
    required_providers: dict[str, dict] = field(default_factory=dict)
    required_version: str | None = None
    backends: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "ConfigDirectory":
        config = cls(path=path)
        for file in sorted(path.glob("*.tf")):
            with file.open(encoding="utf-8") as handle:
                document = hcl2.load(handle)
            config.documents[file] = document
            config._collect(file, document)
        return config

    def _collect(self, file: Path, document: dict) -> None:
        for block in document.get("variable", []):
            for name, body in block.items():
                self.variables[name] = Variable(name=name, has_default="default" in body)
        for block in document.get("locals", []):
            self.locals.update(key for key in block if key not in SKIPPED_KEYS)
        for block in document.get("output", []):
            self.outputs.update(block)
        for block in document.get("module", []):
            for name, body in block.items():
                self.modules[name] = ModuleCall(
                    name=name,
                    source=_unwrap(body["source"]),
                    version=_unwrap(body["version"]) if "version" in body else None,
                    inputs={key for key in body if key not in MODULE_META_ARGUMENTS | SKIPPED_KEYS},
                    file=file,
                )
        for block in document.get("resource", []):
            for resource_type, instances in block.items():
                self.resources.update((resource_type, name) for name in instances if name not in SKIPPED_KEYS)
        for block in document.get("data", []):
            for data_type, instances in block.items():
                self.data_sources.update((data_type, name) for name in instances if name not in SKIPPED_KEYS)
        for block in document.get("terraform", []):
            if "required_version" in block:
                self.required_version = _unwrap(block["required_version"])
            for providers in block.get("required_providers", []):
                for name, requirement in providers.items():
                    if name not in SKIPPED_KEYS:
                        self.required_providers[name] = _unwrap(requirement)
            for backend in block.get("backend", []):
                self.backends.extend(key for key in backend if key not in SKIPPED_KEYS)

    def expressions(self):
        for file, document in self.documents.items():
            for expression in expression_strings(document):
                yield file, expression

    def referenced_variables(self) -> set[str]:
        return {match for _, text in self.expressions() for match in VARIABLE_REFERENCE.findall(text)}

    def referenced_locals(self) -> set[str]:
        return {match for _, text in self.expressions() for match in LOCAL_REFERENCE.findall(text)}

    def referenced_module_outputs(self) -> set[tuple[str, str | None]]:
        return {
            (module, output or None)
            for _, text in self.expressions()
            for module, output in MODULE_REFERENCE.findall(text)
        }

    def referenced_data_sources(self) -> set[tuple[str, str]]:
        return {match for _, text in self.expressions() for match in DATA_REFERENCE.findall(text)}

    def referenced_resources(self) -> set[tuple[str, str]]:
        references = set()
        for _, text in self.expressions():
            # Data source references are checked separately; drop them so `data.aws_x.y` is not
            # read as a reference to resource `aws_x.y`.
            text_without_data = DATA_REFERENCE.sub("", text)
            for resource_type, name in RESOURCE_REFERENCE.findall(text_without_data):
                if resource_type.startswith(PROVIDER_PREFIXES):
                    references.add((resource_type, name))
        return references

    def resource_types(self) -> set[str]:
        return {resource_type for resource_type, _ in self.resources | self.data_sources}

    def local_module_path(self, call: ModuleCall) -> Path | None:
        if call.source.startswith(("./", "../")):
            return (self.path / call.source).resolve()
        return None


def config_directories(root: Path) -> list[Path]:
    """Every directory under root that holds .tf files, except provider/module download caches."""
    return sorted({file.parent for file in root.rglob("*.tf") if ".terraform" not in file.parts})


def parse_assignments(path: Path) -> dict:
    """Top-level attributes of a .tfvars-style or backend .hcl file."""
    with path.open(encoding="utf-8") as handle:
        document = hcl2.load(handle)
    return {key: _unwrap(value) for key, value in document.items() if key not in SKIPPED_KEYS}
