# Shared by scripts/stack and scripts/test: installing what a fresh Debian
# machine with Rust lacks, and building the components and the host exactly
# as the Dockerfile does.
# shellcheck shell=bash

say() { echo "${SCRIPT_NAME:-scripts}: $*" >&2; }

# Runs a command as root: directly, or through passwordless sudo.
as_root() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo "$@"
    else
        return 1
    fi
}

# install_packages PKG...: apt-get install what is given, or print the
# command to run and fail.
install_packages() {
    [ "$#" -gt 0 ] || return 0
    say "installing $*"
    if ! { as_root apt-get update -qq &&
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }; then
        say "cannot install packages without root; run this, then try again:"
        echo "  sudo apt-get update && sudo apt-get install -y $*" >&2
        return 1
    fi
}

# The Debian packages the local stack and the tests need but are missing.
missing_packages() {
    local missing=()
    if [ ! -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
        # Debian 12 ships the small build as nginx-light; later releases only `nginx`.
        if apt-cache show nginx-light >/dev/null 2>&1; then
            missing+=(nginx-light)
        else
            missing+=(nginx)
        fi
    fi
    if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
        missing+=(postgresql)
    fi
    if ! command -v psql >/dev/null 2>&1; then
        missing+=(postgresql-client)
    fi
    if ! command -v npm >/dev/null 2>&1; then
        missing+=(nodejs npm)
    fi
    echo "${missing[@]}"
}

# cargo, and the wasm targets named (wasm32-wasip2 when none is).
ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        say "cargo is missing; install Rust (https://rustup.rs), then try again"
        return 1
    fi
    local target
    for target in "${@:-wasm32-wasip2}"; do
        if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
            say "adding the $target target"
            if ! rustup target add "$target"; then
                say "cannot add the target; run: rustup target add $target"
                return 1
            fi
        fi
    done
}

# Swagger UI's files, pinned by components/docs/package-lock.json, are
# embedded into the docs component at build time.
ensure_docs_assets() {
    local lock=components/docs/package-lock.json
    local stamp=components/docs/node_modules/.package-lock.json
    if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ]; then
        say "installing the Swagger UI assets (npm ci)"
        npm ci --prefix components/docs
    fi
}

# The components as docker/Dockerfile and spin.toml build them; the host
# and devstack as the test command and bench/run build them. Cargo unifies
# the features of shared dependencies over the packages it builds, so
# `-p host -p devstack` alone would compile wasmtime a second time beside
# the workspace's test build: one build serves the stack, the tests and the
# benchmarks.
build_all() {
    say "building the components"
    cargo build --release --target wasm32-wasip2 -p conduit -p docs
    say "building the host (with the workspace's tests: one build for all)"
    cargo test --release --workspace --no-run --quiet
}

# free_ports [N]: N distinct TCP ports on 127.0.0.1 free now (one per line),
# for servers started next. Taken at random below the kernel's ephemeral
# range, where outgoing connections and programs binding port 0 (Docker's
# port proxies) get theirs, so nothing else is handed them before the
# servers bind.
free_ports() {
    python3 - "${1:-1}" <<'PY'
import random, socket, sys
wanted = int(sys.argv[1])
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        high = int(f.read().split()[0])
except OSError:
    high = 32768
ports = list(range(10000, max(high, 10001)))
random.shuffle(ports)
found = []
for port in ports:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
    found.append(port)
    if len(found) == wanted:
        break
else:
    raise SystemExit("not enough free ports")
print("\n".join(map(str, found)))
PY
}
