# syntax=docker/dockerfile:1
# Ferrum images: release builds of `fhir-server` and `analytics-worker` on a slim
# Debian, one target each (the server is the default):
#   docker build -t ferrum/fhir-server .
#   docker build --target worker -t ferrum/analytics-worker .
# Database migrations are compiled into both binaries and applied at start-up.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and build output between builds; the
# binaries are copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fhir-server -p analytics-worker \
    && install -m 0755 target/release/fhir-server target/release/analytics-worker /usr/local/bin/

FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to the identity provider and the broker; curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ferrum
USER ferrum
ENV FHIR_LOG_FORMAT=json \
    RUST_LOG=info

# The analytics worker: change events into the reports, billing accounts for new
# patients (docs/analytics.md). No port; SIGTERM stops it cleanly.
FROM runtime AS worker
COPY --from=build /usr/local/bin/analytics-worker /usr/local/bin/analytics-worker
ENTRYPOINT ["/usr/local/bin/analytics-worker"]

# The FHIR server (the default target).
FROM runtime AS server
COPY --from=build /usr/local/bin/fhir-server /usr/local/bin/fhir-server
# Bulk export files (FHIR_EXPORT_DIR; docker-compose.yml mounts a volume there).
USER root
RUN mkdir -p /var/lib/ferrum/export && chown ferrum /var/lib/ferrum/export
USER ferrum
ENV FHIR_LISTEN_ADDR=0.0.0.0:8080 \
    FHIR_BASE_URL=http://localhost:8080/fhir
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/fhir/metadata || exit 1
ENTRYPOINT ["/usr/local/bin/fhir-server"]
