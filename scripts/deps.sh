#!/usr/bin/env bash
# Install what CareSync needs to build, run and test, skipping what is present.
# Idempotent: a second run on a ready machine does nothing but check.
#   scripts/deps.sh          build + run + test dependencies
#   scripts/deps.sh bench    also wrk and nginx for bench/http, PyTorch for bench/vision
set -euo pipefail
cd "$(dirname "$0")/.."

pkgs=(build-essential cmake pkg-config
      libmicrohttpd-dev libsodium-dev libsqlite3-dev libjansson-dev iso-codes   # service
      libturbojpeg0-dev libpng-dev libwebp-dev libheif-dev libexif-dev          # photo intake
      libopenblas-dev                                                           # nn (BLAS)
      r-mathlib libcsv-dev                                                      # surveil (R's distributions, RFC 4180 CSV)
      libraft-dev libuv1-dev                                                    # cluster (Raft replication, issue 15)
      libcmocka-dev clang libclang-rt-14-dev clang-format sqlite3 openssl curl faketime  # tests, fuzzing, style
      nodejs npm chromium)                                                      # browser tests
if [[ "${1:-}" == "bench" ]]; then pkgs+=(wrk nginx-light python3-torch python3-torchvision r-cran-surveillance); fi

missing=()
for p in "${pkgs[@]}"; do
  # nodejs/npm may come from elsewhere than Debian; a working binary is enough.
  case "$p" in
    nodejs) command -v node >/dev/null && continue ;;
    npm) command -v npm >/dev/null && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: Debian packages present"
fi

# npm packages (playwright-core drives Debian's chromium; it never downloads a browser).
# nsfwjs (exact version in package.json) ships the TF.js InceptionV3 and
# MobileNetV2 models that src/nn/tfjs.c reads from node_modules/nsfwjs at run
# time; .npmrc keeps npm from adding its peer, @tensorflow/tfjs.
if [[ -f package-lock.json ]]; then
  if [[ ! -d node_modules/playwright-core ]] || [[ ! -d node_modules/nsfwjs ]] ||
     [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
    echo "deps: npm ci"
    npm ci --no-audit --no-fund --loglevel=error
  else
    echo "deps: npm packages present"
  fi
fi

# The dashboard's browser libraries, copied from node_modules to web/vendor.
if [[ -d node_modules/d3-geo ]]; then scripts/vendor.sh; fi
