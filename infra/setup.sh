#!/usr/bin/env bash
# Installs what building and testing Tidings needs on a fresh Debian machine, and nothing
# when it is already there: a C toolchain and zlib/OpenSSL headers (rdkafka builds
# librdkafka from source), Java 17 and Maven (Kafka and Cassandra run from Maven Central
# jars; the JDK's javac for the one class of infra/registry/, which infra/registry.sh
# assembles for the schema push test), Debian's chromium (the browser test), jq/curl and
# iproute2 (ss: the service scripts find who holds a port). Rust, Node.js, Python 3 and Go
# are expected on the PATH already. Called by infra/test.sh and .ci/run; safe to run again.
set -euo pipefail

missing=()
for pkg in zlib1g-dev libssl-dev pkg-config build-essential maven openjdk-17-jdk-headless chromium jq curl iproute2; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
fi
for tool in cargo node npm python3 java mvn; do
    command -v "$tool" >/dev/null || { echo "setup: $tool is not on the PATH" >&2; exit 1; }
done
