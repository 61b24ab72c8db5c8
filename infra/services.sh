#!/usr/bin/env bash
# Real single-node Apache Kafka 4.1.1 (KRaft, combined broker+controller) and
# Apache Cassandra 5.0.6 on loopback, run straight from Maven Central jars (no
# Docker, no tarballs): the classpaths come from infra/{kafka,cassandra}/pom.xml.
#
#   infra/services.sh start  [kafka|cassandra|all]  fresh instances with EMPTY data
#                                                   (stops leftovers first), waits
#                                                   until each accepts clients
#   infra/services.sh stop   [kafka|cassandra|all]  SIGTERM, up to 30 s, then SIGKILL
#   infra/services.sh status                        which are up
#   infra/services.sh kill9  kafka|cassandra|all    SIGKILL (crash), data kept
#   infra/services.sh resume kafka|cassandra|all    start again on the existing data
#
#   Kafka:     PLAINTEXT 127.0.0.1:9092, CONTROLLER 127.0.0.1:9093, and SASL_PLAINTEXT
#              127.0.0.1:9094 with SCRAM-SHA-256 for user 'tidings', password
#              'tidings-sasl-test' (tests/system/test_kafka_sasl.py); TIDINGS_KAFKA_PORT,
#              TIDINGS_KAFKA_CONTROLLER_PORT and TIDINGS_KAFKA_SASL_PORT move them, e.g. for
#              a second, throwaway Kafka with its own TIDINGS_SERVICES_DIR beside the usual one
#   Cassandra: CQL 127.0.0.1:9042, storage 127.0.0.1:7000, JMX 127.0.0.1:7199
#              (TIDINGS_CASSANDRA_PORT, TIDINGS_CASSANDRA_STORAGE_PORT and
#              TIDINGS_CASSANDRA_JMX_PORT move them, likewise)
#
# State (data, logs, pid files, generated configs, cached classpaths) lives in
# ${TIDINGS_SERVICES_DIR:-<repo>/.services}. Each service logs to
# <state>/<service>/<service>.log (the previous launch's log is kept as .log.prev).
# Timeouts can be overridden with TIDINGS_KAFKA_TIMEOUT / TIDINGS_CASSANDRA_TIMEOUT (s).
# Needs only bash, java (17+), mvn, coreutils, util-linux (setsid, flock), iproute2 (ss).
set -euo pipefail

INFRA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$INFRA")
STATE=${TIDINGS_SERVICES_DIR:-$REPO/.services}
JAVA=${JAVA:-java}

