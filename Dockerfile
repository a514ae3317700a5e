# syntax=docker/dockerfile:1
# lifeboat's container image for your own CI (`docker build .`).
# The same image is assembled without a Docker daemon by scripts/build-image.sh.
#
# Build stage: a statically linked release binary (glibc, crt-static; TLS is
# rustls, so no OpenSSL is needed at run time).
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --locked --release --target x86_64-unknown-linux-gnu --bin lifeboat \
 && install -D -m 0755 target/x86_64-unknown-linux-gnu/release/lifeboat /out/usr/local/bin/lifeboat \
 && install -D -m 0644 /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/ca-certificates.crt

# Final stage: nothing but the binary and the CA bundle (no shell, no package
# manager), running as an unprivileged numeric user.
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="lifeboat" \
      org.opencontainers.image.description="Recovery-point exporter and node-loss remediation for Kubernetes on node-local storage" \
      org.opencontainers.image.source="https://github.com/lifeboat-dev/lifeboat" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/ /
USER 65532:65532
EXPOSE 9847/tcp
ENTRYPOINT ["/usr/local/bin/lifeboat"]
CMD ["serve"]
