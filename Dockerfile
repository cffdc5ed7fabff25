# syntax=docker/dockerfile:1
# Ferrum FHIR server image: release build of `fhir-server` on a slim Debian.
#   docker build -t ferrum/fhir-server .
# Database migrations are compiled into the binary and applied at start-up.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the crate registry and build output between builds; the
# binary is copied out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p fhir-server \
    && install -m 0755 target/release/fhir-server /usr/local/bin/fhir-server

FROM debian:bookworm-slim
# ca-certificates: HTTPS to the identity provider; curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ferrum
COPY --from=build /usr/local/bin/fhir-server /usr/local/bin/fhir-server
USER ferrum
ENV FHIR_LISTEN_ADDR=0.0.0.0:8080 \
    FHIR_BASE_URL=http://localhost:8080/fhir \
    FHIR_LOG_FORMAT=json \
    RUST_LOG=info
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=5 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/fhir/metadata || exit 1
ENTRYPOINT ["/usr/local/bin/fhir-server"]
