#!/usr/bin/env bash
# An external Confluent-compatible Schema Registry on loopback: Apicurio Registry
# 2.4.2.Final (Apache-2.0) with in-memory storage, assembled from Maven Central by
# infra/registry/pom.xml (no Docker, no downloads besides Maven's), to check
# `tidings schemas push` and stock clients against a registry that is not Tidings' own.
#
#   infra/registry.sh start    a fresh, EMPTY registry (stops a leftover first), waits until ready
#   infra/registry.sh stop     SIGTERM, up to 30 s, then SIGKILL
#   infra/registry.sh status   up or down
#   infra/registry.sh url      the Confluent API's base URL
#
#   Confluent API: http://127.0.0.1:18085/apis/ccompat/v7   (TIDINGS_REGISTRY_PORT overrides the port)
#   Apicurio's own API: http://127.0.0.1:18085/apis/registry/v2
#
# The first start resolves and assembles the application with Maven (jars stay in ~/.m2;
# the application is kept under the state dir, keyed by the checksum of infra/registry/),
# so later starts run no Maven. State lives in ${TIDINGS_SERVICES_DIR:-<repo>/.services}/registry,
# the log in registry.log there (the previous launch's as registry.log.prev).
# TIDINGS_REGISTRY_TIMEOUT (s) overrides how long start waits for readiness.
# Needs bash, java (11+; 17 is what it is checked on), mvn, curl, coreutils, util-linux, iproute2.
set -euo pipefail

INFRA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$INFRA")
STATE=${TIDINGS_SERVICES_DIR:-$REPO/.services}
DIR=$STATE/registry
JAVA=${JAVA:-java}
PORT=${TIDINGS_REGISTRY_PORT:-18085}
TIMEOUT=${TIDINGS_REGISTRY_TIMEOUT:-120}
BASE=http://127.0.0.1:$PORT
# The jar every registry JVM of ours runs: how we recognise our processes.
RUNNER=registry-runtime-1-runner.jar

die() { printf 'registry.sh: %s\n' "$*" >&2; exit 1; }
warn() { printf 'registry.sh: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }

# --------------------------------------------------------------------------
# The application: assembled once by Maven, kept under the state dir keyed by a checksum
# of infra/registry/ (pom, the one Java class, the properties).
# --------------------------------------------------------------------------
app_dir() {
    local sum out log
    sum=$(cd "$INFRA/registry" && find . -type f ! -path './target/*' | LC_ALL=C sort |
        xargs sha256sum | sha256sum | cut -c1-16)
    out="$STATE/cache/registry-$sum"
    if [[ -f $out/$RUNNER && -d $out/lib ]]; then
        echo "$out"
        return
    fi
    mkdir -p "$STATE/cache"
    rm -rf "$STATE/cache/registry-"*
    log="$STATE/cache/mvn-registry.log"
    # -DskipDefault turns off the extra repositories Apicurio's parent POM declares.
    if ! mvn -B -Dstyle.color=never -DskipDefault -f "$INFRA/registry/pom.xml" \
        -Dregistry.out="$out.build" package >"$log" 2>&1; then
        tail -n 50 "$log" >&2
        rm -rf "$out.build"
        die "could not assemble the registry from $INFRA/registry/pom.xml (log: $log)"
    fi
    mkdir -p "$out.tmp"
    mv "$out.build/$RUNNER" "$out.build/lib" "$out.tmp/"
    rm -rf "$out.build"
    mv "$out.tmp" "$out"
    echo "$out"
}

# --------------------------------------------------------------------------
# Process helpers. We only ever signal pids that run our registry's jar.
# --------------------------------------------------------------------------
# A JVM's main thread can be a zombie while its other threads still hold its sockets.
pid_alive() {
    local stat tasks
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} == Z ]] || return 0
    tasks=("/proc/$1/task/"*)
    ((${#tasks[@]} > 1))
}
ours() { # pid
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ " $cmd " == *"/$RUNNER "* ]]
}
PIDFILE=$DIR/registry.pid
read_pid() {
    local pid
    pid=$(cat "$PIDFILE" 2>/dev/null) || return 0
    if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && ours "$pid"; then echo "$pid"; fi
}
listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
listener_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }

our_pids() {
    local pid
    {
        read_pid
        for pid in $(listener_pids "$PORT"); do
            if ours "$pid"; then
                echo "$pid"
            else
                warn "port $PORT is held by pid $pid, which is not our registry; leaving it alone"
            fi
        done
    } | sort -u
}