KAFKA_TIMEOUT=${TIDINGS_KAFKA_TIMEOUT:-90}
KAFKA_PORT=${TIDINGS_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${TIDINGS_KAFKA_CONTROLLER_PORT:-9093}
KAFKA_SASL_PORT=${TIDINGS_KAFKA_SASL_PORT:-9094}
# The SCRAM user of the SASL listener: a test credential, not a secret.
KAFKA_SASL_USER=tidings
KAFKA_SASL_PASSWORD=tidings-sasl-test
CASSANDRA_TIMEOUT=${TIDINGS_CASSANDRA_TIMEOUT:-240}
CASSANDRA_PORT=${TIDINGS_CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${TIDINGS_CASSANDRA_STORAGE_PORT:-7000}
CASSANDRA_JMX_PORT=${TIDINGS_CASSANDRA_JMX_PORT:-7199}

# Ports each service owns; a leftover process of ours on any of them is stopped.
declare -A PORTS=([kafka]="$KAFKA_PORT $KAFKA_CONTROLLER_PORT $KAFKA_SASL_PORT" [cassandra]="$CASSANDRA_PORT $CASSANDRA_STORAGE_PORT $CASSANDRA_JMX_PORT")
# Main class, used to recognise our own processes (pid files can be stale, pids reused).
declare -A MAIN_CLASS=([kafka]=kafka.Kafka [cassandra]=org.apache.cassandra.service.CassandraDaemon)
declare -A LAUNCHED_AT=()
SVCS=()

# Short-lived JVMs (storage format, readiness client): small heap, C1 only, so they
# start in ~1 s instead of competing with the servers for the 2 cores.
TOOL_JVM=(-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true)

die() { printf 'services.sh: %s\n' "$*" >&2; exit 1; }
warn() { printf 'services.sh: %s\n' "$*" >&2; }
now_ms() { date +%s%3N; }
secs_since() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $((d % 1000 / 100)); }

# --------------------------------------------------------------------------
# Classpaths: resolved once by Maven (jars stay in ~/.m2), then cached under the
# state dir keyed by the pom's checksum, so a normal start never runs mvn.
# --------------------------------------------------------------------------
classpath() {
    local svc=$1 pom="$INFRA/$1/pom.xml" sum cpfile jar ok=1
    sum=$(sha256sum "$pom" | cut -c1-16)
    cpfile="$STATE/cache/$svc-$sum.classpath"
    if [[ -s $cpfile ]]; then
        # ~/.m2 may have been cleaned since: then resolve again.
        local -a jars
        IFS=: read -r -a jars <"$cpfile"
        for jar in "${jars[@]}"; do [[ -f $jar ]] || { ok=0; break; }; done
        if ((ok)); then cat "$cpfile"; return; fi
    fi
    mkdir -p "$STATE/cache"
    rm -f "$STATE/cache/$svc-"*.classpath
    if ! mvn -q -B -Dstyle.color=never -f "$pom" dependency:build-classpath \
        -Dmdep.outputFile="$cpfile.tmp" >"$STATE/cache/mvn-$svc.log" 2>&1; then
        tail -n 50 "$STATE/cache/mvn-$svc.log" >&2
        die "$svc: could not resolve the classpath from $pom (log: $STATE/cache/mvn-$svc.log)"
    fi
    mv "$cpfile.tmp" "$cpfile"
    cat "$cpfile"
}

# --------------------------------------------------------------------------
# Process helpers. We only ever signal pids that run our service's main class.
# --------------------------------------------------------------------------
# A JVM's main thread can be a zombie while its other threads are still exiting
# and holding the process's sockets: it is dead only once those threads are gone.
pid_alive() {
    local stat tasks
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} == Z ]] || return 0
    tasks=("/proc/$1/task/"*)
    ((${#tasks[@]} > 1))
}
runs_class() { # pid main-class
    local cmd
    cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) || return 1
    [[ " $cmd " == *" $2 "* ]]
}
pidfile() { echo "$STATE/$1/$1.pid"; }
read_pid() { # prints the recorded pid if that process is alive and is this service
    local pid
    pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 0
    if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && runs_class "$pid" "${MAIN_CLASS[$1]}"; then
        echo "$pid"
    fi
}
listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }
listener_pids() { ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u; }
wait_gone() { # pid seconds
    local pid=$1 ticks=$(($2 * 10))
    while pid_alive "$pid"; do
        ((ticks-- > 0)) || return 1
        sleep 0.1
    done
}
# Signal all pids at once, then wait: services stop in parallel. TERM lets each
# shut down cleanly for up to 30 s, then it is KILLed.
terminate() { # TERM|KILL pid...
    local sig=$1 pid deadline
    shift
    (($#)) || return 0
    kill -s "$sig" "$@" 2>/dev/null || true
    if [[ $sig == TERM ]]; then
        deadline=$(($(now_ms) + 30000))
        for pid in "$@"; do
            while pid_alive "$pid" && (($(now_ms) < deadline)); do sleep 0.1; done
            if pid_alive "$pid"; then
                warn "pid $pid did not stop within 30 s of SIGTERM, sending SIGKILL"
                kill -s KILL "$pid" 2>/dev/null || true
            fi
        done
    fi
    for pid in "$@"; do wait_gone "$pid" 15 || die "pid $pid is still alive after SIGKILL"; done
}

# Our running instances of a service: the pid file's, plus any process of ours
# holding its ports (e.g. started from another state dir, or the pid file was
# lost). Foreign listeners are reported and left alone.
our_pids() { # svc
    local svc=$1 pid port
    {
        read_pid "$svc"
        for port in ${PORTS[$svc]}; do
            for pid in $(listener_pids "$port"); do
                if runs_class "$pid" "${MAIN_CLASS[$svc]}"; then
                    echo "$pid"
                else
                    warn "$svc: port $port is held by pid $pid, which is not a $svc; leaving it alone"
                fi
            done
        done
    } | sort -u
}

stop_services() { # TERM|KILL svc...
    local sig=$1 svc
    shift
    local -a pids=()
    for svc in "$@"; do
        mapfile -t -O "${#pids[@]}" pids < <(our_pids "$svc")
    done
    terminate "$sig" "${pids[@]}"
    for svc in "$@"; do rm -f "$(pidfile "$svc")"; done
}

# Give ports without a visible owner (a process of ours still exiting) a moment
# to be released; a port owned by a live foreign process fails at once.
ports_free_or_die() { # svc
    local port busy owned deadline=$(($(now_ms) + 10000))
    while :; do
        busy="" owned=""
        for port in ${PORTS[$1]}; do
            listening "$port" || continue
            busy+=" $port"
            [[ -z $(listener_pids "$port") ]] || owned=1
        done
        [[ -n $busy ]] || return 0
        if [[ -n $owned ]] || (($(now_ms) >= deadline)); then break; fi
        sleep 0.2
    done
    die "$1: port(s)$busy still in use: $(for port in $busy; do ss -Hltnp "sport = :$port"; done | tr -s ' ')"
}

# Start "$@" detached (own session, so it outlives this script and the caller's
# process group), stdin closed, stdout+stderr to the service log. The wrapper
# writes its own pid and execs, so the pid file holds the JVM's pid.
launch() { # svc command...
    local svc=$1 dir="$STATE/$1" i=0
    shift
    local log="$dir/$svc.log" pf
    pf=$(pidfile "$svc")
    [[ ! -f $log ]] || mv -f "$log" "$log.prev"
    rm -f "$pf"
    # 9>&- : the JVM must not inherit our lock fd.
    # shellcheck disable=SC2016 # $$ and $0 are the inner shell's
    setsid bash -c 'echo $$ >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' "$pf" "$@" \
        </dev/null >"$log" 2>&1 9>&- &
    until [[ -s $pf ]]; do
        ((i++ < 200)) || die "$svc: launcher did not start"
        sleep 0.05
    done
    LAUNCHED_AT[$svc]=$(now_ms)
}

# Common failure path for the await_* functions: show the log, don't leave a
# half-started JVM behind.
not_ready() { # svc reason
    local svc=$1 log="$STATE/$1/$1.log"
    {
        echo "services.sh: $svc did not come up: $2"
        echo "---- last 50 lines of $log ----"
        tail -n 50 "$log" 2>/dev/null || true
        echo "----"
    } >&2
    stop_services KILL "$svc"
    return 1
}

# --------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------
KDIR=$STATE/kafka

kafka_configure() {
    mkdir -p "$KDIR/conf" "$KDIR/data"
    # Single node, combined mode, static quorum of one voter (node 1). Replication
    # factors and ISR minimums are 1 because there is one broker; few internal
    # partitions keep startup fast on 2 cores; topics are created explicitly by
    # Tidings, so auto-creation is off. Clients only may use SASL: the broker's own
    # listeners stay PLAINTEXT, and the SCRAM user is made at format time.
    cat >"$KDIR/conf/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$KDIR/data
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# After a crash (kill9) the controller refuses the restarted broker until the old
# incarnation's session expires: 4 s instead of 9 s keeps 'resume' quick.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=2
EOF
    # Server log: INFO to stdout, which launch() sends to kafka.log.
    cat >"$KDIR/conf/log4j2.properties" <<'EOF'
status = error
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
EOF
    # Readiness client: fail fast instead of the default 60 s API timeout.
    cat >"$KDIR/conf/client.properties" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

kafka_tool() { # main-class args... (output goes to the caller's redirection)
    "$JAVA" "${TOOL_JVM[@]}" -Dlog4j2.configurationFile="$INFRA/kafka/tools-log4j2.properties" \
        -cp "$KAFKA_CP" "$@"
}

kafka_fresh() {
    rm -rf "$KDIR/data"
    kafka_configure
    # KRaft needs its storage formatted with a cluster id before the first start.
    local cluster_id
    # A base64url UUID, as Kafka makes them; one starting with '-' would be read as an
    # option by the storage tool, so the first character is drawn again until it is not.
    cluster_id=-
    while [[ $cluster_id == -* ]]; do
        cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    if ! kafka_tool kafka.tools.StorageTool format -t "$cluster_id" \
        -c "$KDIR/conf/server.properties" \
        --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
        >"$KDIR/format.log" 2>&1; then
        cat "$KDIR/format.log" >&2
        die "kafka: storage format failed"
    fi
}

kafka_launch() {
    # Flags as in Kafka's kafka-run-class.sh / kafka-server-start.sh, smaller heap.
    launch kafka "$JAVA" -Xms256m -Xmx1g -server \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KDIR/conf/log4j2.properties" -Dkafka.logs.dir="$KDIR" \
        -cp "$KAFKA_CP" kafka.Kafka "$KDIR/conf/server.properties"
}

# Ready = the broker listens and a real admin client call (list topics) succeeds.
kafka_await() {
    local start=${LAUNCHED_AT[kafka]} pid left
    local deadline=$((start + KAFKA_TIMEOUT * 1000))
    pid=$(cat "$(pidfile kafka)")
    while :; do
        pid_alive "$pid" || { not_ready kafka "the JVM exited"; return 1; }
        left=$(((deadline - $(now_ms)) / 1000))
        ((left > 0)) || { not_ready kafka "timed out after ${KAFKA_TIMEOUT}s"; return 1; }
        if listening "$KAFKA_PORT" && listening "$KAFKA_SASL_PORT" && timeout "$((left < 20 ? left : 20))" \
            "$JAVA" "${TOOL_JVM[@]}" -Dlog4j2.configurationFile="$INFRA/kafka/tools-log4j2.properties" \
            -cp "$KAFKA_CP" org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
            --command-config "$KDIR/conf/client.properties" --list >"$KDIR/ready-check.log" 2>&1; then
            echo "kafka ready on 127.0.0.1:$KAFKA_PORT, SASL 127.0.0.1:$KAFKA_SASL_PORT (pid $pid, $(secs_since "$start")s)"
            return 0
        fi
        sleep 0.5
    done
}

# --------------------------------------------------------------------------
# Cassandra
# --------------------------------------------------------------------------
CDIR=$STATE/cassandra

cassandra_configure() {
    mkdir -p "$CDIR/conf" "$CDIR/data"
    # Minimal single-node cassandra.yaml (5.0 option names). Everything not set
    # keeps Cassandra's built-in default.
    cat >"$CDIR/conf/cassandra.yaml" <<EOF
cluster_name: tidings
num_tokens: 1
initial_token: 0
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
# Fresh single-node cluster: no older nodes to stay compatible with.
storage_compatibility_mode: NONE
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$CASSANDRA_STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CASSANDRA_PORT
start_native_transport: true
endpoint_snitch: SimpleSnitch
auto_bootstrap: false
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
hinted_handoff_enabled: false
data_file_directories:
  - $CDIR/data/data
commitlog_directory: $CDIR/data/commitlog
saved_caches_directory: $CDIR/data/saved_caches
hints_directory: $CDIR/data/hints
cdc_raw_directory: $CDIR/data/cdc_raw
# A write is acknowledged only after its commitlog entry is fsynced (grouped over 2 ms).
# With the default periodic mode a single node loses the last acknowledged writes when it
# is killed (measured: ~20 of 200 in tests/tests/crash.rs); clusters get that durability
# from replication, a single test node only from fsync.
commitlog_sync: group
commitlog_sync_group_window: 2ms
# Tests drop and truncate a lot: don't snapshot on each.
auto_snapshot: false
snapshot_before_compaction: false
# Sized for 2 cores and a 1 GB heap.
concurrent_compactors: 1
memtable_flush_writers: 1
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
key_cache_size: 16MiB
counter_cache_size: 0MiB
prepared_statements_cache_size: 16MiB
# A busy 2-core CI box can stall a write for more than the default 2 s.
write_request_timeout: 5000ms
EOF
    # Log INFO to stdout, which launch() sends to cassandra.log.
    cat >"$CDIR/conf/logback.xml" <<'EOF'
<configuration scan="false">
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %logger{0} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
}

cassandra_fresh() {
    rm -rf "$CDIR/data"
    cassandra_configure
}

cassandra_launch() {
    # No `tr | grep -m1` here: under pipefail, grep exiting early can SIGPIPE tr and
    # fail the lookup at random (it failed a CI run).
    local jamm="" jar
    local -a jars
    IFS=: read -r -a jars <<<"$CASSANDRA_CP"
    for jar in "${jars[@]}"; do
        [[ $jar == */jamm-*.jar ]] && { jamm=$jar; break; }
    done
    [[ -n $jamm ]] || die "cassandra: jamm jar not found on the classpath"
    local -a jvm=(
        -Xms1g -Xmx1g -Xss256k
        # conf/jvm-server.options
        -ea -da:net.openhft... -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem
        -XX:+UseTLAB -XX:+ResizeTLAB -XX:+ExitOnOutOfMemoryError -Djava.net.preferIPv4Stack=true
        # conf/jvm17-server.options: G1 ...
        -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
        -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300
        -XX:InitiatingHeapOccupancyPercent=70
        # ... JPMS access Cassandra needs on Java 17 ...
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
        --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        # ... and Netty settings.
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11
        # cassandra-env.sh: jamm measures object sizes for memtable accounting.
        -javaagent:"$jamm"
        # Where things are; run in the foreground so stdout (our log) stays open.
        -Dcassandra.config=file://"$CDIR/conf/cassandra.yaml"
        -Dcassandra.storagedir="$CDIR/data" -Dcassandra.logdir="$CDIR"
        -Dlogback.configurationFile="$CDIR/conf/logback.xml"
        -Dcassandra-foreground=yes -Dcassandra.jmx.local.port="$CASSANDRA_JMX_PORT"
        # Single node: don't wait for gossip or the ring to settle, and don't spend
        # 2 s announcing the shutdown to peers that don't exist.
        -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=1000
        -Dcassandra.shutdown_announce_in_ms=0
    )
    launch cassandra "$JAVA" "${jvm[@]}" -cp "$CASSANDRA_CP" org.apache.cassandra.service.CassandraDaemon
}

# One CQL protocol round trip: OPTIONS (v4 frame, opcode 0x05) must get SUPPORTED
# (response v4, opcode 0x06) back.
cql_options_ok() {
    # shellcheck disable=SC2016 # $0 is the inner shell's
    timeout 5 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" &&
        printf "\x04\x00\x00\x00\x05\x00\x00\x00\x00" >&3 && head -c 5 <&3 | od -An -tx1' \
        "$CASSANDRA_PORT" 2>/dev/null | tr -d ' \n' | grep -qx 8400000006
}

# Ready = the log says CQL is being served and startup completed, and a CQL
# request on its port is answered.
cassandra_await() {
    local start=${LAUNCHED_AT[cassandra]} pid log="$CDIR/cassandra.log"
    local deadline=$((start + CASSANDRA_TIMEOUT * 1000))
    pid=$(cat "$(pidfile cassandra)")
    while :; do
        pid_alive "$pid" || { not_ready cassandra "the JVM exited"; return 1; }
        (($(now_ms) < deadline)) || { not_ready cassandra "timed out after ${CASSANDRA_TIMEOUT}s"; return 1; }
        if grep -q 'Starting listening for CQL clients' "$log" && grep -q 'Startup complete' "$log" &&
            listening "$CASSANDRA_PORT" && cql_options_ok; then
            echo "cassandra ready on 127.0.0.1:$CASSANDRA_PORT (pid $pid, $(secs_since "$start")s)"
            return 0
        fi
        sleep 0.5
    done
}

# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------
pick() { # [kafka|cassandra|all] -> SVCS; Cassandra first since it is the slowest to boot
    case ${1:-all} in
        all) SVCS=(cassandra kafka) ;;
        kafka | cassandra) SVCS=("$1") ;;
        *) die "unknown service '$1' (expected kafka, cassandra or all)" ;;
    esac
}

