#!/usr/bin/env python3
"""Proves that docker/Dockerfile builds the software the way the project does.

The image must run exactly what the tests exercise, so its build may not drift
from the other places that say how to build:

* spin.toml's `[component.*.build]` commands and `source` paths (what `spin
  build` and SpinKube's tooling use), which always exist;
* scripts/test and scripts/stack (the README's test and run commands, with
  their shared scripts/lib/common.sh) and the
  root README.md, whenever they exist.

A cargo invocation is compared by what decides its output: the profile, the
target, the packages and every other flag except the purely presentational
ones (quiet, verbose, colour, lock-file strictness, target directory). For
each package the Dockerfile builds, every other place that builds it must
use the same profile, target and flags, and the Dockerfile must build every
component spin.toml names into the path spin.toml loads it from.

Usage: check_build_commands.py [--root DIR] [--dockerfile FILE]
Prints one `ok`/`not ok` line per check; exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

# Flags that change how cargo talks or where it writes, not what it builds.
PRESENTATIONAL_FLAGS = {"-q", "--quiet", "-v", "-vv", "--verbose", "--locked", "--frozen", "--offline"}
PRESENTATIONAL_VALUE_FLAGS = {"--target-dir", "--message-format", "--color", "-j", "--jobs"}

# Characters that separate shell commands on one logical line.
COMMAND_SEPARATORS = re.compile(r"&&|\|\||;|\||\n")


@dataclass(frozen=True)
class Build:
    """One `cargo build` invocation, reduced to what determines its output."""

    origin: str
    text: str
    profile: str
    target: str
    packages: frozenset[str]
    other_flags: tuple[str, ...]
    # `--target-dir`, when given: a build into a directory of its own (a
    # test fixture) makes none of the files the image or the stack use.
    target_dir: str | None = None

    @property
    def signature(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.profile, self.target, self.other_flags)

    def describe_signature(self) -> str:
        flags = " ".join(self.other_flags) or "no other flags"
        return f"profile {self.profile}, target {self.target}, {flags}"


@dataclass
class Results:
    passed: int = 0
    failed: int = 0
    lines: list[str] = field(default_factory=list)

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"not ok - {name}")
            for problem in problems:
                print(f"    {problem}")
        else:
            self.passed += 1
            print(f"ok - {name}")


class WorkspaceError(Exception):
    pass


def workspace_packages(root: Path) -> tuple[set[str], set[str]]:
    """Names of all workspace members and of the default members."""
    manifest = tomllib.loads((root / "Cargo.toml").read_text())
    workspace = manifest.get("workspace", {})

    def names(paths: list[str]) -> set[str]:
        result = set()
        for member in paths:
            for member_dir in sorted(root.glob(member)):
                member_manifest = member_dir / "Cargo.toml"
                if member_manifest.is_file():
                    result.add(tomllib.loads(member_manifest.read_text())["package"]["name"])
        return result

    members = names(workspace.get("members", []))
    defaults = names(workspace.get("default-members", [])) or members
    return members, defaults


def shell_variables(text: str) -> dict[str, str]:
    """Simple assignments (NAME=value, export/readonly/local NAME=value,
    : "${NAME:=value}") so that `--target "$WASM_TARGET"` can be compared."""
    variables: dict[str, str] = {}
    assignment = re.compile(
        r"^\s*(?:export\s+|readonly\s+|local\s+|declare\s+(?:-\w+\s+)*)?([A-Za-z_][A-Za-z0-9_]*)=(\S*)\s*(?:#.*)?$"
    )
    default_assignment = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?[=-]([^}]*)\}")
    for line in text.splitlines():
        match = assignment.match(line)
        if match:
            value = match.group(2)
            try:
                words = shlex.split(value)
            except ValueError:
                continue
            if len(words) == 1:
                inner = default_assignment.fullmatch(words[0])
                if inner and inner.group(1) == match.group(1):
                    value = inner.group(2)
                else:
                    value = words[0]
                if "$" not in value and "(" not in value:
                    variables[match.group(1)] = value
        for inner in default_assignment.finditer(line):
            if line.lstrip().startswith(":"):
                variables.setdefault(inner.group(1), inner.group(2))
    return variables


def expand(text: str, variables: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in variables:
            return variables[name]
        if match.group(2) is not None:
            return match.group(2)
        return match.group(0)

    return re.sub(
        r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text
    )


def logical_lines(text: str) -> list[str]:
    """Joins backslash continuations; drops comment lines."""
    joined = re.sub(r"\\\n", " ", text)
    return [line for line in joined.splitlines() if not line.lstrip().startswith("#")]


def parse_cargo_build(
    origin: str, words: list[str], members: set[str], defaults: set[str]
) -> Build:
    """Reduces the words after `cargo build` to a Build."""
    profile, target = "dev", "host-native"
    packages: set[str] = set()
    other: list[str] = []
    target_dir: str | None = None
    position = 0
    while position < len(words):
        word = words[position]
        value_from_next = position + 1 < len(words)
        if word == "--release":
            profile = "release"
        elif word == "--profile" and value_from_next:
            profile = words[position + 1]
            position += 1
        elif word.startswith("--profile="):
            profile = word.split("=", 1)[1]
        elif word == "--target" and value_from_next:
            target = words[position + 1]
            position += 1
        elif word.startswith("--target="):
            target = word.split("=", 1)[1]
        elif word in ("-p", "--package") and value_from_next:
            packages.add(words[position + 1])
            position += 1
        elif word.startswith("--package="):
            packages.add(word.split("=", 1)[1])
        elif word.startswith("-p") and len(word) > 2:
            packages.add(word[2:])
        elif word in ("--workspace", "--all"):
            packages |= members
        elif word == "--target-dir" and value_from_next:
            target_dir = words[position + 1]
            position += 1
        elif word.startswith("--target-dir="):
            target_dir = word.split("=", 1)[1]
        elif word in PRESENTATIONAL_FLAGS:
            pass
        elif word in PRESENTATIONAL_VALUE_FLAGS and value_from_next:
            position += 1
        elif any(word.startswith(flag + "=") for flag in PRESENTATIONAL_VALUE_FLAGS):
            pass
        else:
            other.append(word)
        position += 1
    if not packages:
        packages = set(defaults)
    return Build(
        origin=origin,
        text="cargo build " + " ".join(words),
        profile=profile,
        target=target,
        packages=frozenset(packages),
        other_flags=tuple(sorted(other)),
        target_dir=target_dir,
    )


def cargo_builds(
    origin: str, text: str, members: set[str], defaults: set[str], variables: dict[str, str] | None = None
) -> tuple[list[Build], list[str]]:
    """Every `cargo build` in a shell-like text, with problems found."""
    builds, problems = [], []
    for line in logical_lines(text):
        for segment in COMMAND_SEPARATORS.split(line):
            if "cargo" not in segment or "build" not in segment:
                continue
            expanded = expand(segment, variables or {})
            try:
                words = shlex.split(expanded)
            except ValueError:
                continue
            for index, word in enumerate(words):
                if Path(word).name != "cargo":
                    continue
                rest = words[index + 1 :]
                # `cargo +1.95 build`: a toolchain override before the command.
                while rest and rest[0].startswith("+"):
                    rest = rest[1:]
                if not rest or rest[0] != "build":
                    continue
                arguments = rest[1:]
                unresolved = [argument for argument in arguments if "$" in argument]
                if unresolved:
                    problems.append(
                        f"{origin}: cannot compare `{segment.strip()}`: unresolved {', '.join(unresolved)}"
                    )
                    break
                builds.append(parse_cargo_build(origin, arguments, members, defaults))
                break
    return builds, problems


def readme_code(text: str) -> str:
    """The shell lines inside the README's fenced code blocks."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    lines = []
    for block in blocks:
        for line in block.splitlines():
            lines.append(re.sub(r"^\s*\$\s+", "", line))
    return "\n".join(lines)


