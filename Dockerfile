# One Dockerfile for the four services. Build one image per service by target:
#
#   docker build --network host --target user-service         -t chat/user-service .
#   docker build --network host --target message-service      -t chat/message-service .
#   docker build --network host --target notification-service -t chat/notification-service .
#   docker build --network host --target frontend-service     -t chat/frontend-service .
#
# (`docker compose up --build` does all four.) The workspace is compiled once, in the
# `builder` stage; every runtime target reuses that layer from the build cache.
#
# Network: cargo downloads crates from crates.io while building, so the build needs the
# network. `--network host` (compose: `build: network: host`) lets the build use the host's
# network exactly as a host `cargo build` would (DNS, proxies), which matters on machines
# where the default bridge network has no way out.
#
# The file works with the classic builder as well as BuildKit, so it uses no
# `RUN --mount=type=cache` (the classic builder rejects it) and no `# syntax=` line (that
# would need to pull a frontend image). Dependency caching comes from the stub layer below.
#
# Base images are official tags. On a machine without a registry,
# scripts/offline-base-images builds local stand-ins carrying exactly these tags.

# --- skeleton: what decides the dependency graph, and nothing else --------------------
# Manifests, the lockfile, cargo/toolchain config and the proto crate (its build.rs and
# .proto files, rarely edited) are kept; every other .rs file becomes the same one-line
# stub. The files this stage produces therefore only change when a manifest, the lockfile
# or a proto changes, so the dependency layer in `builder` stays cached across ordinary
# code edits (the classic builder and BuildKit both key COPY on content, not mtimes).
# Stubbing every .rs file (rather than listing crates here) keeps working when crates gain
# modules, binaries or build scripts.
FROM rust:1.95-slim-bookworm AS skeleton
WORKDIR /src
COPY . .
RUN find . -name '*.rs' -not -path './proto_definitions/*' \
        | while read -r f; do echo 'fn main() {}' > "$f"; done \
 && find . -type f -not -name '*.rs' -not -name Cargo.toml -not -name Cargo.lock \
        -not -name 'rust-toolchain*' -not -path './.cargo/*' \
        -not -path './proto_definitions/*' -delete

# --- builder: dependencies first (cached), then the real sources -----------------------
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
# Only the service binaries are built; the integration-test crate is a workspace member
# (its manifest must be present) but its dependencies are not needed in an image.
ENV BUILD_PACKAGES="-p user-service -p message-service -p notification-service -p frontend-service"
COPY --from=skeleton /src ./
RUN cargo build --release --locked $BUILD_PACKAGES

COPY . .
# COPY keeps the files' original mtimes, which can be older than the stub build above;
# touch them so cargo sees the real sources as changed and recompiles the workspace crates
# (dependencies stay built). The proto crate was real in both builds, so it is left alone.
RUN find . -name '*.rs' -not -path './proto_definitions/*' -not -path './target/*' \
        -exec touch {} + \
 && cargo build --release --locked $BUILD_PACKAGES \
 && mkdir /out \
 && cp target/release/user-service target/release/message-service \
       target/release/notification-service target/release/frontend-service /out/

# --- runtime: slim Debian, a non-root user, one binary ---------------------------------
# No TLS is used anywhere (plain-text gRPC and HTTP inside the compose network), so the
# binaries need neither OpenSSL nor ca-certificates.
FROM debian:bookworm-slim AS runtime
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin app
ENV RUST_LOG=info
USER app:app

FROM runtime AS user-service
COPY --from=builder /out/user-service /usr/local/bin/user-service
EXPOSE 8080 9797
ENTRYPOINT ["/usr/local/bin/user-service"]

FROM runtime AS message-service
COPY --from=builder /out/message-service /usr/local/bin/message-service
EXPOSE 8181 9696
ENTRYPOINT ["/usr/local/bin/message-service"]

FROM runtime AS notification-service
COPY --from=builder /out/notification-service /usr/local/bin/notification-service
EXPOSE 8282 9898
ENTRYPOINT ["/usr/local/bin/notification-service"]

FROM runtime AS frontend-service
COPY --from=builder /out/frontend-service /usr/local/bin/frontend-service
# gRPC, and METRICS_PORT (/metrics and /health only).
EXPOSE 3030 3031
ENTRYPOINT ["/usr/local/bin/frontend-service"]
