#!/usr/bin/env bash
# Run R `surveillance` now (quick subset of the bundled data sets) and hold
# CareSync's detectors to its fresh output. Skips (77) when R or the package
# is not installed; the golden files are checked by unit_surveil regardless.
set -euo pipefail
test_bin=$1 script=$2
if ! command -v Rscript >/dev/null || ! Rscript -e 'quit(status = !requireNamespace("surveillance", quietly = TRUE))' >/dev/null 2>&1; then
  echo "surveil_vs_r: SKIP — R with package 'surveillance' is not installed (scripts/deps.sh bench installs it)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
Rscript "$script" "$out" --quick | grep -v '^Running'
SURVEIL_GOLDEN_DIR="$out" "$test_bin"