has_state() { # did a previous start leave data to resume on?
    case $1 in
        kafka) [[ -f $KDIR/data/meta.properties && -f $KDIR/conf/server.properties ]] ;;
        cassandra) [[ -d $CDIR/data && -f $CDIR/conf/cassandra.yaml ]] ;;
    esac
}

# Launch everything first, then await each: the two boot in parallel.
launch_and_await() { # fresh|resume svc...
    local mode=$1 svc rc=0
    shift
    # Classpaths first, so a Maven failure can't leave one service half-launched.
    for svc in "$@"; do
        case $svc in
            kafka) KAFKA_CP=$(classpath kafka) ;;
            cassandra) CASSANDRA_CP=$(classpath cassandra) ;;
        esac
    done
    for svc in "$@"; do
        [[ $mode == resume ]] || "${svc}_fresh"
        "${svc}_launch"
    done
    # Await the quick one first, so each reported time is when it became ready.
    for svc in kafka cassandra; do
        [[ " $* " == *" $svc "* ]] || continue
        "${svc}_await" || rc=1
    done
    return "$rc"
}

cmd_start() {
    pick "${1:-all}"
    local svc
    stop_services TERM "${SVCS[@]}"
    for svc in "${SVCS[@]}"; do ports_free_or_die "$svc"; done
    launch_and_await fresh "${SVCS[@]}"
}

