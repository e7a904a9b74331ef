# peaqos-orchestrator: multi-stage build, small non-root runtime image, listens on 8080.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY migrations ./migrations
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && strip target/release/peaqos-orchestrator

FROM debian:bookworm-slim AS runtime
# CA certificates for HTTPS calls to MCR and EVM RPC; nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin orchestrator \
    && mkdir -p /app/data \
    && chown orchestrator:orchestrator /app/data
COPY --from=build /src/target/release/peaqos-orchestrator /usr/local/bin/peaqos-orchestrator
WORKDIR /app
USER orchestrator
ENV PEAQOS_LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
# The binary checks its own /health: no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=40s --retries=3 \
    CMD ["peaqos-orchestrator", "healthcheck"]
ENTRYPOINT ["peaqos-orchestrator"]
CMD ["serve"]
