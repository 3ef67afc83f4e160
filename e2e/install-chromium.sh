#!/usr/bin/env bash
# Installs Debian's chromium for the browser tests (playwright's own browser download cannot work offline).
set -euo pipefail
if [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ]; then
  echo "chromium: $("${CHROMIUM_PATH:-/usr/bin/chromium}" --version 2>/dev/null | head -1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null
echo "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
