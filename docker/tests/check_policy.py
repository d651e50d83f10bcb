#!/usr/bin/env python3
"""Checks the compose stack and the images against the project's rules:

* no container runs as root, except the official postgres image (its
  entrypoint starts as root only to fix the data directory's ownership and then
  drops to the postgres user); the stand-ins for public base images under
  docker/standins/ keep the user of the image they stand in for (root for the
  rust, node and postgres images) and are not checked for it;
* every container we build has a read-only root filesystem, drops all Linux
  capabilities and forbids privilege gain;
* nginx is the only service with a published port;
* no secret has a real default: compose requires every secret (`${NAME:?...}`),
  .env.example holds only `change-me` placeholders for them, and no Dockerfile
  bakes one in;
* .env.example lists exactly the settings compose.yaml reads.

Usage: check_policy.py --config RENDERED.json [--root DIR]
RENDERED.json is `docker compose config --format json` of docker/compose.yaml
with docker/.env.example. Prints one `ok`/`not ok` line per check; exits 1 when
any check fails.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tomllib
from pathlib import Path

# Names that hold credentials or keys.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)|DB_URL|DATABASE_URL")
# The official image allowed to start as root (it drops privileges itself).
ROOT_ALLOWED_IMAGES = re.compile(r"^(docker\.io/)?(library/)?postgres:")
# Local stand-ins for public base images (docker/standins/build): they copy
# the public image's default user, whatever it is.
STANDINS_DIR = Path("docker") / "standins"
PUBLIC_SERVICE = "nginx"
PLACEHOLDER_PREFIX = "change-me"
VARIABLE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")


class Checks:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, problems: list[str]) -> None:
        if problems:
            self.failed += 1
            print(f"not ok - {name}")
            for problem in problems:
                print(f"    {problem}")
        else:
            self.passed += 1
            print(f"ok - {name}")


def is_root_user(user: str | None) -> bool:
    if user is None or user == "":
        return True
    name = str(user).split(":", 1)[0]
    return name in ("0", "root")


def final_stage_user(dockerfile_text: str) -> str | None:
    """The USER in effect at the end of the last stage (None: the base image's)."""
    stages = re.split(r"^FROM\s", dockerfile_text, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", stages[-1], flags=re.MULTILINE)
    return users[-1] if users else None


def env_file(path: Path) -> dict[str, str]:
    settings = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition("=")
        settings[name.strip()] = value.strip()
    return settings


def ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex (`**` any depth, `*` and `?` within
    one path segment)."""
    pattern = pattern.strip().strip("/")
    regex = ""
    position = 0
    while position < len(pattern):
        if pattern.startswith("**/", position):
            regex += "(?:.*/)?"
            position += 3
        elif pattern.startswith("**", position):
            regex += ".*"
            position += 2
        elif pattern[position] == "*":
            regex += "[^/]*"
            position += 1
        elif pattern[position] == "?":
            regex += "[^/]"
            position += 1
        else:
            regex += re.escape(pattern[position])
            position += 1
    return re.compile(regex + r"\Z")


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` out of the build context: a pattern
    matching the path or one of its parent folders excludes it; the last
    matching pattern wins, `!` re-includes."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = ignore_regex(pattern[1:] if negated else pattern)
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negated
    return result


def dockerfile_for(root: Path, service: dict) -> Path | None:
    build = service.get("build")
    if not build:
        return None
    context = Path(build.get("context", "."))
    if not context.is_absolute():
        context = root / context
    return context / build.get("dockerfile", "Dockerfile")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    arguments = parser.parse_args()
    root = arguments.root.resolve()
    rendered = json.loads(arguments.config.read_text())
    services: dict[str, dict] = rendered.get("services", {})
    # Comment lines may mention ${NAME:?...} as prose; only YAML counts.
    compose_text = "\n".join(
        line for line in (root / "docker" / "compose.yaml").read_text().splitlines()
        if not line.lstrip().startswith("#")
    )
    example = env_file(root / "docker" / ".env.example")
    dockerfiles = sorted(root.glob("docker/**/Dockerfile"))
    checks = Checks()

    # Users: compose's `user` wins over the image's USER.
    problems = []
    for name, service in sorted(services.items()):
        image = service.get("image", "")
        dockerfile = dockerfile_for(root, service)
        user = service.get("user")
        if user is None and dockerfile is not None and dockerfile.is_file():
            user = final_stage_user(dockerfile.read_text())
        if is_root_user(user):
            if ROOT_ALLOWED_IMAGES.match(image) and dockerfile is None:
                print(f"# {name}: {image} starts as root and drops to its own user (official image)")
            else:
                problems.append(f"service {name} ({image}) runs as root (user {user!r})")
    for dockerfile in dockerfiles:
        if dockerfile.relative_to(root).is_relative_to(STANDINS_DIR):
            continue
        user = final_stage_user(dockerfile.read_text())
        if is_root_user(user):
            problems.append(f"{dockerfile.relative_to(root)}: the final stage runs as root (USER {user!r})")
    checks.check("nothing runs as root except the official postgres image", problems)

    # Hardening of every container built from our Dockerfiles.
    problems = []
    for name, service in sorted(services.items()):
        if dockerfile_for(root, service) is None:
            continue
        if service.get("read_only") is not True:
            problems.append(f"service {name}: root filesystem is not read-only")
        if "ALL" not in service.get("cap_drop", []):
            problems.append(f"service {name}: does not drop all capabilities")
        if service.get("cap_add"):
            problems.append(f"service {name}: adds capabilities {service['cap_add']}")
        if "no-new-privileges:true" not in service.get("security_opt", []):
            problems.append(f"service {name}: lacks no-new-privileges:true")
        if service.get("privileged"):
            problems.append(f"service {name}: is privileged")
    checks.check("our containers: read-only, no capabilities, no-new-privileges", problems)

    problems = []
    for name, service in sorted(services.items()):
        ports = service.get("ports", [])
        if name != PUBLIC_SERVICE and ports:
            problems.append(f"service {name} publishes {ports}")
        if name == PUBLIC_SERVICE and sorted(port.get("target") for port in ports) != [8080, 8443]:
            problems.append(f"service {name} should publish container ports 8443 (HTTPS) and 8080 (redirect) only, publishes {ports}")
    if PUBLIC_SERVICE not in services:
        problems.append(f"no {PUBLIC_SERVICE} service")
    checks.check("nginx publishes the only ports (8443 HTTPS, 8080 redirect)", problems)

    # Secrets in compose.yaml: required, never defaulted, never literal.
    problems = []
    for match in VARIABLE_REFERENCE.finditer(compose_text):
        variable, modifier = match.groups()
        if SECRET_NAME.search(variable) and not modifier.startswith(":?"):
            problems.append(f"compose.yaml: ${{{variable}{modifier}}} is not required (use ${{{variable}:?...}})")
    for line in compose_text.splitlines():
        setting = re.match(r"^\s*([A-Z][A-Z0-9_]*):\s*(\S.*)$", line)
        if setting and SECRET_NAME.search(setting.group(1)):
            value = setting.group(2)
            secret_references = [
                name for name, modifier in VARIABLE_REFERENCE.findall(value)
                if SECRET_NAME.search(name) and modifier.startswith(":?")
            ]
            if not secret_references:
                problems.append(f"compose.yaml: {setting.group(1)} is set without a required secret variable")
    checks.check("compose.yaml requires every secret and defaults none", problems)

    problems = []
    referenced = {variable for variable, _ in VARIABLE_REFERENCE.findall(compose_text)}
    for variable in sorted(referenced - set(example)):
        problems.append(f".env.example does not list {variable}, which compose.yaml reads")
    for variable in sorted(set(example) - referenced):
        problems.append(f".env.example lists {variable}, which compose.yaml never reads")
    for variable, value in sorted(example.items()):
        if SECRET_NAME.search(variable) and not value.startswith(PLACEHOLDER_PREFIX):
            problems.append(f".env.example: {variable} holds a value that is not a {PLACEHOLDER_PREFIX} placeholder")
    checks.check(".env.example lists every setting, with placeholders for secrets", problems)

    problems = []
    for dockerfile in dockerfiles:
        for line in dockerfile.read_text().splitlines():
            instruction = re.match(r"^\s*(ENV|ARG)\s+(.*)$", line)
            candidates = [instruction.group(2)] if instruction else []
            # Continuation lines of a multi-line ENV.
            if not instruction and re.match(r"^\s+[A-Z_][A-Z0-9_]*=", line):
                candidates = [line]
            for candidate in candidates:
                for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", candidate.split("#")[0]):
                    if name.isupper() and SECRET_NAME.search(name):
                        problems.append(f"{dockerfile.relative_to(root)}: bakes secret-like setting {name}")
    checks.check("no Dockerfile bakes in a secret", problems)

    # The build context is the repository root: build outputs, local data and
    # tool caches stay out of it (size, cache invalidation, secrets).
    problems = []
    ignore_file = root / ".dockerignore"
    if not ignore_file.is_file():
        problems.append(".dockerignore is missing")
    else:
        patterns = {line.strip().rstrip("/") for line in ignore_file.read_text().splitlines()}
        for wanted in ("target", ".data", ".stack", ".cache", "**/node_modules", "**/.env"):
            if wanted not in patterns:
                problems.append(f".dockerignore does not exclude {wanted}")
        ordered = [
            line.strip() for line in ignore_file.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        # What the Dockerfiles need from the context must survive it.
        needed = ["Cargo.toml", "Cargo.lock", "spin.toml", "migrations/init/init.sql", "docker/nginx/nginx.conf"]
        manifest = tomllib.loads((root / "Cargo.toml").read_text())
        for member in manifest.get("workspace", {}).get("members", []):
            needed += [f"{member}/Cargo.toml", f"{member}/src/lib.rs", f"{member}/src/main.rs"]
        needed += [path.relative_to(root).as_posix() for path in root.glob("components/*/package*.json")]
        needed += [path.relative_to(root).as_posix() for path in root.glob("migrations/*.sql")]
        needed += [path.relative_to(root).as_posix() for path in root.glob("wit/**/*.wit")][:20]
        for path in needed:
            if ignored(path, ordered):
                problems.append(f".dockerignore excludes {path}, which the image build needs")
        for must_go in ("target/release/wasmhost", "host/target/debug/x", "components/docs/node_modules/a/b.js",
                        ".data/pg/PG_VERSION", ".cache/venv/bin/python", "docker/.env"):
            if not ignored(must_go, ordered):
                problems.append(f".dockerignore lets {must_go} into the build context")
        for negated in sorted(pattern for pattern in patterns if pattern.startswith("!")):
            problems.append(f".dockerignore re-includes {negated[1:]}; check that it is meant to be in the image")
    checks.check(".dockerignore keeps target/, data, caches, node_modules and .env out of the context", problems)

    print(f"# policy: {checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
