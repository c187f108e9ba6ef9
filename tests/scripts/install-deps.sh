#!/usr/bin/env bash
# Installs what cohortgate needs to build, demo and test on Debian 12, and nothing that is already there.
# Idempotent: a second run installs nothing. Needs root (or sudo) only when something is missing.
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config git ca-certificates curl openssl
  libxml2-dev libjansson-dev librdkafka-dev libpcre2-dev libssl-dev
  libmicrohttpd-dev
  libsodium-dev
  libcmocka-dev
  clang clang-format libclang-rt-14-dev
  default-jdk-headless maven
  postgresql libpq-dev
  python3 python3-jsonschema
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#pkgs[@]} Debian packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
