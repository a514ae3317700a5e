#!/usr/bin/env bash
# Installs the Debian packages the test suite uses, only when missing:
# promtool + prometheus (rules tests, end-to-end), alertmanager (end-to-end),
# PyYAML (rules generator), openssl and curl (control-plane harness), umoci
# and ca-certificates (scripts/build-image.sh).
set -euo pipefail

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || [ -x /usr/bin/prometheus-alertmanager ] || need+=(prometheus-alertmanager)
python3 -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v umoci >/dev/null || need+=(umoci)
[ -s /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)

if [ ${#need[@]} -eq 0 ]; then
    echo "[install-test-deps] all present"
    exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
echo "[install-test-deps] installing: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq
# The Debian packages start their services on install where systemd runs;
# the tests start their own instances on loopback ports.
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Do not leave package-started daemons holding the default ports.
for svc in prometheus prometheus-alertmanager prometheus-node-exporter; do
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
done
