# syntax=docker/dockerfile:1
# The tidings binary in a small image: `docker build -t tidings .` (BuildKit, the default
# builder since Docker Engine 23). infra/check-docker.sh checks this file offline.

FROM rust:1-bookworm AS build
# rust:1-bookworm already has what the build needs (a C toolchain and make for librdkafka
# and mimalloc, pkg-config and zlib1g-dev for libz, perl for OpenSSL): nothing to install.
# OpenSSL (Kafka's SASL and TLS, Cassandra's TLS) is built from source and linked
# statically, so no libssl-dev; the edge's TLS is rustls; rdkafka builds librdkafka without
# cmake.
WORKDIR /src
# Only the workspace: documentation and scripts do not invalidate the build step.
COPY Cargo.toml Cargo.lock ./
COPY schemas schemas
COPY embedded embedded
COPY log log
COPY store store
COPY processors processors
COPY edge edge
COPY tidings tidings
COPY tests tests
COPY bench bench
# Caching: the crates.io downloads and the target directory live in BuildKit cache mounts
# that outlast the build, so a rebuild compiles only what changed, our crates included, and
# never the dependencies again (copying manifests onto stub sources would cache only the
# dependencies, and needs a stub per workspace member). The mounts are not in the image;
# hence the copy of the binary out of target/ in the same step.
RUN --mount=type=cache,id=tidings-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=tidings-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p tidings \
    && cp target/release/tidings /usr/local/bin/tidings

FROM debian:bookworm-slim
# `ldd tidings`: libc, libm, libgcc_s and libz, all of them in the base image already
# (libc6, libgcc-s1, zlib1g). ca-certificates: TLS to Kafka without TIDINGS_KAFKA_CA_FILE
# trusts the system's CAs (a managed Kafka's public certificate). The service runs as an
# unprivileged user owning only /data.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 tidings \
    && useradd --system --uid 10001 --gid tidings --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin tidings \
    && install -d -o tidings -g tidings -m 0700 /data
COPY --from=build /usr/local/bin/tidings /usr/local/bin/tidings
COPY --chmod=0755 infra/docker/tidings-health /usr/local/bin/tidings-health
ENV TIDINGS_LISTEN=0.0.0.0:8080 TIDINGS_DATA_DIR=/data TIDINGS_LOG_FORMAT=json
USER 10001:10001
WORKDIR /data
EXPOSE 8080
# Alive: the HTTP server of standalone and edge answers, on the port of TIDINGS_LISTEN.
# A processor serves its probes on TIDINGS_OPS_LISTEN instead: give it its own check (see
# docker-compose.yml). /readyz (the log and the store take writes) is the stricter probe.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD tidings-health "http://127.0.0.1:${TIDINGS_LISTEN##*:}/healthz"
ENTRYPOINT ["tidings"]
CMD ["standalone"]
