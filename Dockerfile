# The tidings binary in a small image: `docker build -t tidings .`
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends zlib1g-dev libssl-dev pkg-config cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release -p tidings && cp target/release/tidings /tidings

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates zlib1g libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /tidings /usr/local/bin/tidings
ENV TIDINGS_LISTEN=0.0.0.0:8080 TIDINGS_DATA_DIR=/data TIDINGS_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["tidings"]
CMD ["standalone"]