def wasm_file_name(package: str) -> str:
    return package.replace("-", "_") + ".wasm"


def profile_dir(profile: str) -> str:
    return {"dev": "debug", "release": "release"}.get(profile, profile)


def normalise(command: str) -> str:
    return " ".join(command.split())


def run(root: Path, dockerfile: Path) -> Results:
    results = Results()
    members, defaults = workspace_packages(root)
    dockerfile_text = dockerfile.read_text()
    docker_builds, docker_problems = cargo_builds(str(dockerfile), dockerfile_text, members, defaults)

    problems = list(docker_problems)
    if not docker_builds:
        problems.append(f"{dockerfile} runs no `cargo build`")
    for build in docker_builds:
        if build.profile != "release":
            problems.append(f"`{build.text}` is not a release build")
    results.check("the Dockerfile builds with cargo, in release mode", problems)

    # Which signature builds each package in the image.
    docker_by_package: dict[str, Build] = {}
    problems = []
    for build in docker_builds:
        for package in build.packages:
            earlier = docker_by_package.get(package)
            if earlier and earlier.signature != build.signature:
                problems.append(f"package {package} is built twice, differently: `{earlier.text}` and `{build.text}`")
            docker_by_package[package] = build
    results.check("the Dockerfile builds each package one way", problems)

    # spin.toml: every component is built by the Dockerfile, the same way,
    # into the file the manifest loads.
    manifest = tomllib.loads((root / "spin.toml").read_text())
    components = manifest.get("component", {})
    problems = []
    if not components:
        problems.append("spin.toml declares no components")
    for name, component in sorted(components.items()):
        command = component.get("build", {}).get("command")
        source = component.get("source")
        if not command:
            problems.append(f"component {name} has no build command in spin.toml")
            continue
        spin_builds, spin_problems = cargo_builds(f"spin.toml [component.{name}.build]", command, members, defaults)
        problems += spin_problems
        if len(spin_builds) != 1:
            problems.append(f"component {name}: expected one `cargo build` in `{command}`")
            continue
        spin_build = spin_builds[0]
        for package in sorted(spin_build.packages):
            docker_build = docker_by_package.get(package)
            if docker_build is None:
                problems.append(f"component {name}: package {package} is not built by the Dockerfile")
            elif docker_build.signature != spin_build.signature:
                problems.append(
                    f"component {name}: spin.toml builds {package} with {spin_build.describe_signature()}, "
                    f"the Dockerfile with {docker_build.describe_signature()}"
                )
        if len(spin_build.packages) == 1 and isinstance(source, str):
            (package,) = spin_build.packages
            expected = f"target/{spin_build.target}/{profile_dir(spin_build.profile)}/{wasm_file_name(package)}"
            if source != expected:
                problems.append(f"component {name}: source {source} is not where `{command}` writes ({expected})")
        if isinstance(source, str):
            if source not in dockerfile_text:
                problems.append(f"component {name}: the Dockerfile never copies {source}")
            destination = "/app/" + str(Path(source).parent)
            if destination not in dockerfile_text:
                problems.append(
                    f"component {name}: the Dockerfile does not place it at {destination} "
                    "(spin.toml's path relative to /app/spin.toml)"
                )
    results.check("the Dockerfile builds every spin.toml component the same way, to its source path", problems)

    # The host binary: built by the Dockerfile and copied under its bin name.
    problems = []
    host_manifest = tomllib.loads((root / "host" / "Cargo.toml").read_text())
    host_package = host_manifest["package"]["name"]
    binaries = [binary["name"] for binary in host_manifest.get("bin", [])] or [host_package]
    host_build = docker_by_package.get(host_package)
    if host_build is None:
        problems.append(f"package {host_package} (the host) is not built by the Dockerfile")
    else:
        for binary in binaries:
            built_path = f"target/{profile_dir(host_build.profile)}/{binary}"
            if host_build.target != "host-native":
                built_path = f"target/{host_build.target}/{profile_dir(host_build.profile)}/{binary}"
            if built_path not in dockerfile_text:
                problems.append(f"the Dockerfile never copies {built_path}")
    results.check("the Dockerfile builds the host and copies its binary", problems)

    # Every target the Dockerfile builds for is installed in the image.
    problems = []
    for target in sorted({build.target for build in docker_builds} - {"host-native"}):
        if not re.search(rf"rustup\s+target\s+add\b[^\n]*\b{re.escape(target)}\b", dockerfile_text):
            problems.append(f"the Dockerfile builds for {target} but never runs `rustup target add {target}`")
    results.check("the Dockerfile installs every target it builds for", problems)

    # The toolchain: the rust image's tag follows the workspace rust-version.
    problems = []
    rust_version = tomllib.loads((root / "Cargo.toml").read_text()).get("workspace", {}).get("package", {}).get(
        "rust-version"
    )
    base_images = re.findall(r"^FROM\s+(?:--\S+\s+)*rust:(\S+)", dockerfile_text, flags=re.MULTILINE)
    if not base_images:
        problems.append("no build stage FROM the official rust image")
    for tag in base_images:
        tag_version = tag.split("-", 1)[0]
        if rust_version is None:
            problems.append("Cargo.toml has no workspace.package.rust-version to compare with")
        elif tag_version.split(".")[:2] != rust_version.split(".")[:2]:
            problems.append(f"rust:{tag} does not match the workspace's rust-version {rust_version}")
        if tag_version.count(".") != 2:
            problems.append(f"rust:{tag} is not pinned to a patch release")
    results.check("the build stage uses the workspace's Rust version, pinned", problems)

    # npm: components whose assets come from npm are installed the same way.
    problems = []
    npm_lines = {normalise(line) for line in re.findall(r"npm ci[^\n&;|]*", dockerfile_text)}
    for lock_file in sorted((root / "components").glob("*/package-lock.json")):
        component_dir = lock_file.parent.relative_to(root).as_posix()
        wanted = f"npm ci --prefix {component_dir}"
        if wanted not in npm_lines:
            problems.append(f"{component_dir} pins npm packages, but the Dockerfile never runs `{wanted}`")
    results.check("the Dockerfile installs the components' pinned npm assets", problems)

    # scripts/ and the README, when they exist.
    sources = []
    for relative in ("scripts/test", "scripts/stack", "scripts/lib/common.sh"):
        path = root / relative
        if path.is_file():
            text = path.read_text()
            sources.append((relative, text, shell_variables(text)))
    readme = root / "README.md"
    if readme.is_file():
        sources.append(("README.md", readme_code(readme.read_text()), {}))

    if not sources:
        print("# scripts/test, scripts/stack and README.md do not exist yet; compared with spin.toml only")
        return results

    problems = []
    built_elsewhere: dict[str, list[Build]] = {}
    for origin, text, variables in sources:
        builds, source_problems = cargo_builds(origin, text, members, defaults, variables)
        problems += source_problems
        for build in builds:
            if build.target_dir not in (None, "target"):
                continue
            for package in build.packages & set(docker_by_package):
                built_elsewhere.setdefault(package, []).append(build)
                docker_build = docker_by_package[package]
                if build.signature != docker_build.signature:
                    problems.append(
                        f"{origin}: `{build.text}` builds {package} with {build.describe_signature()}; "
                        f"the Dockerfile uses {docker_build.describe_signature()} (`{docker_build.text}`)"
                    )
        for line in re.findall(r"npm ci[^\n&;|]*", text):
            if "components/" in line and normalise(expand(line, variables)) not in npm_lines:
                problems.append(f"{origin}: `{line.strip()}` has no identical step in the Dockerfile")
    for package, docker_build in sorted(docker_by_package.items()):
        if package not in built_elsewhere:
            names = ", ".join(origin for origin, _, _ in sources)
            problems.append(f"the Dockerfile builds {package} (`{docker_build.text}`), but {names} never do")
    results.check(
        f"the Dockerfile builds like {', '.join(origin for origin, _, _ in sources)} (same packages, target, flags)",
        problems,
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    parser.add_argument("--dockerfile", type=Path, default=None)
    arguments = parser.parse_args()
    root = arguments.root.resolve()
    dockerfile = arguments.dockerfile or root / "docker" / "Dockerfile"
    try:
        results = run(root, dockerfile)
    except (OSError, KeyError, tomllib.TOMLDecodeError, WorkspaceError) as error:
        print(f"not ok - reading the build definitions: {error}")
        return 1
    print(f"# build commands: {results.passed} passed, {results.failed} failed")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
