# syntax=docker/dockerfile:1
# Production image of `cifix`: a release build in the Rust image, copied into Debian slim.
# Build: docker build -t cifix .   Run (SQLite): docker run -p 8080:8080 -v cifix-data:/app/data cifix

# The toolchain matches the one CI tests with (Cargo.toml's rust-version is the floor).
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
# Symbols are dead weight in the image: panic messages keep their file and line (compiled
# in), only a backtrace loses function names. The stripped binary is about 26 MB.
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# Dependencies first, against stub sources, so this layer is rebuilt only when Cargo.toml or
# Cargo.lock change; an edit in src/ then recompiles only the crate itself. The stub crate's
# artifacts are deleted afterwards: COPY keeps the real sources' older mtimes, so cargo could
# otherwise take the stub's build as up to date.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --bin cifix \
 && rm -rf src target/release/cifix target/release/deps/cifix-* target/release/deps/libcifix-* \
      target/release/.fingerprint/cifix-*

# Everything the crate compiles in (include_str! of templates and the bundled rules).
COPY src ./src
COPY config ./config
COPY templates ./templates
RUN cargo build --release --locked --bin cifix \
 && ./target/release/cifix --version

FROM debian:bookworm-slim
# ca-certificates: the system roots for TLS to managed PostgreSQL and Redis (SMTP carries
# its own webpki roots). Versions float with bookworm's security updates on purpose: a pinned
# Debian version disappears from the archive when its fix lands, and the build would break.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cifix \
 && useradd --system --uid 10001 --gid cifix --home-dir /app --no-create-home --shell /usr/sbin/nologin cifix \
 && mkdir -p /app/data \
 && chown cifix:cifix /app/data
COPY --from=builder /build/target/release/cifix /usr/local/bin/cifix
COPY deploy/docker/healthcheck.sh /usr/local/bin/cifix-healthcheck
WORKDIR /app
# PORT, not CIFIX_BIND: the service then binds all interfaces on $PORT, and a platform that
# injects its own PORT (Railway) wins without editing the image. CIFIX_BIND would override it.
# The data dir holds the SQLite database and the outbox of the no-SMTP default; mount a
# volume there. No VOLUME instruction: Railway refuses images built with one, and on
# Kubernetes the directory is an emptyDir or a volume claim anyway.
ENV PORT=8080 \
    CIFIX_DATA_DIR=/app/data \
    CIFIX_LOG_FORMAT=json
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080
# The service drains on SIGTERM (CIFIX_SHUTDOWN_GRACE_SECS); docker stop must give it that
# long: docker stop -t 30 (its default 10 s cuts a drain short).
STOPSIGNAL SIGTERM
# Docker and Compose use this; Kubernetes and Railway ignore it and probe on their own.
# The start period covers `cifix serve` applying pending migrations before it listens.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["cifix-healthcheck"]
CMD ["cifix", "serve"]