stop_registry() { # TERM|KILL
    local sig=$1 pid deadline
    local -a pids
    mapfile -t pids < <(our_pids)
    if ((${#pids[@]})); then
        kill -s "$sig" "${pids[@]}" 2>/dev/null || true
        deadline=$(($(now_ms) + 30000))
        for pid in "${pids[@]}"; do
            while pid_alive "$pid" && (($(now_ms) < deadline)); do sleep 0.1; done
            if pid_alive "$pid"; then
                warn "pid $pid did not stop within 30 s of SIG$sig, sending SIGKILL"
                kill -s KILL "$pid" 2>/dev/null || true
                deadline=$(($(now_ms) + 15000))
                while pid_alive "$pid"; do
                    (($(now_ms) < deadline)) || die "pid $pid is still alive after SIGKILL"
                    sleep 0.1
                done
            fi
        done
    fi
    rm -f "$PIDFILE"
}

ports_free_or_die() {
    local deadline=$(($(now_ms) + 10000))
    # A port without a visible owner is one of ours still exiting: give it a moment.
    while listening "$PORT"; do
        if [[ -n $(listener_pids "$PORT") ]] || (($(now_ms) >= deadline)); then
            die "port $PORT is in use: $(ss -Hltnp "sport = :$PORT" | tr -s ' ')"
        fi
        sleep 0.2
    done
}

ready() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$BASE/health/ready") == 200 ]]; }

not_ready() { # reason
    {
        echo "registry.sh: the registry did not come up: $1"
        echo "---- last 50 lines of $DIR/registry.log ----"
        tail -n 50 "$DIR/registry.log" 2>/dev/null || true
        echo "----"
    } >&2
    stop_registry KILL
    exit 1
}

cmd_start() {
    local app start pid i=0 log=$DIR/registry.log
    app=$(app_dir)
    stop_registry TERM
    ports_free_or_die
    mkdir -p "$DIR"
    [[ ! -f $log ]] || mv -f "$log" "$log.prev"
    start=$(now_ms)
    # Own session, stdin closed, output to the log; the wrapper writes its own pid and
    # execs, so the pid file holds the JVM's. Storage is in memory: every start is empty.
    # 9>&- : the JVM must not inherit our lock fd.
    # shellcheck disable=SC2016 # $$, $0 and $1 are the inner shell's
    setsid bash -c 'cd "$1" && echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && shift && exec "$@"' "$PIDFILE" "$DIR" \
        "$JAVA" -Xms128m -Xmx512m -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
        -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$PORT" \
        -jar "$app/$RUNNER" </dev/null >"$log" 2>&1 9>&- &
    until [[ -s $PIDFILE ]]; do
        ((i++ < 200)) || die "launcher did not start"
        sleep 0.05
    done
    pid=$(cat "$PIDFILE")
    while ! ready; do
        pid_alive "$pid" || not_ready "the JVM exited"
        (($(now_ms) < start + TIMEOUT * 1000)) || not_ready "timed out after ${TIMEOUT}s"
        sleep 0.25
    done
    echo "registry ready at $BASE/apis/ccompat/v7 (pid $pid, $(secs_since "$start")s)"
}

cmd_status() {
    local pid
    pid=$(read_pid)
    if [[ -n $pid ]] && ready; then
        echo "registry: up (pid $pid, $BASE/apis/ccompat/v7)"
    elif [[ -n $pid ]]; then
        echo "registry: starting or stuck (pid $pid)"
    elif listening "$PORT"; then
        echo "registry: down, but 127.0.0.1:$PORT is held by another process"
    else
        echo "registry: down"
    fi
}

main() {
    local cmd=${1:-}
    case $cmd in
        status) cmd_status; return ;;
        url) echo "$BASE/apis/ccompat/v7"; return ;;
        start | stop) ;;
        *) die "usage: registry.sh start|stop|status|url" ;;
    esac
    mkdir -p "$STATE"
    # One invocation at a time per state dir (fd 9 is closed for the JVM).
    exec 9>"$STATE/.registry.lock"
    flock -w 900 9 || die "another registry.sh is still running on $STATE"
    case $cmd in
        start) cmd_start ;;
        stop) stop_registry TERM ;;
    esac
}

main "$@"
