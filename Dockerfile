# EventFlow broker, CLI and load generator.
#   docker build -t eventflow .
# Build stage: the Swift toolchain; runtime stage: Debian slim with the two C libraries EventFlow
# links (libpq, liblz4). The Swift runtime is linked statically, so the toolchain stays behind.
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS build
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends liblz4-dev libpq-dev libssl-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, so source edits do not refetch them.
COPY Package.swift Package.resolved* ./
RUN swift package resolve
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --static-swift-stdlib --product eventflow \
    && swift build -c release --static-swift-stdlib --product eventflow-loadgen \
    && mkdir -p /staging/bin \
    && cp "$(swift build -c release --show-bin-path)/eventflow" "$(swift build -c release --show-bin-path)/eventflow-loadgen" /staging/bin/

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libpq5 liblz4-1 ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/eventflow --shell /usr/sbin/nologin eventflow \
    && mkdir -p /var/lib/eventflow/tls \
    && chown -R eventflow:eventflow /var/lib/eventflow \
    && chmod 700 /var/lib/eventflow/tls
COPY --from=build /staging/bin/ /usr/local/bin/
# The binaries find their migrations at <prefix>/share/eventflow/prisma/migrations.
COPY prisma /usr/local/share/eventflow/prisma
USER eventflow
WORKDIR /var/lib/eventflow
# Kafka protocol (TLS unless --plaintext); /metrics, /health, /ready (loopback unless --http-host).
EXPOSE 9092 9644
ENTRYPOINT ["/usr/local/bin/eventflow"]
CMD ["serve", "--host", "0.0.0.0", "--port", "9092", "--data-dir", "/var/lib/eventflow"]
