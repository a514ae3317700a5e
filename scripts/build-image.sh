#!/usr/bin/env bash
# Builds lifeboat's container image as an OCI image archive, without a
# container daemon: a statically linked release binary, assembled into an
# OCI layout with umoci (Debian package), then packed into one tar.
#
#   scripts/build-image.sh                 # -> target/image/lifeboat-oci.tar
#   IMAGE_TAG=0.1.0 scripts/build-image.sh
#
# The image matches the Dockerfile: one layer holding /usr/local/bin/lifeboat
# and the CA bundle, user 65532:65532, entrypoint lifeboat, command serve,
# port 9847/tcp, OCI labels. Load it with
#   skopeo copy oci-archive:target/image/lifeboat-oci.tar docker-daemon:lifeboat:0.1.0
# or push it with `skopeo copy oci-archive:... docker://REGISTRY/lifeboat:TAG`.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
TAG=${IMAGE_TAG:-$VERSION}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
TARGET=x86_64-unknown-linux-gnu
OUT=target/image
ARCHIVE=$OUT/lifeboat-oci.tar
log() { printf '[build-image] %s\n' "$*" >&2; }

if ! command -v umoci >/dev/null; then
    log "installing umoci (Debian package)"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends umoci >/dev/null
fi
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
[ -s "$CA_BUNDLE" ] || { log "missing $CA_BUNDLE (Debian package ca-certificates)"; exit 1; }

log "static release binary ($TARGET, crt-static)"
RUSTFLAGS="-C target-feature=+crt-static" cargo build --locked --release --target "$TARGET" --bin lifeboat
BIN=target/$TARGET/release/lifeboat

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
layout=$work/layout
bundle=$work/bundle
umoci init --layout "$layout"
umoci new --image "$layout:$TAG"
umoci unpack --image "$layout:$TAG" "$bundle" >/dev/null
install -D -m 0755 "$BIN" "$bundle/rootfs/usr/local/bin/lifeboat"
install -D -m 0644 "$CA_BUNDLE" "$bundle/rootfs/etc/ssl/certs/ca-certificates.crt"
umoci repack --image "$layout:$TAG" "$bundle"
umoci config --image "$layout:$TAG" \
    --os linux --architecture amd64 \
    --config.user 65532:65532 \
    --config.entrypoint /usr/local/bin/lifeboat \
    --config.cmd serve \
    --config.exposedports 9847/tcp \
    --config.workingdir / \
    --config.label org.opencontainers.image.title=lifeboat \
    --config.label "org.opencontainers.image.description=Recovery-point exporter and node-loss remediation for Kubernetes on node-local storage" \
    --config.label org.opencontainers.image.source=https://github.com/lifeboat-dev/lifeboat \
    --config.label org.opencontainers.image.licenses=Apache-2.0 \
    --config.label "org.opencontainers.image.version=$VERSION" \
    --config.label "org.opencontainers.image.revision=$REVISION"
umoci gc --layout "$layout"

mkdir -p "$OUT"
tar -C "$layout" -cf "$ARCHIVE.tmp" .
mv "$ARCHIVE.tmp" "$ARCHIVE"
log "image $TAG: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1) archive; binary $(du -h "$BIN" | cut -f1))"
echo "$ARCHIVE"