cmd_resume() {
    [[ $# -ge 1 ]] || die "usage: services.sh resume kafka|cassandra|all"
    pick "$1"
    local svc pid todo=()
    for svc in "${SVCS[@]}"; do
        has_state "$svc" || die "$svc: nothing to resume (run 'services.sh start' first)"
        pid=$(read_pid "$svc")
        if [[ -n $pid ]]; then
            echo "$svc is already running (pid $pid)"
        else
            ports_free_or_die "$svc"
            todo+=("$svc")
        fi
    done
    ((${#todo[@]})) || return 0
    launch_and_await resume "${todo[@]}"
}

cmd_stop() {
    pick "${1:-all}"
    stop_services TERM "${SVCS[@]}"
}

cmd_kill9() {
    [[ $# -ge 1 ]] || die "usage: services.sh kill9 kafka|cassandra|all"
    pick "$1"
    stop_services KILL "${SVCS[@]}"
}

cmd_status() {
    local svc pid port state
    for svc in kafka cassandra; do
        pid=$(read_pid "$svc")
        port=${PORTS[$svc]%% *}
        if [[ -n $pid ]] && listening "$port"; then
            state="up (pid $pid, 127.0.0.1:$port)"
        elif [[ -n $pid ]]; then
            state="starting or stuck (pid $pid, 127.0.0.1:$port not listening)"
        elif listening "$port"; then
            state="down, but 127.0.0.1:$port is held by another process"
        else
            state="down"
        fi
        echo "$svc: $state"
    done
}

main() {
    local cmd=${1:-}
    [[ -n $cmd ]] || die "usage: services.sh start|stop|status|kill9|resume [kafka|cassandra|all]"
    shift
    # status only reads, so it doesn't wait behind a running start.
    if [[ $cmd == status ]]; then
        cmd_status
        return
    fi
    mkdir -p "$STATE"
    # One invocation at a time per state dir (fd 9 is closed for the servers).
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "another services.sh is still running on $STATE"
    case $cmd in
        start) cmd_start "$@" ;;
        stop) cmd_stop "$@" ;;
        kill9) cmd_kill9 "$@" ;;
        resume) cmd_resume "$@" ;;
        *) die "unknown command '$cmd' (expected start, stop, status, kill9 or resume)" ;;
    esac
}

main "$@"
