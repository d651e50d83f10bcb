"""Validates the served OpenAPI document and checks it covers the RealWorld spec.

Usage: openapi_coverage.py SERVED_JSON REFERENCE_YAML EXPECTED_OUT

Exit status: bit 1 set when an operation of the reference spec is missing,
bit 2 set when the document is not a valid OpenAPI document (checked by
openapi-spec-validator, which detects 3.0 and 3.1). Writes EXPECTED_OUT first:
the reference operations as the served document names them (or as the
reference names them, where the document lacks them), for the browser check.

Operations are compared by method and full path: a server's path prefix is
joined to each path (the reference spec uses `servers: .../api` with paths like
`/users/login`; the served document may do the same or spell out `/api/...`),
and path parameters are compared by position, not by name.
"""

import json
import re
import sys
from urllib.parse import urlparse

import yaml
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def server_prefix(document):
    servers = document.get("servers") or [{"url": "/"}]
    return urlparse(servers[0].get("url", "/")).path.rstrip("/")


def normalized(path):
    return re.sub(r"\{[^}]+\}", "{}", path)


def operations(document):
    """Maps (METHOD, normalized full path) to the document's own path key."""
    prefix = server_prefix(document)
    found = {}
    for path, item in (document.get("paths") or {}).items():
        for method in METHODS:
            if method in item:
                found[(method.upper(), normalized(prefix + path))] = path
    return found


def main():
    served_file, reference_file, expected_out = sys.argv[1:4]
    served, _ = read_from_filename(served_file)
    with open(reference_file, encoding="utf-8") as file:
        reference = yaml.safe_load(file)
    wanted = operations(reference)
    offered = operations(served)

    expected = [{"method": method, "path": offered.get((method, path), wanted[(method, path)])}
                for (method, path) in sorted(wanted)]
    with open(expected_out, "w", encoding="utf-8") as file:
        json.dump(expected, file, indent=2)

    status = 0
    missing = sorted(key for key in wanted if key not in offered)
    for method, path in missing:
        print(f"  missing operation: {method} {path}")
    for method, path in sorted(key for key in offered if key not in wanted):
        print(f"  (not in the RealWorld spec: {method} {path})")
    print(f"  {len(wanted) - len(missing)} of {len(wanted)} RealWorld operations listed")
    if missing:
        status |= 1

    try:
        validate(served)
    except Exception as error:  # the validator raises several error types
        lines = str(error).splitlines()
        where = [line for line in lines if line.startswith("On instance")]
        print(f"  invalid OpenAPI document: {' '.join(lines[:1] + where)}")
        status |= 2
    else:
        print(f"  valid OpenAPI {served.get('openapi')} document "
              f"({len(served.get('paths') or {})} paths)")
    return status


if __name__ == "__main__":
    sys.exit(main())
