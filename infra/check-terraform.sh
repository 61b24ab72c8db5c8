#!/usr/bin/env bash
# Checks terraform/ with the real providers, and optionally that Terraform and `tidings
# migrate` agree on every topic setting on a real Kafka.
#
#   infra/check-terraform.sh                   terraform fmt -check, then validate
#   infra/check-terraform.sh --kafka HOST:PORT also the drift check on that Kafka. It DELETES
#                                              the tidings.* topics there (twice): give it a
#                                              Kafka of its own, or one whose tests are done
#
# The drift check, for both orders, starting each time with no tidings.* topic:
#   1. terraform apply (the kafka_topic resources only), then `tidings migrate --only kafka`
#      must succeed on the topics it finds, then `terraform plan` must find nothing to change;
#   2. `tidings migrate --only kafka` creates the topics, then a plan with
#      adopt_existing_topics=true must only import them (no change to any), its apply must
#      succeed, and a plan after it must find nothing to change;
#   3. then `tidings migrate` with TIDINGS_TOPIC_RETENTION changes two existing topics'
#      retention, and a plan with the same topic_retention_ms must find nothing to change.
# Topics get replication factor 1 (a single broker will do); the Kafka must allow deleting
# topics (delete.topic.enable, on by default).
#
# The Terraform registry is not needed: the providers are built from the Go module proxy at
# the versions terraform/versions.tf pins, once, into
# ${TIDINGS_TERRAFORM_CACHE:-$HOME/.cache/tidings-terraform}/<provider>/<go module version>/,
# and Terraform uses them through dev_overrides, which needs no `terraform init`. State, CLI
# config and plans live in a temporary directory, removed at the end.
#
# Needs: terraform (1.7+), go, and for --kafka: java, mvn (the Kafka tools, from
# infra/kafka/pom.xml, as infra/services.sh uses them), jq, and the tidings binary:
# $TIDINGS_BIN, else $CARGO_TARGET_DIR/debug/tidings, else target/debug/tidings.
set -euo pipefail

INFRA=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$INFRA")
TERRAFORM=${TERRAFORM:-terraform}
CACHE=${TIDINGS_TERRAFORM_CACHE:-$HOME/.cache/tidings-terraform}

# Provider (Terraform's local name), its source address, Go module and exact Go version.
# Mongey/kafka v0.13.1 is the tag itself. hashicorp/kubernetes 3.x tags have no Go module
# version (the module path lacks /v3); this pseudo-version is the 3.2.1 tag plus a gRPC bump
# (see terraform/versions.tf, which pins 3.2.1).
PROVIDERS=(
    "kafka Mongey/kafka github.com/Mongey/terraform-provider-kafka v0.13.1"
    "kubernetes hashicorp/kubernetes github.com/hashicorp/terraform-provider-kubernetes v1.13.4-0.20260821094251-3a33fb6cc605"
)

die() { printf 'check-terraform.sh: %s\n' "$*" >&2; exit 1; }
say() { printf '== %s\n' "$*"; }
now() { date +%s; }

