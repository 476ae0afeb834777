# Stand-in for the official rust:<version>-slim-bookworm image, built by
# scripts/offline-base-images on machines without a registry. Same layout as the official
# image: rustup + one toolchain under /usr/local, gcc and libc6-dev for linking.
# Build context (assembled by the script): rustup/ (RUSTUP_HOME with the host's toolchain),
# cargo/bin/ (rustup and its proxies), extra-ca/ (the host's locally added CA certificates,
# so cargo can reach crates.io through the same TLS-intercepting proxy as the host, if any).
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
ARG RUST_VERSION
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUST_VERSION=${RUST_VERSION}
COPY extra-ca/ /usr/local/share/ca-certificates/
COPY rustup/ /usr/local/rustup/
COPY cargo/ /usr/local/cargo/
# (The script made the copied trees world-writable, as in the official image; a chmod here
# would duplicate the whole toolchain in a new layer.)
RUN update-ca-certificates \
 && rustup --version && cargo --version && rustc --version
