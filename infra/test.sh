#!/usr/bin/env bash
# Runs every test of Tidings against real services: starts Apache Kafka and Apache Cassandra
# (infra/services.sh), runs the Rust tests and the whole-system tests with stock Socket.IO
# clients and a real browser, then stops the services, also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export TIDINGS_BIN=$CARGO_TARGET_DIR/debug/tidings
export TIDINGS_KAFKA_BROKERS=${TIDINGS_KAFKA_BROKERS:-127.0.0.1:9092}
export TIDINGS_CASSANDRA=${TIDINGS_CASSANDRA:-127.0.0.1:9042}

infra/setup.sh
# The schema push test starts and stops Apicurio itself (infra/registry.sh); stopping it here
# too covers a pytest that was killed.
trap 'infra/registry.sh stop || true; infra/services.sh stop' EXIT
cargo build --workspace --all-targets
infra/services.sh start

# Terraform: fmt, validate with the real providers built from the Go module proxy, and the
# topics applied to the real Kafka in both orders with `tidings migrate`, without drift. It
# deletes the tidings.* topics first, so it runs before anything else uses Kafka. Terraform
# itself is not a Debian package: where it is not on the PATH, .ci/run fails instead.
if command -v terraform >/dev/null; then
    infra/check-terraform.sh --kafka "$TIDINGS_KAFKA_BROKERS"
else
    echo "terraform is not on the PATH: the Terraform checks are left to .ci/run"
fi

cargo test --workspace

# Stock clients: socket.io-client (npm), python-socketio (PyPI), and Playwright in chromium;
# confluent-kafka's registry client against Apicurio (tests/system/test_schema_push.py, whose
# first start assembles Apicurio with Maven: ~1.5 min with an empty ~/.m2).
(cd tests/system && npm install --no-audit --no-fund --silent)
python3 -m pip install --quiet -r tests/system/requirements.txt
(cd tests/system && node --test --test-concurrency=1 --test-timeout=900000)
python3 -m pytest -q tests/system

# The benchmark harness in quick mode, against standalone, the Node baseline and Kafka +
# Cassandra: proves every scenario runs on every system. It asserts no timing.
cargo build --release -p tidings -p tidings-bench
bench/run.sh --quick --distributed --out "$CARGO_TARGET_DIR/bench-quick.jsonl"