KAFKA=""
while (($#)); do
    case $1 in
        --kafka) KAFKA=${2:-}; [[ $KAFKA == *:* ]] || die "--kafka needs HOST:PORT"; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done

command -v "$TERRAFORM" >/dev/null || die "terraform not found (set TERRAFORM)"
command -v go >/dev/null || die "go not found: it builds the Terraform providers"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tidings-terraform.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# --------------------------------------------------------------------------
# Providers: built once per version, then reused.
# --------------------------------------------------------------------------
build_provider() { # name module version -> prints the directory holding the binary
    local name=$1 module=$2 version=$3 dir src start
    dir=$CACHE/$name/$version
    if [[ -x $dir/terraform-provider-$name ]]; then
        echo "$dir"
        return
    fi
    start=$(now)
    echo "building terraform-provider-$name $version (once; cached in $dir)" >&2
    # `go install MODULE@VERSION` would refuse the kafka provider (its go.mod has a replace
    # directive) and looks up deprecations in the version list, which the proxy may refuse:
    # download the exact version and build it as its own main module, with its own go.sum.
    src=$(go mod download -json "$module@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -n $src && -d $src ]] || die "$module@$version: go mod download gave no source directory"
    mkdir -p "$CACHE/$name"
    rm -rf "$dir.tmp"
    (cd "$src" && GOFLAGS="-mod=readonly -buildvcs=false" GOBIN="$dir.tmp" go install .) >&2 ||
        die "$module@$version: build failed"
    [[ -x $dir.tmp/terraform-provider-$name ]] || die "$module@$version: no terraform-provider-$name built"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    echo "built terraform-provider-$name in $(($(now) - start)) s" >&2
    echo "$dir"
}

mkdir -p "$CACHE"
# One build at a time per cache (two CI runs must not write the same directory).
exec 8>"$CACHE/.lock"
flock -w 3600 8 || die "another build holds $CACHE/.lock"
{
    echo 'provider_installation {'
    echo '  dev_overrides {'
    for entry in "${PROVIDERS[@]}"; do
        read -r name source module version <<<"$entry"
        dir=$(build_provider "$name" "$module" "$version")
        printf '    "%s" = "%s"\n' "$source" "$dir"
    done
    echo '  }'
    echo '  direct {}'
    echo '}'
} >"$WORK/cli.tfrc"
exec 8>&-

export TF_CLI_CONFIG_FILE=$WORK/cli.tfrc TF_DATA_DIR=$WORK/tf-data
export TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1
"$TERRAFORM" version

# A copy of the module, so that nothing (state, lock file, plans) is written into the repo.
cp -r "$REPO/terraform" "$WORK/module"
tf() { "$TERRAFORM" -chdir="$WORK/module" "$@"; }

# --------------------------------------------------------------------------
# Static checks.
# --------------------------------------------------------------------------
say "terraform fmt -check -recursive terraform/"
"$TERRAFORM" fmt -check -recursive -diff "$REPO/terraform" ||
    die "terraform/ is not formatted: run terraform fmt -recursive terraform/"

# dev_overrides: the providers need no init (Terraform warns that they are overridden).
say "terraform validate"
tf validate -no-color

[[ -n $KAFKA ]] || { echo "terraform check passed (fmt, validate)"; exit 0; }

# --------------------------------------------------------------------------
# The drift check on a real Kafka.
# --------------------------------------------------------------------------
for tool in java mvn jq; do command -v "$tool" >/dev/null || die "$tool not found (needed by --kafka)"; done
TIDINGS_BIN=${TIDINGS_BIN:-${CARGO_TARGET_DIR:-$REPO/target}/debug/tidings}
[[ -x $TIDINGS_BIN ]] || die "no tidings binary at $TIDINGS_BIN (build it, or set TIDINGS_BIN)"
RF=1

say "Kafka tools (classpath from infra/kafka/pom.xml)"
mvn -q -B -Dstyle.color=never -f "$INFRA/kafka/pom.xml" dependency:build-classpath \
    -Dmdep.outputFile="$WORK/kafka.classpath" >"$WORK/mvn.log" 2>&1 ||
    { tail -n 30 "$WORK/mvn.log" >&2; die "could not resolve the Kafka classpath"; }
printf 'request.timeout.ms=10000\ndefault.api.timeout.ms=30000\n' >"$WORK/client.properties"
kafka_tool() { # main-class args...
    java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$INFRA/kafka/tools-log4j2.properties" \
        -cp "$(cat "$WORK/kafka.classpath")" "$@"
}
topics_tool() { kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA" \
    --command-config "$WORK/client.properties" "$@"; }
tidings_topics() { topics_tool --list | grep '^tidings\.' || true; }

# Deletes every tidings.* topic and waits until the cluster lists none and a describe of
# each name fails (the deletion reached the metadata every broker serves).
delete_topics() {
    local left deadline=$(($(now) + 120))
    left=$(tidings_topics)
    if [[ -n $left ]]; then
        echo "deleting: $(echo "$left" | tr '\n' ' ')"
        topics_tool --delete --topic 'tidings\..*'
    fi
    while :; do
        left=$(tidings_topics)
        [[ -n $left ]] || break
        (($(now) < deadline)) || die "topics still listed 120 s after their deletion: $left"
        sleep 1
    done
    echo "no tidings.* topic left on $KAFKA"
}

# The module's variables for a topics-only run; nothing here reaches Kubernetes.
jq -n --arg kafka "$KAFKA" --argjson rf "$RF" '{
    kafka_bootstrap_servers: [$kafka], replication_factor: $rf,
    kafka_brokers_for_pods: $kafka, cassandra_contact_points: "unused:9042",
    jwt_secret: "unused", kubeconfig: "/nonexistent"
}' >"$WORK/check.tfvars.json"
TARGET=(-target=kafka_topic.tidings -var-file="$WORK/check.tfvars.json" -no-color)

fresh_state() { rm -f "$WORK/module/terraform.tfstate" "$WORK/module/terraform.tfstate.backup"; }

migrate() {
    TIDINGS_KAFKA_BROKERS=$KAFKA TIDINGS_KAFKA_REPLICATION_FACTOR=$RF TIDINGS_LOG_FORMAT=text \
        RUST_LOG=${RUST_LOG:-warn} "$TIDINGS_BIN" migrate --only kafka
}

# plan -detailed-exitcode: 0 no change, 2 changes (shown), 1 error.
no_change() { # what
    local rc=0
    tf plan -detailed-exitcode "${TARGET[@]}" >"$WORK/plan.out" 2>&1 || rc=$?
    if ((rc != 0)); then
        cat "$WORK/plan.out"
        ((rc == 2)) && die "$1: terraform plan wants changes (above): Terraform and tidings migrate disagree"
        die "$1: terraform plan failed (above)"
    fi
    grep -E '^No changes' "$WORK/plan.out"
}

describe_topics() { # for the record: partitions, replication factor and settings of each
    topics_tool --describe --topic 'tidings\..*' | grep -E '^Topic: ' | sed 's/TopicId: [^[:space:]]*[[:space:]]*//' || true
}

say "drift check on $KAFKA, order 1: terraform apply, then tidings migrate"
delete_topics
fresh_state
tf apply -auto-approve "${TARGET[@]}" >"$WORK/apply.out" 2>&1 ||
    { cat "$WORK/apply.out"; die "terraform apply failed"; }
grep -E '^Apply complete' "$WORK/apply.out"
migrate || die "tidings migrate failed on the topics Terraform made"
no_change "terraform first, then migrate"

say "drift check on $KAFKA, order 2: tidings migrate, then terraform adopts"
delete_topics
fresh_state
migrate || die "tidings migrate failed on an empty Kafka"
tf plan -out="$WORK/adopt.tfplan" -var adopt_existing_topics=true "${TARGET[@]}" >"$WORK/plan.out" 2>&1 ||
    { cat "$WORK/plan.out"; die "terraform plan with adopt_existing_topics=true failed"; }
tf show -json "$WORK/adopt.tfplan" >"$WORK/adopt.json"
imports=$(jq '[.resource_changes[] | select(.change.importing != null)] | length' "$WORK/adopt.json")
changes=$(jq -r '.resource_changes[] | select(.change.actions != ["no-op"])
    | "\(.address): \(.change.actions | join(","))"' "$WORK/adopt.json")
expected=$(jq '.locals.topics | length' "$REPO/terraform/topics.tf.json")
if [[ -n $changes || $imports != "$expected" ]]; then
    cat "$WORK/plan.out"
    die "adopting the topics migrate made should import $expected and change nothing; got $imports imports and changes: ${changes:-none}"
fi
grep -E '^Plan:' "$WORK/plan.out"
tf apply -auto-approve "$WORK/adopt.tfplan" >"$WORK/apply.out" 2>&1 ||
    { cat "$WORK/apply.out"; die "terraform apply of the adoption failed"; }
grep -E '^Apply complete' "$WORK/apply.out"
no_change "migrate first, then terraform (adopted)"
# Left on after the adoption, the import blocks do nothing to topics in the state.
TARGET+=(-var adopt_existing_topics=true)
no_change "migrate first, then terraform (adopted), adopt_existing_topics still on"

say "a retention setting: migrate changes the existing topics, Terraform with the same setting agrees"
# The same choice written both ways: TIDINGS_TOPIC_RETENTION for migrate, topic_retention_ms
# for Terraform (the migrate job gets the one from the other, terraform/deployment.tf).
TIDINGS_TOPIC_RETENTION="tidings.room-log=30d,tidings.typing=2m" migrate ||
    die "tidings migrate with TIDINGS_TOPIC_RETENTION failed on existing topics"
describe_topics >"$WORK/described.out"
grep -E '^Topic: tidings\.room-log\s.*retention\.ms=2592000000' "$WORK/described.out" ||
    { cat "$WORK/described.out"; die "migrate did not set the room log's retention to 30 days"; }
grep -E '^Topic: tidings\.typing\s.*retention\.ms=120000' "$WORK/described.out" >/dev/null ||
    { cat "$WORK/described.out"; die "migrate did not set the typing topic's retention to 2 minutes"; }
TARGET+=(-var 'topic_retention_ms={"tidings.room-log"=2592000000,"tidings.typing"=120000}')
no_change "migrate with TIDINGS_TOPIC_RETENTION, then terraform with topic_retention_ms"

say "the topics, as both left them"
cat "$WORK/described.out"
echo "terraform check passed (fmt, validate, drift on $KAFKA in both orders and after a retention change)"
