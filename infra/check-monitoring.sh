#!/usr/bin/env bash
# Checks the monitoring config in infra/monitoring/:
#   - the alert rules: `promtool check rules`, their unit tests (`promtool test rules`), every
#     alert with a severity, a summary and a description, and a test where it fires and one
#     where it does not;
#   - the example Prometheus config (`promtool check config`);
#   - the Grafana dashboard: valid JSON, every panel with a datasource and queries, every
#     variable it uses defined, every query valid PromQL (promtool), its default datasource the
#     provisioned one;
#   - unless --static: that every metric name, label and label value the rules and the
#     dashboard use is what Tidings exports (tests/system/monitoring.test.mjs, against a real
#     `tidings standalone` and `tidings processor all`: needs TIDINGS_BIN, or the harness's
#     default target/debug/tidings, and Kafka and Cassandra, as infra/test.sh has them).
#
# promtool comes from the Go module proxy at an exact version and is built once into
# $TIDINGS_TOOLS (default ~/.cache/tidings-tools, as infra/check-docker.sh), outside the
# clone; once it is there the static checks run offline. Needs go, jq and node.
#
# Usage: infra/check-monitoring.sh [--static]
set -euo pipefail
cd "$(dirname "$0")/.."

static=false
case "${1:-}" in
    --static) static=true ;;
    "") ;;
    *) echo "usage: $0 [--static]" >&2; exit 2 ;;
esac

# Module github.com/prometheus/prometheus v0.316.0 is Prometheus 3.x's promtool; it needs Go
# 1.26.7 or later (GOTOOLCHAIN=auto fetches that from the Go module proxy if the local go is
# older). Built without the service-discovery plugins (tag remove_all_sd), which checking
# rules does not use: less to download and compile.
PROMTOOL_VERSION=v0.316.0
TOOLS=${TIDINGS_TOOLS:-$HOME/.cache/tidings-tools}
PATH=$PATH:/usr/local/go/bin
PROMTOOL=$TOOLS/promtool-$PROMTOOL_VERSION
MON=infra/monitoring
DASHBOARD=$MON/grafana/dashboards/tidings.json

build_promtool() {
    mkdir -p "$TOOLS"
    # One build at a time; a second caller waits and then finds the binary.
    exec 9>"$TOOLS/promtool.lock"
    flock 9
    if [[ -x $PROMTOOL ]]; then
        return
    fi
    command -v go >/dev/null || { echo "check-monitoring: go is needed to build promtool" >&2; exit 1; }
    local work start
    work=$(mktemp -d "$TOOLS/promtool-build.XXXXXX")
    # Module and build caches of its own, removed afterwards: only the binary is kept.
    trap 'rm -rf "$work"' EXIT
    echo "check-monitoring: building promtool $PROMTOOL_VERSION from the Go module proxy (once; cached as $PROMTOOL)"
    start=$SECONDS
    GOMODCACHE=$work/mod GOCACHE=$work/cache GOBIN=$work/bin GOPATH=$work/gopath \
        GOFLAGS=-modcacherw GOTOOLCHAIN=auto CGO_ENABLED=0 \
        go install -tags remove_all_sd -trimpath -ldflags='-s -w' \
        "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION"
    mv "$work/bin/promtool" "$PROMTOOL.tmp.$$"
    mv -f "$PROMTOOL.tmp.$$" "$PROMTOOL"
    rm -rf "$work"
    trap - EXIT
    echo "check-monitoring: built promtool in $((SECONDS - start)) s"
}

passed=0
failed=0
# Runs one named check; a failure is reported and counted, and the other checks still run.
check() {
    local name=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        echo "ok   $name"
    else
        failed=$((failed + 1))
        echo "FAIL $name"
        printf '%s\n' "$out" | sed 's/^/     /'
    fi
}

# Every alert has a severity label and summary and description annotations.
alerts_annotated() {
    awk '
        function done() {
            if (name != "" && !(sev && sum && desc)) { print name ": needs a severity label, a summary and a description"; bad = 1 }
        }
        /^[[:space:]]*- alert:/ { done(); name = $3; sev = sum = desc = 0; n++ }
        /^[[:space:]]*severity:[[:space:]]*(critical|warning)[[:space:]]*$/ { sev = 1 }
        /^[[:space:]]*summary:/ { sum = 1 }
        /^[[:space:]]*description:/ { desc = 1 }
        END { done(); if (n == 0) { print "no alerts found"; bad = 1 } exit bad }
    ' "$MON/alerts.yml"
}

# Every alert of alerts.yml has a case where it fires and one where nothing does; no rendered
# annotation lacks a value.
alerts_tested() {
    local status=0 alert
    if grep -n '<no value>' "$MON/alerts.test.yml"; then
        echo "a template names a label the alert does not have"
        status=1
    fi
    while read -r alert; do
        awk -v a="$alert" '
            /^[[:space:]]*alertname:/ { cur = $2 }
            cur == a && /^[[:space:]]*exp_alerts:[[:space:]]*\[\][[:space:]]*$/ { quiet = 1 }
            cur == a && /^[[:space:]]*exp_alerts:[[:space:]]*$/ { fires = 1 }
            END { exit !(quiet && fires) }
        ' "$MON/alerts.test.yml" || { echo "$alert: needs a test where it fires and one where it does not"; status=1; }
    done < <(awk '/^[[:space:]]*- alert:/ { print $3 }' "$MON/alerts.yml")
    return $status
}

# OPERATIONS.md tells operators what each alert means: none may be missing there.
alerts_documented() {
    local status=0 alert
    while read -r alert; do
        grep -q "\`$alert\`" OPERATIONS.md || { echo "$alert is not in OPERATIONS.md"; status=1; }
    done < <(awk '/^[[:space:]]*- alert:/ { print $3 }' "$MON/alerts.yml")
    return $status
}

# The dashboard's structure: what Grafana needs to load it and show data in every panel.
dashboard_valid() {
    jq -e . "$DASHBOARD" >/dev/null || { echo "not valid JSON"; return 1; }
    local problems
    problems=$(jq -r '
        def panels: .panels[] | ., (.panels // [])[];
        def vars: [.templating.list[].name] + ["__rate_interval", "__interval", "__range", "__interval_ms"];
        vars as $vars
        | (if (.uid // "") == "" or (.title // "") == "" or (.schemaVersion | type) != "number"
           then "the dashboard needs a uid, a title and a schemaVersion" else empty end),
          ([panels | .id] | group_by(.) | map(select(length > 1) | "panel id \(.[0]) is used twice") | .[]),
          (panels | select(.type != "row") | . as $p
           | (if ($p.datasource.uid // "") == "" then "panel \($p.title): no datasource" else empty end),
             (if ($p.targets // []) | length == 0 then "panel \($p.title): no targets" else empty end),
             (($p.targets // [])[] | select((.expr // "") == "" or (.refId // "") == "")
              | "panel \($p.title): a target without expr or refId"),
             (($p.targets // [])[] | select(.datasource.uid != $p.datasource.uid)
              | "panel \($p.title): target \(.refId) uses another datasource than its panel"),
             (if $p.gridPos == null then "panel \($p.title): no gridPos" else empty end)),
          ([panels | .datasource.uid?, (.targets // [])[].expr] + [.templating.list[] | .query.query? // empty]
           | map(select(type == "string") | scan("\\$\\{?([A-Za-z_][A-Za-z0-9_]*)") | .[0]) | unique
           | map(select(. as $v | $vars | index($v) | not)) | .[] | "variable $\(.) is used but not defined")
    ' "$DASHBOARD") || return 1
    [[ -z $problems ]] || { echo "$problems"; return 1; }
}

# The dashboard selects the provisioned datasource by default.
dashboard_datasource_provisioned() {
    local uid
    uid=$(jq -r '.templating.list[] | select(.type == "datasource") | .current.value' "$DASHBOARD")
    grep -Eq "^[[:space:]]*uid:[[:space:]]*${uid}[[:space:]]*$" "$MON/grafana/provisioning/datasources/prometheus.yml" \
        || { echo "the dashboard's default datasource $uid is not the provisioned one"; return 1; }
}

# Every dashboard query parses as PromQL: each becomes a recording rule for promtool, with
# Grafana's variables replaced by values.
dashboard_promql() {
    local rules
    rules=$(mktemp --suffix=.yml)
    {
        echo "groups:"
        echo "  - name: dashboard"
        echo "    rules:"
        jq -r '
            [(.panels[] | ., (.panels // [])[] | select(.type != "row") | .targets[].expr),
             (.annotations.list[] | .expr // empty)]
            | to_entries[]
            | "      - record: dashboard_query_\(.key)\n        expr: \(.value
                | gsub("\\$__(rate_)?interval"; "1m") | gsub("\\$__range"; "1h")
                | gsub("\\$\\{?[A-Za-z_][A-Za-z0-9_]*\\}?"; ".*") | tojson)"
        ' "$DASHBOARD"
    } >"$rules"
    local status=0
    "$PROMTOOL" check rules "$rules" || status=1
    rm -f "$rules"
    return $status
}

metrics_exported() {
    (cd tests/system && { [[ -d node_modules ]] || npm install --no-audit --no-fund --silent; } && node --test monitoring.test.mjs)
}

build_promtool
check "promtool check rules $MON/alerts.yml" "$PROMTOOL" check rules "$MON/alerts.yml"
check "promtool test rules $MON/alerts.test.yml" "$PROMTOOL" test rules "$MON/alerts.test.yml"
check "every alert has a severity, a summary and a description" alerts_annotated
check "every alert is tested firing and not firing" alerts_tested
check "every alert is explained in OPERATIONS.md" alerts_documented
check "promtool check config $MON/prometheus.yml" "$PROMTOOL" check config "$MON/prometheus.yml"
check "$DASHBOARD: panels, datasources, targets, variables" dashboard_valid
check "$DASHBOARD: the default datasource is the provisioned one" dashboard_datasource_provisioned
check "$DASHBOARD: every query is valid PromQL" dashboard_promql
if ! $static; then
    check "every metric, label and value used is exported (tests/system/monitoring.test.mjs)" metrics_exported
fi
echo "check-monitoring: $passed passed, $failed failed"
((failed == 0))
